"""A USB voice modem (ITU-T V.253, e.g. USRobotics USR5637, Conexant CX93010) as a line.

The modem is driven over its serial port with pyserial:

- set-up: ``ATZ``, ``ATE0``, ``ATI``/``ATI3``/``AT+GMI``/``AT+GMM`` (which chip is it?),
  ``AT+FCLASS=8`` (voice), ``AT+VCID=1`` (formatted caller ID), ``AT+VSM=?`` (the audio
  formats; one is chosen by its *name*: 16-bit linear, then G.711 mu-law, A-law, 8-bit
  linear), ``AT+VSM=<n>,8000``, ``AT+VTR=?`` (full duplex?).
- on-hook: result lines. ``RING`` is a ``RingSeen`` fact, and ``Tick.ringing`` is held
  for the plan's ring burst, so the ring counter sees the cadence it expects. Caller ID
  lines (``NMBR = 555``, ``NMBR=555``, ``NAME``, ``DATE``, ``TIME``, ``MESG`` with the raw
  message in hex) become one ``CallerIdReceived`` fact at the next RING or after
  ``callerid_quiet`` seconds without more. The modem hears nothing on-hook, so ``tick``
  returns silence, paced at 20 ms by the wall clock.
- answer: ``AT+VLS=1`` (off-hook, line to the voice path), then ``AT+VTR`` (full duplex)
  or ``AT+VRX`` (receive). Half duplex: while the flow plays, the driver switches to
  ``AT+VTX``; ``SWITCH_BACK_FRAMES`` silent frames later, back to ``AT+VRX`` so keys and
  voice are heard again. The data states speak the DLE stream of ``linebox.hw.dle``.
- faults: a port that errors or vanishes, a modem that stops answering or stops sending
  audio: one ``Fault("modem", reason)`` fact, silence paced by the clock, and a re-open with
  exponential backoff (1, 2, 4 ... 60 s); ``FaultCleared("modem")`` once it works again.
  Nothing ever raises out of ``tick``.

How each chipset wants a data state ended (``CHIPSETS``): V.253 says ``DLE !`` aborts
receive and ``DLE ETX`` ends transmit once the buffer has played (``DLE CAN`` drops it
first). Rockwell/Conexant firmware also knows ``DLE DC4`` (drop the buffer, back to
command mode), and some of their chips only leave receive on it, so for them and for
unknown modems the driver sends ``DLE ! DLE DC4``: a modem that obeyed the first sees the
second in command mode, where it is ignored. The quirks are from vgetty's notes and the
vendors' command references; check them on hardware (``linebox hwcheck``).
"""

import re
import select
import sys
import time
from array import array
from dataclasses import dataclass

import serial

from linebox import FRAME, RATE, log
from linebox.caller import CallerId
from linebox.dsp import g711
from linebox.dsp.callerid import parse_message
from linebox.dsp.plans import get_plan
from linebox.errors import LineboxError
from linebox.hw.dle import CAN, DC4, DLE, ETX, DleDecoder, DleEvent, dle_escape
from linebox.hw.line import (
    SILENT_FRAME,
    CallerIdReceived,
    Fault,
    FaultCleared,
    HungUp,
    KeyPressed,
    Line,
    LineEvent,
    RingSeen,
    Tick,
)
from linebox.wavfile import encode_samples

_log = log.get("hw.modem")

FRAME_SECONDS = FRAME / RATE
SWITCH_BACK_FRAMES = 5        # silent frames from the flow before half duplex listens again
TX_LEAD_FRAMES = 4            # frames written ahead of the clock, so the modem never runs dry
RESYNC_SECONDS = 0.1          # a tick this late restarts the frame clock instead of catching up
MAX_BACKLOG_SECONDS = 2.0     # received audio kept when the caller of tick falls behind
RESET_TIMEOUT = 3.0           # ATZ takes a while on some modems
PLAYOUT_TIMEOUT = 5.0         # after DLE ETX the modem plays its buffer before answering OK
FINAL_RESULTS = ("OK", "ERROR", "CONNECT", "VCON", "NO CARRIER", "BUSY", "NO DIALTONE",
                 "NO ANSWER")
