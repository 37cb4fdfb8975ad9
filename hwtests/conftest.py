"""On-device tests for a real Raspberry Pi: skipped cleanly unless the environment names the
hardware (see hwtests/README.md)."""
