"""``ModemLine``: one analog line on a V.253 voice modem, as a ``Line``.

- set-up: any data state left (``DLE !``, ``DLE ^``, ``DLE CAN DLE ETX``), ``AT`` must
  answer before ``ATZ`` is sent (a modem still in a data state would take ``ATZ`` as
  audio: DTR is dropped instead), ``ATE0``, ``ATI``/``ATI3``/``AT+GMI``/``AT+GMM``
  (which chipset?), ``AT+GCI=<T.35 code>`` from the line's ``plan`` where the modem lists
  it, the line's own ``init`` string, ``AT+FCLASS=8``, ``AT+VCID=1``, ``AT+VSM=?`` (a
  format chosen by name, ``linebox.hw.modem.formats``), ``AT+VSM=<n>,8000``, ``AT+VTR=?``.
- on-hook: ``RING`` is a ``RingSeen`` fact and ``Tick.ringing`` is held for the plan's
  ring burst; caller-ID lines become one ``CallerIdReceived``. The modem hears nothing
  on-hook: ticks return silence, paced at 20 ms by the clock.
- answer: ``AT+VLS=1``, then ``AT+VTR`` (full duplex) or ``AT+VRX``. Half duplex: while the
  flow plays, ``AT+VTX``; ``SWITCH_BACK_FRAMES`` silent frames later, ``AT+VRX`` again.
- faults: a port that errors or vanishes, a modem that stops answering, stops sending
  audio or will not leave a data state: one ``Fault("modem", reason)``, the port closed
  (DTR dropped), and reopened with backoff (1, 2, 4 ... 60 s); ``FaultCleared("modem")``
  once it works again. Nothing raises out of ``tick``.

``clock`` (``now()``, ``sleep(s)``) and ``serial_factory`` are injected: ``linebox sim``
runs this driver against ``linebox.hw.modem.emulator`` on its virtual clock.
"""

import logging
from array import array

import serial

from linebox import RATE as _RATE_HZ
from linebox.backoff import Backoff
from linebox.dsp.plans import get_plan
from linebox.hw.dle import dle_escape
from linebox.hw.line import (
    SILENT_FRAME,
    CallerIdReceived,
    Fault,
    FaultCleared,
    Line,
    LineEvent,
    RingSeen,
    Tick,
)
from linebox.hw.modem.at import AtChannel, ModemError, WallClock, open_serial
from linebox.hw.modem.callerid import CallerIdGatherer
from linebox.hw.modem.chipsets import (
    CHIPSETS,
    COUNTRY_BY_PLAN,
    DUPLEX_END,
    DUPLEX_EXPLAINED,
    RX_ABORT,
    TX_ABORT,
    detect_chipset,
)
from linebox.hw.modem.data import (
    CLOSED,
    DUPLEX,
    FAULT,
    FRAME_SECONDS,
    IDLE,
    OFFHOOK,
    RX,
    TX,
    DataStates,
)
from linebox.hw.modem.formats import choose_format, encode_audio, parse_vsm_list

_log = logging.getLogger(__name__)

SWITCH_BACK_FRAMES = 5        # silent frames from the flow before half duplex listens again
RESYNC_SECONDS = 0.1          # a tick this late restarts the frame clock instead of catching up
RESET_TIMEOUT = 3.0           # ATZ takes a while on some modems
DTR_DROP_SECONDS = 0.5        # V.250 &D2 acts on a DTR drop longer than S25 (default 50 ms)


def from_config(cfg) -> "ModemLine":
    """The driver for a ``driver = "modem"`` [[line]] (the daemon and ``linebox hwcheck``)."""
    return ModemLine(cfg.id, cfg.port, cfg.plan, baud=cfg.baud,
                     rtscts=cfg.flow_control == "rtscts", duplex=cfg.duplex, init=cfg.init)