HANGUP_EVENTS = {"busy": "busy", "dialtone": "dial", "loop_break": "loop"}
_CALLERID_LINE = re.compile(r"^(DATE|TIME|NMBR|NAME|MESG|DDN_NMBR)\s*=\s*(.*)$")
_VSM_ENTRY = re.compile(r'^\s*(\d+)\s*,\s*"([^"]*)"\s*(?:,(.*))?$')


class ModemError(LineboxError):
    """The modem is missing, silent, or refused something it needs to do."""


# ---------------------------------------------------------------- chipsets


@dataclass(frozen=True, slots=True)
class Chipset:
    """How one family of modems ends its data states."""

    name: str
    rx_stop: bytes      # ends AT+VRX / AT+VTR; the modem answers DLE ETX, then OK
    tx_end: bytes       # ends AT+VTX once the buffered audio has played; OK follows
    tx_abort: bytes     # ends AT+VTX at once, dropping what is buffered (hang-up mid-prompt)


_V253_ABORT = bytes([DLE, ord("!")])
CHIPSETS = {
    "usr": Chipset("usr", rx_stop=_V253_ABORT, tx_end=bytes([DLE, ETX]),
                   tx_abort=bytes([DLE, CAN, DLE, ETX])),
    "conexant": Chipset("conexant", rx_stop=_V253_ABORT + bytes([DLE, DC4]),
                        tx_end=bytes([DLE, ETX]), tx_abort=bytes([DLE, DC4])),
    "unknown": Chipset("unknown", rx_stop=_V253_ABORT + bytes([DLE, DC4]),
                       tx_end=bytes([DLE, ETX]), tx_abort=bytes([DLE, CAN, DLE, ETX])),
}


def detect_chipset(*answers: str) -> str:
    """``usr``, ``conexant`` or ``unknown``, from the modem's identification answers."""
    text = " ".join(answers).upper()
    if "ROBOTICS" in text or "USROBOTICS" in text or re.search(r"\bUSR\b", text):
        return "usr"
    if any(s in text for s in ("CONEXANT", "CX93", "CX9", "ROCKWELL", "RC56")):
        return "conexant"
    return "unknown"


# ---------------------------------------------------------------- audio formats

FORMAT_PREFERENCE = ("lin16", "ulaw", "alaw", "lin8u", "lin8s")
BYTES_PER_SAMPLE = {"lin16": 2, "ulaw": 1, "alaw": 1, "lin8u": 1, "lin8s": 1}
SILENCE_BYTE = {"ulaw": 0xFF, "alaw": 0xD5, "lin8u": 0x80, "lin8s": 0x00, "lin16": 0x00}


@dataclass(frozen=True, slots=True)
class VsmEntry:
    """One compression method from ``AT+VSM=?``."""

    code: int
    name: str
    bits: int | None
    rates: tuple[tuple[int, int], ...]     # (low, high) ranges; a single rate is (r, r)
    kind: str | None                       # one of FORMAT_PREFERENCE, or None: unusable

    def supports(self, rate: int) -> bool:
        return any(lo <= rate <= hi for lo, hi in self.rates)


def classify_format(name: str, bits: int | None = None) -> str | None:
    """What a method's name says it is; None for what the driver cannot decode (ADPCM...)."""
    n = name.upper().replace(" ", "")
    if any(s in n for s in ("ADPCM", "CELP", "GSM", "CVSD", "ADM", "RESERVED")):
        return None
    if any(s in n for s in ("ULAW", "U-LAW", "MU-LAW", "G.711U", "G711U", "µ-LAW")):
        return "ulaw"
    if any(s in n for s in ("ALAW", "A-LAW", "G.711A", "G711A")):
        return "alaw"
    if "LINEAR" in n or "PCM" in n:
        if "16" in n or bits == 16:
            return "lin16"
        if bits not in (None, 8) and "8" not in n:
            return None
        if "UNSIGNED" in n:
            return "lin8u"
        if "SIGNED" in n:
            return "lin8s"
        return "lin8u"      # USR and Rockwell "8-BIT LINEAR" is unsigned (vgetty)
    return None


