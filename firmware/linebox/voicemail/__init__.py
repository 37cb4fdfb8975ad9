"""Voicemail: the store (database and audio files), boxes, retention, PINs."""
