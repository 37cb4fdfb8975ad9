"""SIP: Linebox as the SIP server of the office's IP phones (registrar, voicemail calls,
message-waiting lamps)."""
