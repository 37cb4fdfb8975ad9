"""Reporting: MQTT (Home Assistant) and e-mail, subscribed to the store's changes."""
