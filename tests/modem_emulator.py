"""A V.253 voice modem on a pty, for driving linebox.hw.modem through real pyserial.

``ModemEmulator("usr")`` behaves like a USRobotics USR5637, ``ModemEmulator("conexant")``
like a Conexant CX93010 modem, quirks included:

=================  ===========================  ==================================
                   usr                          conexant
=================  ===========================  ==================================
ATI / ATI3         5601 / U.S. Robotics 56K...  56000 / CX93001-EIS_V0.2002-V92
AT+VSM=?           128 8-BIT LINEAR, 129 16-BIT  0 SIGNED PCM, 1 UNSIGNED PCM,
                   LINEAR, 130/131 ALAW/ULAW,    4 G.711U, 5 G.711A, 129 IMA ADPCM
                   132 IMA ADPCM                 (V.253 layout: bits,0,(rates),...)
caller ID lines    NMBR=5551234567              NMBR = 5551234567
AT+VLS=1           VCON                         OK
AT+VTR=?           OK (full duplex)             ERROR (half duplex only)
ends receive on    DLE !                        DLE DC4 (ignores a lone DLE !)
ends transmit on   DLE ETX, DLE CAN DLE ETX     DLE ETX, DLE DC4
=================  ===========================  ==================================

Receive is ended with ``DLE ETX`` then ``OK``; transmit with ``OK`` alone.

The driver opens ``emu.path``: a symlink the emulator points at the current pty, so
``unplug()`` (the device vanishes) and ``replug()`` (a new pty) look like a USB modem
going away and coming back. Audio "on the line" (``feed_audio``) is sent in receive at
8000 samples a second of wall time, in the chosen format, DLE-doubled.
"""

import bisect
import os
import re
import select
import struct
import threading
import time
import tty
from array import array
from collections import deque
from pathlib import Path

DLE, ETX, SUB, CAN, DC4 = 0x10, 0x03, 0x1A, 0x18, 0x14

PERSONALITIES = {
    "usr": {
        "ATI": ["5601"],
        "ATI3": ["U.S. Robotics 56K FAX USB V1.2.23"],
        "AT+GMI": ["U.S. Robotics"],
        "AT+GMM": ["U.S. Robotics 56K FAX USB"],
        "vsm": ['128,"8-BIT LINEAR",(7200,8000,11025)',
                '129,"16-BIT LINEAR",(7200,8000,11025)',
                '130,"8-BIT ALAW",(8000)',
                '131,"8-BIT ULAW",(8000)',
                '132,"IMA ADPCM",(7200,8000,11025)'],
        "cid_sep": "=",
        "vls_answer": "VCON",
        "full_duplex": True,
        "rx_stops": {ord("!")},
        "tx_aborts": set(),
    },
    "conexant": {
        "ATI": ["56000"],
        "ATI3": ["CX93001-EIS_V0.2002-V92"],
        "AT+GMI": ["CONEXANT"],
        "AT+GMM": ["CX93001-EIS_V0.2002-V92"],
        "vsm": ['0,"SIGNED PCM",8,0,(7200,8000,11025),(0),(0)',
                '1,"UNSIGNED PCM",8,0,(7200,8000,11025),(0),(0)',
                '4,"G.711U",8,0,(8000),(0),(0)',
                '5,"G.711A",8,0,(8000),(0),(0)',
                '129,"IMA ADPCM",4,0,(8000),(0),(0)'],
        "cid_sep": " = ",
        "vls_answer": "OK",
        "full_duplex": False,
        "rx_stops": {DC4},
        "tx_aborts": {DC4},
    },
}

KIND_BY_NAME = {"8-BIT LINEAR": "lin8u", "UNSIGNED PCM": "lin8u", "SIGNED PCM": "lin8s",
                "16-BIT LINEAR": "lin16", "8-BIT ULAW": "ulaw", "G.711U": "ulaw",
                "8-BIT ALAW": "alaw", "G.711A": "alaw"}


# Independent codecs (not the driver's), so the tests check the driver against the standard.
def _ulaw_byte(x: int) -> int:
    """Sun's linear2ulaw (CCITT G.711), written out independently of linebox.dsp.g711."""
    mask = 0xFF if x >= 0 else 0x7F
    mag = min(abs(x), 32635) + 132
    exp = mag.bit_length() - 8
    mant = (mag >> (exp + 3)) & 0x0F
    return ((exp << 4) | mant) ^ mask


