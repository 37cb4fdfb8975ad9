"""Linebox: voicemail appliance firmware for a Raspberry Pi on analog phone lines."""

__version__ = "0.1.0"

RATE = 8000          # samples per second on every line
FRAME = 160          # samples per 20 ms frame
FRAME_BYTES = 2 * FRAME
