"""The voice-modem emulator now lives in the firmware (``linebox.hw.modem.emulator``), a
first-class sim backend; this name stays for the tests that import it."""

from linebox.hw.modem.emulator import ModemCore, PtyModem, decode, encode, sine

ModemEmulator = PtyModem

__all__ = ["ModemCore", "ModemEmulator", "PtyModem", "decode", "encode", "sine"]
