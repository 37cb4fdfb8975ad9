"""The gateway between the analog lines and the IP phones (issue 12): the audio bridge,
inbound ring groups, outbound calls through a line, trunk mode behind a PBX."""