class ModemLine(AtChannel, DataStates, Line):
    """One analog line on a V.253 voice modem (``driver = "modem"``).

    ``duplex`` is ``auto`` (ask ``AT+VTR=?``, or trust the chipset where that test lies),
    ``full`` or ``half``. ``rtscts`` is the hardware flow control that paces transmitted
    audio (ptys have none: tests turn it off). ``keepalive`` seconds of on-hook quiet
    bring an ``AT``. ``init`` is one more command for modems that need their own (sent
    after the reset, before voice mode). The modem reports keys itself (``reports_dtmf``).
    """

    reports_dtmf = True
    reports_hangup = True

    @property
    def full_duplex(self) -> bool:
        """Known once the modem is set up (``AT+VTR=?``, the chipset or the setting)."""
        return self._full_duplex

    def __init__(self, line_id: int, port: str, plan: str = "us", *, baud: int = 115200,
                 rtscts: bool = True, duplex: str = "auto", init: str | None = None,
                 command_timeout: float = 2.0, stall_timeout: float = 0.5,
                 keepalive: float = 30.0, backoff: tuple[float, float] = (1.0, 60.0),
                 callerid_quiet: float = 0.5, write_timeout: float = 2.0,
                 reset_timeout: float = RESET_TIMEOUT, serial_factory=open_serial,
                 clock=WallClock) -> None:
        super().__init__(line_id, plan)
        if duplex not in ("auto", "full", "half"):
            raise ValueError(f"duplex must be auto, full or half, not {duplex!r}")
        self._init_channel(clock)
        self._init_data()
        self.port = port
        self.baud = baud
        self.rtscts = rtscts
        self.duplex = duplex
        self.init = init
        self.command_timeout = command_timeout
        self.stall_timeout = stall_timeout
        self.keepalive = keepalive
        self.write_timeout = write_timeout
        self.reset_timeout = reset_timeout
        self._factory = serial_factory
        self._backoff = Backoff(*backoff)
        cadence = get_plan(plan).ring_cadence
        self._ring_burst = sum(cadence[:-1])      # ringing, as the ring counter sees it
        self.state = CLOSED
        self._identity: dict = {}
        self._chipset = CHIPSETS["unknown"]
        self._format = "ulaw"
        self._full_duplex = False
        self._vtr_verified = False
        self._events: list[LineEvent] = []
        self._cid = CallerIdGatherer(callerid_quiet)
        self._ring_until = 0.0
        self._next_frame: float | None = None
        self._keepalive_at = 0.0
        self._retry_at = 0.0

    # -- public ------------------------------------------------------------
    @property
    def faulted(self) -> bool:
        return self.state == FAULT

    @property
    def chipset(self):
        """The ``Chipset`` found at set-up (``unknown`` before)."""
        return self._chipset

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
        """What the modem is and how it is used, for ``linebox hwcheck``.

        Keys (stable; new ones may be added): port, manufacturer, model, ati, ati3,
        chipset, chipset_label, quirks (sentences), formats, format, format_code, format_kind, duplex
        ("full"/"half"), duplex_source ("AT+VTR=?", "chipset", "config", "AT+VTR"),
        duplex_explanation, callerid, country (the T.35 code set, or None),
        country_note, init."""
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
        """Hang up (ATH) and release the port (which drops DTR)."""
        if self._port is not None and self.state not in (CLOSED, FAULT):
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
        self._port = self._factory(self.port, self.baud, self.rtscts, self.write_timeout,
                                   clock=self.clock)
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
        self._keepalive_at = self.clock.now() + self.keepalive
        if self.off_hook:           # a call was up when the modem went away: it is gone now
            _log.info("line %s: modem back on-hook; the call in progress was lost", self.id)

    def _command_mode(self) -> None:
        """Make sure the modem is in command mode before anything is typed at it."""
        # A modem left in a data state (a crash, a lost USB reset) reads text as audio:
        # leave any state with its own code; in command mode these are ignored.
        self._write(RX_ABORT + DUPLEX_END + TX_ABORT + b"\r")
        self._drain(0.1)
        for attempt in range(2):
            try:
                result, _ = self._command("AT")
            except ModemError:
                result = None
            if result == "OK":
                return
            if attempt == 0:
                _log.warning("line %s: modem on %s does not answer AT: dropping DTR",
                             self.id, self.port)
                self._port.drop_dtr(DTR_DROP_SECONDS)
                self._drain(0.1)
        raise ModemError(f"modem on {self.port}: no answer to AT (not in command mode "
                         "even after a DTR drop)")

    def _setup(self) -> None:
        self._command_mode()
        self._require("ATZ", timeout=self.reset_timeout)
        self._require("ATE0")
        self._optional("ATV1")
        ati = self._optional("ATI")
        ati3 = self._optional("ATI3")
        gmi = self._optional("AT+GMI")
        gmm = self._optional("AT+GMM")
        chipset = detect_chipset(*(ati or ()), *(ati3 or ()), *(gmi or ()), *(gmm or ()))
        self._chipset = CHIPSETS[chipset]
        if self.rtscts:
            self._optional("AT+IFC=2,2")
        country, country_note = self._set_country()
        if self.init:
            self._require(self.init, why="the line's init string")
        self._require("AT+FCLASS=8", why="no voice mode")
        callerid = self._optional("AT+VCID=1") is not None
        entries = parse_vsm_list(self._require("AT+VSM=?"))
        chosen = choose_format(entries)
        if chosen is None:
            names = ", ".join(e.name for e in entries) or "none"
            raise ModemError(f"modem on {self.port}: no usable audio format at {_RATE_HZ} Hz "
                             f"(offers {names}; needs 16-bit linear, G.711 or 8-bit linear)")
        self._require(f"AT+VSM={chosen.code},{_RATE_HZ}")
        self._format = chosen.kind
        self._optional("AT+VLS=0")
        source = self._choose_duplex()
        self._identity = {
            "port": self.port,
            "manufacturer": (gmi or [""])[0] or None,
            "model": (gmm or ati3 or ati or [""])[0] or None,
            "ati": ati or [],
            "ati3": ati3 or [],
            "chipset": chipset,
            "chipset_label": self._chipset.label,
            "quirks": self._chipset.quirks,
            "formats": [e.name for e in entries],
            "format": chosen.name,
            "format_code": chosen.code,
            "format_kind": chosen.kind,
            "callerid": callerid,
            "country": country,
            "country_note": country_note,
            "init": self.init,
        }
        self._set_duplex_identity(source)
        _log.info("line %s: modem on %s: %s (%s), audio %s, %s duplex", self.id, self.port,
                  self._identity["model"], chipset, chosen.name, self._identity["duplex"])

    def _set_country(self) -> tuple[str | None, str]:
        """``AT+GCI=<code>`` for the line's plan, where the modem lists that code."""
        code = COUNTRY_BY_PLAN.get(self.plan)
        if code is None:
            return None, f"plan {self.plan!r} names no single country: the modem keeps its own"
        listed = self._optional("AT+GCI=?")
        if listed is None:
            return None, "the modem has no AT+GCI: it keeps the country it was sold for"
        if code not in " ".join(listed).upper():
            return None, f"the modem does not list country {code} in AT+GCI=?"
        if self._optional(f"AT+GCI={code}") is None:
            return None, f"AT+GCI={code} answered ERROR"
        return code, f"AT+GCI={code} (T.35 country code for plan {self.plan!r})"

    def _choose_duplex(self) -> str:
        self._vtr_verified = False
        if self.duplex != "auto":
            self._full_duplex = self.duplex == "full"
            return "config"
        if self._optional("AT+VTR=?") is not None:
            self._full_duplex = True
            return "AT+VTR=?"
        # CX93001: AT+VTR=? answers ERROR although AT+VTR works; the first answer tells.
        self._full_duplex = not self._chipset.vtr_test_reliable
        return "chipset" if self._full_duplex else "AT+VTR=?"

    def _set_duplex_identity(self, source: str) -> None:
        mode = "full" if self._full_duplex else "half"
        self._identity["duplex"] = mode
        self._identity["duplex_source"] = source
        self._identity["duplex_explanation"] = DUPLEX_EXPLAINED[mode]

    # -- ticks -----------------------------------------------------------------
    def _frame_deadline(self) -> float:
        now = self.clock.now()
        if self._next_frame is None or now - self._next_frame > RESYNC_SECONDS:
            self._next_frame = now
        self._next_frame += FRAME_SECONDS
        return self._next_frame

    def _tick_result(self, audio: array) -> Tick:
        events, self._events = tuple(self._events), []
        ringing = not self.off_hook and self.clock.now() < self._ring_until
        return Tick(audio=audio, ringing=ringing, events=events)

    def _tick_idle(self) -> Tick:
        deadline = self._frame_deadline()
        while True:
            line = self._next_line(deadline)
            if line is None:
                break
            self._unsolicited(line)
        now = self.clock.now()
        if self._cid.due(now):
            self._events.append(CallerIdReceived(self._cid.take()))
        if now >= self._keepalive_at:
            self._require("AT")
        return self._tick_result(SILENT_FRAME)

    def _tick_fault(self) -> Tick:
        deadline = self._frame_deadline()
        if self.clock.now() >= self._retry_at:
            try:
                self._connect()
            except (ModemError, serial.SerialException, OSError) as e:
                self._close_port()
                self.state = FAULT
                delay = self._backoff.next()
                self._retry_at = self.clock.now() + delay
                _log.warning("line %s: modem on %s still failing (%s); next try in %g s",
                             self.id, self.port, e, delay)
            else:
                self._backoff.reset()
                self._events.append(FaultCleared("modem"))
                _log.info("line %s: modem on %s is back", self.id, self.port)
                return self._tick_result(SILENT_FRAME)
        delay = deadline - self.clock.now()
        if delay > 0:
            self.clock.sleep(delay)
        return self._tick_result(SILENT_FRAME)

    def _tick_offhook(self, out: array | None) -> Tick:
        if self.state == DUPLEX:
            self._write_audio(out)
            return self._tick_result(self._receive_frame())
        if self.state == RX and out is not None:
            self._end_data_state()
            self._enter("AT+VTX", TX)
        if self.state == TX:
            self._tx_quiet = 0 if out is not None else self._tx_quiet + 1
            if self._tx_quiet < SWITCH_BACK_FRAMES:
                return self._tick_tx(out)
            self._end_data_state()
            self._enter("AT+VRX", RX)
        if self.state == RX:
            return self._tick_result(self._receive_frame())
        # Off-hook in command mode (the modem ended a data state by itself): listen again.
        self._listen()
        return self._tick_result(self._receive_frame())

    def _write_audio(self, out: array | None) -> None:
        self._write(dle_escape(encode_audio(self._format, out if out is not None
                                            else SILENT_FRAME)))

    def _tick_tx(self, out: array | None) -> Tick:
        self._write_audio(out)
        # Paced by the clock, TX_LEAD_FRAMES ahead (flow control paces a real modem too).
        deadline = self._frame_deadline()
        while True:
            data = self._read(deadline)
            if data is None:
                break
            self._route(data)
        return self._tick_result(SILENT_FRAME)

    # -- answer, switch, hang up ----------------------------------------------
    def _answer(self) -> None:
        self._cid.clear()
        self._shield = {"shielded": False, "shield_key": None}
        result, _ = self._command("AT+VLS=1")
        if result not in ("OK", "VCON"):
            raise ModemError(f"modem on {self.port}: AT+VLS=1 (off-hook) answered {result}")
        self._listen()

    def _listen(self) -> None:
        """Start hearing the line: duplex where the modem has it, else receive."""
        if self._full_duplex:
            result = self._start_data("AT+VTR", DUPLEX)
            if result == "CONNECT":
                if not self._vtr_verified and self._identity.get("duplex_source") == "chipset":
                    self._vtr_verified = True
                    self._identity["duplex_source"] = "AT+VTR"
                return
            # The chipset's word was wrong for this firmware: half duplex from now on.
            _log.warning("line %s: modem on %s: AT+VTR answered %s: using half duplex",
                         self.id, self.port, result)
            self._full_duplex = False
            self._set_duplex_identity("AT+VTR")
        self._enter("AT+VRX", RX)

    def _hang_up(self) -> None:
        self._end_data_state(abort=True)
        self._require("ATH")
        self.state = IDLE
        self._next_frame = None
        self._keepalive_at = self.clock.now() + self.keepalive
        self._shield = {"shielded": False, "shield_key": None}

    # -- unsolicited lines and faults --------------------------------------------------
    def _unsolicited(self, line: str, quiet: bool = False) -> bool:
        """A result line nobody asked for: RING or caller ID. True if it was one."""
        if line.startswith("RING"):
            if self._cid.pending:
                self._events.append(CallerIdReceived(self._cid.take()))
            self._events.append(RingSeen())
            self._ring_until = self.clock.now() + self._ring_burst
            return True
        if self._cid.feed(line, self.clock.now()):
            return True
        if not quiet:
            _log.debug("line %s: modem said %r", self.id, line)
        return False

    def _enter_fault(self, reason: str) -> None:
        # Closing the port drops DTR (HUPCL): with &D2 the modem hangs up and returns
        # to command mode, whatever state it was stuck in (V.250 &D).
        if self._port is not None and self.state in (RX, TX, DUPLEX, OFFHOOK):
            self._port.drop_dtr(DTR_DROP_SECONDS)
        self._close_port()
        if self.state != FAULT:
            _log.error("line %s: modem fault: %s", self.id, reason)
            self._events.append(Fault("modem", reason))
            self._backoff.reset()
        self.state = FAULT
        self._retry_at = self.clock.now() + self._backoff.next()
        self._cid.clear()
        self._ring_until = 0.0

    def _close_port(self) -> None:
        port, self._port = self._port, None
        self._decoder = None
        self._cmd_dle = None
        self._rx.clear()
        self._audio.clear()
        if port is not None:
            port.close()