def _ulaw_sample(b: int) -> int:
    b = ~b & 0xFF
    exp, mant = (b >> 4) & 7, b & 0x0F
    mag = ((mant << 3) + 132 << exp) - 132
    return -mag if b & 0x80 else mag


def _alaw_sample(b: int) -> int:
    b ^= 0x55
    exp, mant = (b >> 4) & 7, b & 0x0F
    mag = (mant << 4) + 8 if exp == 0 else ((mant << 4) + 0x108) << (exp - 1)
    return mag if b & 0x80 else -mag


_ALAW_BY_VALUE = sorted((_alaw_sample(b), b) for b in range(256))
_ALAW_VALUES = [v for v, _ in _ALAW_BY_VALUE]


def _alaw_byte(x: int) -> int:
    """The A-law code nearest to ``x``."""
    i = bisect.bisect_left(_ALAW_VALUES, x)
    near = [j for j in (i - 1, i) if 0 <= j < len(_ALAW_VALUES)]
    return _ALAW_BY_VALUE[min(near, key=lambda j: abs(_ALAW_VALUES[j] - x))][1]


def encode(kind: str, samples) -> bytes:
    if kind == "lin16":
        return struct.pack(f"<{len(samples)}h", *samples)
    if kind == "ulaw":
        return bytes(_ulaw_byte(x) for x in samples)
    if kind == "alaw":
        return bytes(_alaw_byte(x) for x in samples)
    if kind == "lin8u":
        return bytes(((x >> 8) + 128) & 0xFF for x in samples)
    return bytes((x >> 8) & 0xFF for x in samples)


