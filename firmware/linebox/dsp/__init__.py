"""Pure-Python telephony DSP: standard library only, no I/O.

Everything here works on 8 kHz signed 16-bit samples (``array('h')``) in 20 ms frames.
"""