def _rates(text: str) -> tuple[tuple[int, int], ...]:
    out = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            out.append((int(m[1]), int(m[2])))
        elif part.isdigit():
            out.append((int(part), int(part)))
    return tuple(out)


def parse_vsm_list(lines) -> list[VsmEntry]:
    """The entries of an ``AT+VSM=?`` answer, in both layouts seen in the field:
    ``128,"8-BIT LINEAR",(7200,8000,11025)`` and ``4,"G.711U",8,0,(8000),(0),(0)``."""
    entries = []
    for line in lines:
        m = _VSM_ENTRY.match(line)
        if not m:
            continue
        rest = m[3] or ""
        groups = re.findall(r"\(([^)]*)\)", rest)
        head = rest.split("(", 1)[0]
        numbers = [int(x) for x in re.findall(r"\d+", head)]
        bits = numbers[0] if numbers else None
        rates = _rates(groups[0]) if groups else ()
        entries.append(VsmEntry(int(m[1]), m[2], bits, rates, classify_format(m[2], bits)))
    return entries


def choose_format(entries, rate: int = RATE) -> VsmEntry | None:
    """The best method the driver can use at ``rate`` (FORMAT_PREFERENCE order)."""
    usable = [e for e in entries if e.kind is not None and e.supports(rate)]
    usable.sort(key=lambda e: FORMAT_PREFERENCE.index(e.kind))
    return usable[0] if usable else None


_U8_DEC = [(b - 128) << 8 for b in range(256)]
_S8_DEC = [(b - 256 if b >= 128 else b) << 8 for b in range(256)]
_FLIP_TOP_BIT = bytes(b ^ 0x80 for b in range(256))
_BIG_ENDIAN = sys.byteorder == "big"


def decode_audio(kind: str, data: bytes) -> array:
    """Modem bytes in format ``kind`` to signed 16-bit samples."""
    if kind == "lin16":
        out = array("h")
        out.frombytes(data)
        if _BIG_ENDIAN:
            out.byteswap()
        return out
    if kind == "ulaw":
        return g711.ulaw_decode(data)
    if kind == "alaw":
        return g711.alaw_decode(data)
    table = _U8_DEC if kind == "lin8u" else _S8_DEC
    return array("h", map(table.__getitem__, data))


def encode_audio(kind: str, samples: array) -> bytes:
    """Signed 16-bit samples to modem bytes in format ``kind``."""
    if kind in ("ulaw", "alaw"):
        return encode_samples(samples, kind)
    raw = encode_samples(samples, "pcm16")     # little-endian on any host
    if kind == "lin16":
        return raw
    high = raw[1::2]           # the top byte of each little-endian sample
    return high.translate(_FLIP_TOP_BIT) if kind == "lin8u" else high


# ---------------------------------------------------------------- caller ID


def callerid_fact(fields: dict[str, str]) -> CallerId:
    """The caller ID from a block of ``+VCID=1`` lines (keys DATE, NMBR, ...)."""
    out = {"number": None, "name": None, "number_absent": None, "name_absent": None}
    mesg = fields.get("MESG", "").replace(" ", "")
    if mesg:
        try:
            parsed = parse_message(bytes.fromhex(mesg))
        except ValueError:
            parsed = None
        if parsed:
            for key in out:
                out[key] = parsed[key]
    number = fields.get("NMBR", fields.get("DDN_NMBR"))
    if number:
        if number in ("P", "O"):
            out["number_absent"], out["number"] = number, None
        else:
            out["number"] = number
    name = fields.get("NAME")
    if name:
        if name in ("P", "O"):
            out["name_absent"], out["name"] = name, None
        else:
            out["name"] = name
    return CallerId.from_fields(out)


