"""The modem's command channel: the port, the clock, AT commands and their result lines.

``SerialPort`` is the real port (pyserial, non-blocking reads waited on with select);
``linebox.hw.modem.emulator.EmulatedPort`` is the simulated one. Both read "what arrives
before a deadline" on the driver's ``clock``, so the driver runs on wall time against a
modem and on virtual time in ``linebox sim``.
"""

import logging
import re
import select

import serial

from linebox.clock import WallClock
from linebox.errors import LineboxError
from linebox.hw.dle import DLE, DleDecoder

_log = logging.getLogger(__name__)

FINAL_RESULTS = ("OK", "ERROR", "CONNECT", "VCON", "NO CARRIER", "BUSY", "NO DIALTONE",
                 "NO ANSWER")


class ModemError(LineboxError):
    """The modem is missing, silent, or refused something it needs to do."""


class SerialPort:
    """A real serial port, read until a deadline on ``clock``."""

    def __init__(self, ser, clock=WallClock) -> None:
        self.ser = ser
        self.clock = clock
        self._fd = ser.fileno()

    def read(self, deadline: float) -> bytes | None:
        timeout = max(0.0, deadline - self.clock.now())
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return None
        data = self.ser.read(max(1, self.ser.in_waiting))
        if not data:
            raise ModemError("port returned no data")
        return data

    def write(self, data: bytes) -> None:
        self.ser.write(data)

    def drop_dtr(self, seconds: float) -> None:
        """DTR low for ``seconds`` (V.250 &D2: the modem hangs up, back to command mode).
        A pty has no DTR: closing the port (HUPCL) is the drop there."""
        try:
            self.ser.dtr = False
            self.clock.sleep(seconds)
            self.ser.dtr = True
        except (serial.SerialException, OSError, ValueError):
            pass

    def close(self) -> None:
        try:
            self.ser.close()
        except (serial.SerialException, OSError):
            pass


def open_serial(port: str, baud: int, rtscts: bool, write_timeout: float, clock=WallClock):
    """The real port, non-blocking reads (the driver waits with select)."""
    ser = serial.serial_for_url(port, baudrate=baud, rtscts=rtscts, timeout=0,
                                write_timeout=write_timeout, exclusive=True)
    return SerialPort(ser, clock)


class AtChannel:
    """Commands and result lines on the modem's port (a mixin of ``ModemLine``).

    Command-mode text may carry DLE codes too (a modem off-hook in "online voice
    command mode" still reports keys and tones: Hayes voice reference, "Tone and Status
    Monitoring"): they are taken out of the text and handled as events."""

    def _init_channel(self, clock) -> None:
        self.clock = clock
        self._port = None
        self._rx = bytearray()                    # command-mode text not yet read as lines
        self._cr_pending = False                  # a line ended on CR; its LF may follow
        self._cmd_dle: DleDecoder | None = None   # DLE codes inside command-mode text

    def _command(self, cmd: str, timeout: float | None = None) -> tuple[str, list[str]]:
        """Send one AT command; its final result and the information lines before it."""
        self._write(cmd.encode("ascii") + b"\r")
        deadline = self.clock.now() + (timeout or self.command_timeout)
        info: list[str] = []
        while True:
            line = self._next_line(deadline)
            if line is None:
                raise ModemError(f"modem on {self.port}: no answer to {cmd}")
            if line.upper() == cmd.upper():          # echo (before ATE0)
                continue
            if line in FINAL_RESULTS or line.startswith("CONNECT"):
                self._keepalive_at = self.clock.now() + self.keepalive
                return ("CONNECT" if line.startswith("CONNECT") else line), info
            if not self._unsolicited(line, quiet=True):
                info.append(line)

    def _require(self, cmd: str, timeout: float | None = None, why: str = "") -> list[str]:
        result, info = self._command(cmd, timeout)
        if result != "OK":
            raise ModemError(f"modem on {self.port}: {cmd} answered {result}"
                             + (f" ({why})" if why else ""))
        return info

    def _optional(self, cmd: str) -> list[str] | None:
        result, info = self._command(cmd)
        return info if result == "OK" else None

    def _wait_final(self, deadline: float, what: str) -> str:
        while True:
            line = self._next_line(deadline)
            if line is None:
                raise ModemError(f"modem on {self.port}: no OK after {what}")
            if line in FINAL_RESULTS:
                return line
            self._unsolicited(line)

    def _next_line(self, deadline: float) -> str | None:
        """The next non-empty command-mode line, or None at the deadline."""
        while True:
            while True:
                m = re.search(rb"[\r\n]", self._rx)
                if m is None:
                    break
                end = m.start()
                raw = bytes(self._rx[:end])
                cut = end + 2 if self._rx[end:end + 2] == b"\r\n" else end + 1
                # "CONNECT\r" with its "\n" still on the way: that LF is not audio.
                self._cr_pending = self._rx[end] == 0x0D and cut == len(self._rx) == end + 1
                del self._rx[:cut]
                line = raw.decode("latin-1").strip()
                if line:
                    return line
            data = self._read(deadline)
            if data is None:
                return None
            self._route(data)

    def _text(self, data: bytes) -> None:
        """Command-mode bytes: text, with any DLE codes in it handled as events."""
        if self._cmd_dle is None and DLE not in data:
            self._rx += data
            return
        if self._cmd_dle is None:
            self._cmd_dle = DleDecoder(**self._shield_state())
        for item in self._cmd_dle.feed(data):
            if isinstance(item, bytes):
                self._rx += item
            elif item.kind != "end":
                self._dle_event(item)
        if self._cmd_dle.ended:              # a stray DLE ETX: the rest is text again
            rest = bytes(self._cmd_dle.remainder)
            self._cmd_dle = None
            self._text(rest)
        elif not self._cmd_dle.pending:
            self._keep_shield(self._cmd_dle)
            self._cmd_dle = None

    # -- the port --------------------------------------------------------------------
    def _read(self, deadline: float) -> bytes | None:
        """Bytes that arrive before ``deadline``, or None."""
        if self._port is None:
            raise ModemError(f"modem on {self.port}: port not open")
        try:
            return self._port.read(deadline)
        except ModemError as e:
            raise ModemError(f"modem on {self.port}: {e}") from None

    def _drain(self, seconds: float) -> None:
        deadline = self.clock.now() + seconds
        while self._read(deadline) is not None:
            pass
        self._rx.clear()
        self._cmd_dle = None

    def _write(self, data: bytes) -> None:
        if self._port is None:
            raise ModemError(f"modem on {self.port}: port not open")
        self._port.write(data)