def decode(kind: str, data: bytes) -> list[int]:
    if kind == "lin16":
        return list(struct.unpack(f"<{len(data) // 2}h", data[:len(data) // 2 * 2]))
    if kind == "ulaw":
        return [_ulaw_sample(b) for b in data]
    if kind == "alaw":
        return [_alaw_sample(b) for b in data]
    if kind == "lin8u":
        return [(b - 128) << 8 for b in data]
    return [(b - 256 if b >= 128 else b) << 8 for b in data]


def escape(data: bytes) -> bytes:
    return data.replace(b"\x10", b"\x10\x10")


class ModemEmulator:
    """A scriptable voice modem behind a pty; use as a context manager.

    ``commands`` lists every AT command received, in order (upper case). ``stops`` lists
    the DLE codes that ended (or tried to end) a data state, e.g. ``("vrx", b"!")``.
    """

    def __init__(self, personality: str, link: str | Path, *, vsm: list[str] | None = None,
                 full_duplex: bool | None = None) -> None:
        self.personality = personality
        self.p = dict(PERSONALITIES[personality])
        if vsm is not None:
            self.p["vsm"] = vsm
        if full_duplex is not None:
            self.p["full_duplex"] = full_duplex
        self.path = str(link)
        self.commands: list[str] = []
        self.stops: list[tuple[str, bytes]] = []
        self.responding = True            # False: a modem that stopped answering commands
        self.streaming = True             # False: a modem that stops sending receive audio
        self.lock = threading.RLock()
        self._out = bytearray()           # bytes waiting to go to the driver
        self._scheduled: list[tuple[float, bytes]] = []   # on-hook output due at a time
        self._line_audio: deque[int] = deque()
        self._inject: deque[tuple[bytes, float]] = deque()  # raw stream bytes, pause after
        self._hold_until = 0.0            # a split DLE code: nothing else until then
        self._received = bytearray()      # de-DLE'd transmit data from the driver
        self._master = None
        self._slave = None
        self._stop = threading.Event()
        self._thread = None
        self._reset()
        self._open_pty()

    # -- life -----------------------------------------------------------------
    def __enter__(self):
        self._thread = threading.Thread(target=self._run, name="modem-emulator", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        self._close_pty()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _reset(self) -> None:
        self.echo = True
        self.fclass = 0
        self.kind: str | None = None
        self.offhook = False
        self.mode = "command"
        self._cmd = bytearray()
        self._dle = False
        self._stream_t0 = 0.0
        self._streamed = 0

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        tmp = f"{self.path}.tmp"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    # -- scripting ------------------------------------------------------------
    def unplug(self) -> None:
        """The USB modem goes away: the port errors and its device file vanishes."""
        with self.lock:
            self._close_pty()
            os.unlink(self.path)
            self._out.clear()
            self._scheduled.clear()
            self._reset()

    def replug(self) -> None:
        """The modem comes back, at the same path, freshly powered up."""
        with self.lock:
            self._reset()
            self._open_pty()

    def ring(self, times: int = 1, callerid: dict | None = None, period: float = 0.4) -> None:
        """``times`` RINGs ``period`` s apart; caller ID between the first and second.
        ``callerid`` keys: date, time, number, name (``P``/``O`` for absent), mesg (bytes)."""
        now = time.monotonic()
        with self.lock:
            for i in range(times):
                self._scheduled.append((now + i * period, b"\r\nRING\r\n"))
            if callerid:
                self._scheduled.append((now + period / 2, self._callerid_block(callerid)))
            self._scheduled.sort(key=lambda x: x[0])

    def _callerid_block(self, cid: dict) -> bytes:
        sep = self.p["cid_sep"]
        lines = []
        for key, field in (("date", "DATE"), ("time", "TIME"), ("number", "NMBR"),
                           ("name", "NAME")):
            if key in cid:
                lines.append(f"{field}{sep}{cid[key]}")
        if "mesg" in cid:
            lines.append(f"MESG{sep}{cid['mesg'].hex().upper()}")
        return "".join(f"\r\n{line}" for line in lines).encode() + b"\r\n"

    def feed_audio(self, samples) -> None:
        """Line audio the modem will deliver in receive, after what is already queued."""
        with self.lock:
            self._line_audio.extend(samples)

    def send_dle(self, code: str | bytes, split: bool = False) -> None:
        """``DLE <code>`` into the receive stream; ``split``: the DLE, a pause, the code."""
        code = code.encode("latin-1") if isinstance(code, str) else code
        with self.lock:
            if split:
                self._inject.append((b"\x10", 0.1))
                self._inject.append((code, 0.0))
            else:
                self._inject.append((b"\x10" + code, 0.0))

    def press_dtmf(self, digit: str, shielded: bool = False) -> None:
        """A key on the line, as this modem reports it in the data stream."""
        d = digit.encode()
        raw = (b"\x10/\x10" + d + b"\x10" + d + b"\x10~") if shielded else b"\x10" + d
        with self.lock:
            self._inject.append((raw, 0.0))

    def send_raw(self, data: bytes) -> None:
        """Bytes into the stream exactly as given (no DLE doubling)."""
        with self.lock:
            self._inject.append((data, 0.0))

    def end_receive(self) -> None:
        """The modem leaves receive by itself (as some do on a silence or loop timer)."""
        with self.lock:
            self.mode = "command"
            self._inject.clear()
            self._send(b"\x10\x03")
            self._result("OK")

    def received_audio(self) -> list[int]:
        """What the driver transmitted, de-DLE'd and decoded."""
        with self.lock:
            return decode(self.kind or "lin16", bytes(self._received))

    def received_bytes(self) -> bytes:
        with self.lock:
            return bytes(self._received)

    # -- the modem's loop ---------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                master = self._master
            if master is None:
                time.sleep(0.005)
                continue
            try:
                ready, _, _ = select.select([master], [], [], 0.005)
            except (OSError, ValueError):
                continue
            with self.lock:
                if master != self._master:
                    continue
                if ready:
                    try:
                        data = os.read(master, 4096)
                    except OSError:
                        data = b""          # the driver has the port closed: EIO
                    for b in data:
                        self._byte(b)
                self._due()
                self._flush()

    def _flush(self) -> None:
        while self._out:
            try:
                n = os.write(self._master, self._out[:4096])
            except BlockingIOError:
                return
            except OSError:
                self._out.clear()
                return
            del self._out[:n]

    def _send(self, data: bytes) -> None:
        self._out += data

    def _result(self, *lines: str) -> None:
        self._send("".join(f"\r\n{line}\r\n" for line in lines).encode())

    def _due(self) -> None:
        now = time.monotonic()
        if self.mode == "command" and not self.offhook:
            while self._scheduled and self._scheduled[0][0] <= now:
                self._send(self._scheduled.pop(0)[1])
        if self.mode == "command" or now < self._hold_until:
            return
        while self._inject:
            raw, pause = self._inject.popleft()
            self._send(raw)
            if pause:           # nothing may come between a DLE and its code
                self._hold_until = now + pause
                return
        if self.mode == "vtx" or not self.streaming:
            return
        due = int((now - self._stream_t0) * 8000) - self._streamed
        if due <= 0:
            return
        samples = [self._line_audio.popleft() if self._line_audio else 0 for _ in range(due)]
        self._streamed += due
        self._send(escape(encode(self.kind, samples)))

    # -- bytes from the driver ------------------------------------------------------
    def _byte(self, b: int) -> None:
        if self.mode == "command":
            self._command_byte(b)
        else:
            self._data_byte(b)

    def _command_byte(self, b: int) -> None:
        if b != 0x0D:
            self._cmd.append(b)
            return
        text = self._cmd.decode("latin-1")
        self._cmd.clear()
        m = re.search(r"[Aa][Tt]", text)
        if m is None:
            return                       # line noise, or DLE codes after a data state
        cmd = text[m.start():].strip().upper()
        self.commands.append(cmd)
        if not self.responding:
            return
        if self.echo:
            self._send(text[m.start():].encode("latin-1") + b"\r")
        self._at(cmd)

    def _at(self, cmd: str) -> None:
        p = self.p
        if cmd in ("ATZ", "AT&F"):
            self._reset()
            self._result("OK")
        elif cmd in ("AT", "ATV1", "ATQ0", "AT+IFC=2,2", "AT+VCID=1", "AT+VLS=0"):
            if cmd == "AT+VLS=0":
                self.offhook = False
            self._result("OK")
        elif cmd in ("ATE0", "ATE1"):
            self.echo = cmd == "ATE1"
            self._result("OK")
        elif cmd in ("ATH", "ATH0"):
            self.offhook = False
            self._result("OK")
        elif cmd in ("ATI", "ATI3", "AT+GMI", "AT+GMM"):
            self._result(*p[cmd], "OK")
        elif cmd == "AT+FCLASS=8":
            self.fclass = 8
            self._result("OK")
        elif cmd == "AT+VSM=?":
            self._result(*p["vsm"], "OK")
        elif cmd.startswith("AT+VSM="):
            self._select_format(cmd[7:])
        elif cmd == "AT+VLS=1":
            self.offhook = True
            self._result(p["vls_answer"])
        elif cmd == "AT+VTR=?":
            self._result("(0-255)", "OK") if p["full_duplex"] else self._result("ERROR")
        elif cmd in ("AT+VRX", "AT+VTX") or (cmd == "AT+VTR" and p["full_duplex"]):
            if self.fclass != 8 or self.kind is None or not self.offhook:
                self._result("ERROR")
                return
            self._result("CONNECT")
            self.mode = cmd[3:].lower()
            self._dle = False
            self._stream_t0 = time.monotonic()
            self._streamed = 0
        else:
            self._result("ERROR")

    def _select_format(self, args: str) -> None:
        parts = args.split(",")
        for entry in self.p["vsm"]:
            code, name = re.match(r'(\d+),"([^"]*)"', entry).groups()
            if parts[0] == code and len(parts) > 1 and parts[1] == "8000" \
                    and name in KIND_BY_NAME:
                self.kind = KIND_BY_NAME[name]
                self._result("OK")
                return
        self._result("ERROR")

    def _data_byte(self, b: int) -> None:
        if not self._dle:
            if b == DLE:
                self._dle = True
            elif self.mode in ("vtx", "vtr"):
                self._received.append(b)
            return
        self._dle = False
        if b == DLE:
            if self.mode in ("vtx", "vtr"):
                self._received.append(DLE)
        elif b == SUB:
            if self.mode in ("vtx", "vtr"):
                self._received += b"\x10\x10"
        elif self.mode in ("vrx", "vtr"):
            self._receive_code(b)
        else:
            self._transmit_code(b)

    def _receive_code(self, b: int) -> None:
        self.stops.append((self.mode, bytes([b])))
        if b in self.p["rx_stops"] or (self.mode == "vtr" and b == ETX):
            self.mode = "command"
            self._inject.clear()
            self._send(b"\x10\x03")
            self._result("OK")

    def _transmit_code(self, b: int) -> None:
        self.stops.append(("vtx", bytes([b])))
        if b == ETX or b in self.p["tx_aborts"]:
            self.mode = "command"
            self._result("OK")
        # DLE CAN drops buffered audio; the emulator plays everything at once, so no-op.

    # -- conveniences for tests ---------------------------------------------------
    def wait_for(self, predicate, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(0.005)
        return False


def sine(n: int, freq: float = 1000.0, amp: int = 10000, phase: float = 0.5) -> array:
    """``n`` samples of a sine at 8 kHz, starting away from zero."""
    import math
    return array("h", (round(amp * math.sin(2 * math.pi * freq * i / 8000 + phase))
                       for i in range(n)))