class Backoff:
    """Delays between reconnection attempts: ``first``, doubling up to ``limit``."""

    def __init__(self, first: float = 1.0, limit: float = 60.0) -> None:
        self.first, self.limit = first, limit
        self.reset()

    def reset(self) -> None:
        self._delay = self.first

    def next(self) -> float:
        delay = self._delay
        self._delay = min(self._delay * 2, self.limit)
        return delay


# ---------------------------------------------------------------- the line

# Driver states. OFFHOOK: off-hook in command mode, between data states.
CLOSED, IDLE, OFFHOOK, RX, TX, DUPLEX, FAULT = (
    "closed", "idle", "offhook", "rx", "tx", "duplex", "fault")


def open_serial(port: str, baud: int, rtscts: bool, write_timeout: float):
    """The real port, non-blocking reads (the driver waits with select)."""
    return serial.serial_for_url(port, baudrate=baud, rtscts=rtscts, timeout=0,
                                 write_timeout=write_timeout, exclusive=True)


class ModemLine(Line):
    """One analog line on a V.253 voice modem (``driver = "modem"``).

    ``duplex`` is ``auto`` (ask ``AT+VTR=?``), ``full`` or ``half``. ``rtscts`` is the
    hardware flow control that paces transmitted audio (ptys have none: tests turn it
    off). ``keepalive`` seconds of on-hook quiet bring an ``AT`` to check the modem is
    there. The modem reports keys itself (``reports_dtmf``), in addition to the audio.
    """

    reports_dtmf = True
    reports_hangup = True

    @property
    def full_duplex(self) -> bool:
        """Known once the modem is set up (``AT+VTR=?`` or the ``duplex`` setting)."""
        return self._full_duplex

    def __init__(self, line_id: int, port: str, plan: str = "us", *, baud: int = 115200,
                 rtscts: bool = True, duplex: str = "auto", command_timeout: float = 2.0,
                 stall_timeout: float = 0.5, keepalive: float = 30.0,
                 backoff: tuple[float, float] = (1.0, 60.0), callerid_quiet: float = 0.5,
                 write_timeout: float = 2.0, reset_timeout: float = RESET_TIMEOUT,
                 serial_factory=open_serial) -> None:
        super().__init__(line_id, plan)
        if duplex not in ("auto", "full", "half"):
            raise ValueError(f"duplex must be auto, full or half, not {duplex!r}")
        self.port = port
        self.baud = baud
        self.rtscts = rtscts
        self.duplex = duplex
        self.command_timeout = command_timeout
        self.stall_timeout = stall_timeout
        self.keepalive = keepalive
        self.callerid_quiet = callerid_quiet
        self.write_timeout = write_timeout
        self.reset_timeout = reset_timeout
        self._factory = serial_factory
        self._backoff = Backoff(*backoff)
        cadence = get_plan(plan).ring_cadence
        self._ring_burst = sum(cadence[:-1])      # ringing, as the ring counter sees it
        self._ser = None
        self._fd = None
        self.state = CLOSED
        self._identity: dict = {}
        self._chipset = CHIPSETS["unknown"]
        self._format = "ulaw"
        self._full_duplex = False
        self._rx = bytearray()                    # command-mode text not yet read as lines
        self._cr_pending = False                  # a line ended on CR; its LF may follow
        self._decoder: DleDecoder | None = None
        self._audio = bytearray()                 # received audio not yet returned
        self._events: list[LineEvent] = []
        self._cid: dict[str, str] = {}
        self._cid_at = 0.0
        self._ring_until = 0.0
        self._next_frame: float | None = None
        self._keepalive_at = 0.0
        self._retry_at = 0.0
        self._tx_quiet = 0

    # -- public ------------------------------------------------------------
    @property
    def faulted(self) -> bool:
        return self.state == FAULT

    def open(self) -> None:
        """Open and set up the modem now; ModemError if it cannot be."""
        if self.state not in (CLOSED, FAULT):
            return
        was_faulted = self.state == FAULT
        try:
            self._connect()
        except (serial.SerialException, OSError) as e:
            self._close_port()
            self.state = FAULT if was_faulted else CLOSED
            raise ModemError(f"modem on {self.port}: {e}") from None
        except ModemError:
            self._close_port()
            self.state = FAULT if was_faulted else CLOSED
            raise
        self._backoff.reset()
        if was_faulted:
            self._events.append(FaultCleared("modem"))

    def identify(self) -> dict:
        """What the modem is and how it is used, for ``linebox hwcheck``."""
        self.open()
        return dict(self._identity)

    def tick(self, out: array | None = None) -> Tick:
        try:
            if self.state == CLOSED:
                self._connect()
                self._backoff.reset()
            if self.state == FAULT:
                return self._tick_fault()
            if self.state == IDLE:
                return self._tick_idle()
            return self._tick_offhook(out)
        except (ModemError, serial.SerialException, OSError) as e:
            self._enter_fault(str(e))
            return self._tick_result(SILENT_FRAME)
        except Exception as e:      # a driver bug must not take the line's runner down
            _log.exception("line %s: modem driver error", self.id)
            self._enter_fault(f"driver error: {e}")
            return self._tick_result(SILENT_FRAME)

    def set_hook(self, off_hook: bool) -> None:
        if off_hook == self.off_hook:
            return
        self.off_hook = off_hook
        if self.state in (CLOSED, FAULT):
            return
        try:
            if off_hook:
                self._answer()
            else:
                self._hang_up()
        except (ModemError, serial.SerialException, OSError) as e:
            self._enter_fault(str(e))
        except Exception as e:      # as in tick: a driver bug is a fault, not a crash
            _log.exception("line %s: modem driver error", self.id)
            self._enter_fault(f"driver error: {e}")

    def close(self) -> None:
        """Hang up (ATH) and release the port."""
        if self._ser is not None and self.state not in (CLOSED, FAULT):
            try:
                self._end_data_state(abort=True)
                self._command("ATH")
            except (ModemError, serial.SerialException, OSError) as e:
                _log.info("line %s: modem on %s: hang-up on close failed: %s",
                          self.id, self.port, e)
        self._close_port()
        self.state = CLOSED
        self.off_hook = False

    # -- set-up --------------------------------------------------------------
    def _connect(self) -> None:
        self._close_port()
        self._ser = self._factory(self.port, self.baud, self.rtscts, self.write_timeout)
        self._fd = self._ser.fileno()
        self._rx.clear()
        self._audio.clear()
        self._decoder = None
        self.state = IDLE
        try:
            self._setup()
        except BaseException:
            self.state = CLOSED
            raise
        self._next_frame = None
        self._keepalive_at = time.monotonic() + self.keepalive
        if self.off_hook:           # a call was up when the modem went away: it is gone now
            _log.info("line %s: modem back on-hook; the call in progress was lost", self.id)

    def _setup(self) -> None:
        # A modem left in a data state by a crash reads AT commands as audio: end any.
        self._write(_V253_ABORT + bytes([DLE, DC4, DLE, ETX]) + b"\r")
        self._drain(0.1)
        self._require("ATZ", timeout=self.reset_timeout)
        self._require("ATE0")
        self._optional("ATV1")
        ati = self._optional("ATI")
        ati3 = self._optional("ATI3")
        gmi = self._optional("AT+GMI")
        gmm = self._optional("AT+GMM")
        chipset = detect_chipset(*ati, *ati3, *gmi, *gmm)
        self._chipset = CHIPSETS[chipset]
        if self.rtscts:
            self._optional("AT+IFC=2,2")
        self._require("AT+FCLASS=8", why="no voice mode")
        callerid = self._optional("AT+VCID=1") is not None
        entries = parse_vsm_list(self._require("AT+VSM=?"))
        chosen = choose_format(entries)
        if chosen is None:
            names = ", ".join(e.name for e in entries) or "none"
            raise ModemError(f"modem on {self.port}: no usable audio format at {RATE} Hz "
                             f"(offers {names}; needs 16-bit linear, G.711 or 8-bit linear)")
        self._require(f"AT+VSM={chosen.code},{RATE}")
        self._format = chosen.kind
        self._optional("AT+VLS=0")
        if self.duplex == "auto":
            self._full_duplex = self._optional("AT+VTR=?") is not None
        else:
            self._full_duplex = self.duplex == "full"
        self._identity = {
            "port": self.port,
            "manufacturer": (gmi or [""])[0] or None,
            "model": (gmm or ati3 or ati or [""])[0] or None,
            "ati": ati or [],
            "ati3": ati3 or [],
            "chipset": chipset,
            "formats": [e.name for e in entries],
            "format": chosen.name,
            "format_code": chosen.code,
            "format_kind": chosen.kind,
            "duplex": "full" if self._full_duplex else "half",
            "callerid": callerid,
        }
        _log.info("line %s: modem on %s: %s (%s), audio %s, %s duplex", self.id, self.port,
                  self._identity["model"], chipset, chosen.name, self._identity["duplex"])

    # -- ticks -----------------------------------------------------------------
    def _frame_deadline(self) -> float:
        now = time.monotonic()
        if self._next_frame is None or now - self._next_frame > RESYNC_SECONDS:
            self._next_frame = now
        self._next_frame += FRAME_SECONDS
        return self._next_frame

    def _tick_result(self, audio: array) -> Tick:
        events, self._events = tuple(self._events), []
        ringing = not self.off_hook and time.monotonic() < self._ring_until
        return Tick(audio=audio, ringing=ringing, events=events)

    def _tick_idle(self) -> Tick:
        deadline = self._frame_deadline()
        while True:
            line = self._next_line(deadline)
            if line is None:
                break
            self._unsolicited(line)
        now = time.monotonic()
        if self._cid and now - self._cid_at >= self.callerid_quiet:
            self._flush_callerid()
        if now >= self._keepalive_at:
            self._require("AT")
        return self._tick_result(SILENT_FRAME)

    def _tick_fault(self) -> Tick:
        deadline = self._frame_deadline()
        if time.monotonic() >= self._retry_at:
            try:
                self._connect()
            except (ModemError, serial.SerialException, OSError) as e:
                self._close_port()
                self.state = FAULT
                delay = self._backoff.next()
                self._retry_at = time.monotonic() + delay
                _log.warning("line %s: modem on %s still failing (%s); next try in %g s",
                             self.id, self.port, e, delay)
            else:
                self._backoff.reset()
                self._events.append(FaultCleared("modem"))
                _log.info("line %s: modem on %s is back", self.id, self.port)
                return self._tick_result(SILENT_FRAME)
        delay = deadline - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return self._tick_result(SILENT_FRAME)

    def _tick_offhook(self, out: array | None) -> Tick:
        if self.state == DUPLEX:
            self._write(dle_escape(encode_audio(self._format, out if out is not None
                                                else SILENT_FRAME)))
            return self._tick_result(self._receive_frame())
        if self.state == RX and out is not None:
            self._end_data_state()
            self._start_data("AT+VTX", TX)
        if self.state == TX:
            self._tx_quiet = 0 if out is not None else self._tx_quiet + 1
            if self._tx_quiet < SWITCH_BACK_FRAMES:
                return self._tick_tx(out)
            self._end_data_state()
            self._start_data("AT+VRX", RX)
        if self.state == RX:
            return self._tick_result(self._receive_frame())
        # Off-hook in command mode (the modem ended a data state by itself): listen again.
        self._start_data("AT+VTR" if self._full_duplex else "AT+VRX",
                         DUPLEX if self._full_duplex else RX)
        return self._tick_result(self._receive_frame())

    def _tick_tx(self, out: array | None) -> Tick:
        self._write(dle_escape(encode_audio(self._format, out if out is not None
                                            else SILENT_FRAME)))
        # Paced by the clock, TX_LEAD_FRAMES ahead (flow control paces a real modem too).
        deadline = self._frame_deadline()
        while True:
            data = self._read(deadline)
            if data is None:
                break
            self._route(data)
        return self._tick_result(SILENT_FRAME)

    def _receive_frame(self) -> array:
        need = FRAME * BYTES_PER_SAMPLE[self._format]
        deadline = time.monotonic() + self.stall_timeout
        while len(self._audio) < need:
            data = self._read(deadline)
            if data is None:
                raise ModemError(f"modem on {self.port}: no audio for {self.stall_timeout:g} s")
            self._route(data)
            if self._decoder is None:        # the modem left the data state by itself
                self._wait_final(time.monotonic() + self.command_timeout, "end of data")
                self.state = OFFHOOK
                return SILENT_FRAME
        frame = bytes(self._audio[:need])
        del self._audio[:need]
        backlog = int(MAX_BACKLOG_SECONDS * RATE) * BYTES_PER_SAMPLE[self._format]
        if len(self._audio) > backlog:
            _log.warning("line %s: dropping %d bytes of received audio (falling behind)",
                         self.id, len(self._audio) - backlog)
            del self._audio[:len(self._audio) - backlog]
        return decode_audio(self._format, frame)

    # -- answer, switch, hang up ----------------------------------------------
    def _answer(self) -> None:
        self._cid.clear()
        result, _ = self._command("AT+VLS=1")
        if result not in ("OK", "VCON"):
            raise ModemError(f"modem on {self.port}: AT+VLS=1 (off-hook) answered {result}")
        if self._full_duplex:
            self._start_data("AT+VTR", DUPLEX)
        else:
            self._start_data("AT+VRX", RX)

    def _hang_up(self) -> None:
        self._end_data_state(abort=True)
        self._require("ATH")
        self.state = IDLE
        self._next_frame = None
        self._keepalive_at = time.monotonic() + self.keepalive

    def _start_data(self, command: str, state: str) -> None:
        result, _ = self._command(command)
        if result != "CONNECT":
            raise ModemError(f"modem on {self.port}: {command} answered {result}")
        if self._cr_pending and not self._rx:
            data = self._read(time.monotonic() + 0.05)
            if data:
                self._rx += data
        if self._cr_pending and self._rx[:1] == b"\n":
            del self._rx[:1]
        self._cr_pending = False
        self._decoder = DleDecoder()
        self._audio.clear()
        self.state = state
        self._tx_quiet = 0
        self._next_frame = time.monotonic() - TX_LEAD_FRAMES * FRAME_SECONDS
        leftover, self._rx = bytes(self._rx), bytearray()
        if leftover:
            self._route(leftover)

    def _end_data_state(self, abort: bool = False) -> None:
        """Leave RX, TX or DUPLEX and wait for the modem's OK (nothing if in command mode)."""
        if self.state in (RX, DUPLEX):
            self._write(self._chipset.rx_stop)
            deadline = time.monotonic() + self.command_timeout
            while self._decoder is not None:
                data = self._read(deadline)
                if data is None:
                    raise ModemError(f"modem on {self.port}: receive did not end "
                                     f"after {self._chipset.rx_stop!r}")
                self._route(data)
            self._wait_final(deadline, "end of receive")
        elif self.state == TX:
            # The modem sends no DLE ETX back: its OK comes as text among its DLE events.
            self._write(self._chipset.tx_abort if abort else self._chipset.tx_end)
            timeout = self.command_timeout if abort else max(self.command_timeout, PLAYOUT_TIMEOUT)
            self._wait_final(time.monotonic() + timeout, "end of transmit")
            self._decoder = None
        self._audio.clear()
        if self.state in (RX, DUPLEX, TX):
            self.state = OFFHOOK

    # -- the byte stream ---------------------------------------------------------
    def _route(self, data: bytes) -> None:
        """Bytes from the modem: through the DLE decoder in a data state, else text."""
        if self._decoder is None:
            self._rx += data
            return
        for item in self._decoder.feed(data):
            if isinstance(item, bytes):
                if self.state in (RX, DUPLEX):
                    self._audio += item
                else:           # in transmit the modem sends no audio: this is text
                    self._rx += item
            else:
                self._dle_event(item)
        if self._decoder.ended:
            self._rx += self._decoder.remainder
            self._decoder = None

    def _dle_event(self, ev: DleEvent) -> None:
        if ev.kind == "dtmf":
            self._events.append(KeyPressed(ev.value))
        elif ev.kind in HANGUP_EVENTS:
            self._events.append(HungUp(HANGUP_EVENTS[ev.kind]))
        elif ev.kind != "end":
            _log.debug("line %s: modem event %s %r", self.id, ev.kind, ev.value)

    def _unsolicited(self, line: str) -> bool:
        """A result line nobody asked for: RING or caller ID. True if it was one."""
        if line.startswith("RING"):
            if self._cid:
                self._flush_callerid()
            self._events.append(RingSeen())
            self._ring_until = time.monotonic() + self._ring_burst
            return True
        m = _CALLERID_LINE.match(line)
        if m:
            self._cid[m[1]] = m[2].strip()
            self._cid_at = time.monotonic()
            return True
        _log.debug("line %s: modem said %r", self.id, line)
        return False

    def _flush_callerid(self) -> None:
        self._events.append(CallerIdReceived(callerid_fact(self._cid)))
        self._cid = {}

    # -- commands ------------------------------------------------------------------
    def _command(self, cmd: str, timeout: float | None = None) -> tuple[str, list[str]]:
        """Send one AT command; its final result and the information lines before it."""
        self._write(cmd.encode("ascii") + b"\r")
        deadline = time.monotonic() + (timeout or self.command_timeout)
        info: list[str] = []
        while True:
            line = self._next_line(deadline)
            if line is None:
                raise ModemError(f"modem on {self.port}: no answer to {cmd}")
            if line.upper() == cmd.upper():          # echo (before ATE0)
                continue
            if line in FINAL_RESULTS or line.startswith("CONNECT"):
                self._keepalive_at = time.monotonic() + self.keepalive
                return ("CONNECT" if line.startswith("CONNECT") else line), info
            if not (line.startswith("RING") or _CALLERID_LINE.match(line)):
                info.append(line)
            else:
                self._unsolicited(line)

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

    # -- the port --------------------------------------------------------------------
    def _read(self, deadline: float) -> bytes | None:
        """Bytes that arrive before ``deadline``, or None."""
        timeout = max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return None
        data = self._ser.read(max(1, self._ser.in_waiting))
        if not data:
            raise ModemError(f"modem on {self.port}: port returned no data")
        return data

    def _drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._read(deadline) is not None:
            pass
        self._rx.clear()

    def _write(self, data: bytes) -> None:
        if self._ser is None:
            raise ModemError(f"modem on {self.port}: port not open")
        self._ser.write(data)

    def _enter_fault(self, reason: str) -> None:
        self._close_port()
        if self.state != FAULT:
            _log.error("line %s: modem fault: %s", self.id, reason)
            self._events.append(Fault("modem", reason))
            self._backoff.reset()
        self.state = FAULT
        self._retry_at = time.monotonic() + self._backoff.next()
        self._cid = {}
        self._ring_until = 0.0

    def _close_port(self) -> None:
        ser, self._ser, self._fd = self._ser, None, None
        self._decoder = None
        self._rx.clear()
        self._audio.clear()
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError):
                pass
