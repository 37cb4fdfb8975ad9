"""The modem's data states: voice receive, transmit and duplex, in the DLE stream of
``linebox.hw.dle`` (a mixin of ``ModemLine``).

Each state is left with the codes its chipset documents (``Chipset.stop_codes``); a modem
that ignores all of them is *stuck*: ``ModemStuck``, which the line turns into a fault and
recovers from by dropping DTR and reopening the port, never by typing ``ATZ`` into what
the modem takes as audio (CX930xx reference: in a data state every byte not shielded by
DLE is voice data).
"""

import logging
from array import array

from linebox import FRAME, RATE
from linebox.clock import FRAME_SECONDS
from linebox.hw.dle import DleDecoder, DleEvent
from linebox.hw.line import SILENT_FRAME, HungUp, KeyPressed
from linebox.hw.modem.at import ModemError
from linebox.hw.modem.formats import BYTES_PER_SAMPLE, decode_audio

_log = logging.getLogger(__name__)

TX_LEAD_FRAMES = 4            # frames written ahead of the clock, so the modem never runs dry
MAX_BACKLOG_SECONDS = 2.0     # received audio kept when the caller of tick falls behind
PLAYOUT_TIMEOUT = 5.0         # after DLE ETX the modem plays its buffer before answering OK
HANGUP_EVENTS = {"busy": "busy", "dialtone": "dial", "loop_break": "loop"}
STATE_NAMES = {"rx": "voice receive", "tx": "voice transmit", "duplex": "voice duplex"}

# Driver states. OFFHOOK: off-hook in command mode, between data states.
CLOSED, IDLE, OFFHOOK, RX, TX, DUPLEX, FAULT = (
    "closed", "idle", "offhook", "rx", "tx", "duplex", "fault")


class ModemStuck(ModemError):
    """The modem did not leave a data state on any code its chipset documents."""


def _codes(code: bytes) -> str:
    names = {0x03: "ETX", 0x18: "CAN", 0x10: "DLE"}
    return " ".join(names.get(b, chr(b)) for b in code)


class DataStates:
    """Entering and leaving the data states, and reading the stream while in one."""

    def _init_data(self) -> None:
        self._decoder: DleDecoder | None = None
        self._audio = bytearray()                 # received audio not yet returned
        self._shield = {"shielded": False, "shield_key": None}
        self._tx_quiet = 0

    def _shield_state(self) -> dict:
        return dict(self._shield)

    def _keep_shield(self, decoder: DleDecoder) -> None:
        self._shield = decoder.shield

    def _start_data(self, command: str, state: str) -> str:
        """Send ``command`` (AT+VRX/VTX/VTR); the modem's answer (CONNECT when it worked)."""
        result, _ = self._command(command)
        if result != "CONNECT":
            return result
        if self._cr_pending and not self._rx:
            data = self._read(self.clock.now() + 0.05)
            if data:
                self._rx += data
        if self._cr_pending and self._rx[:1] == b"\n":
            del self._rx[:1]
        self._cr_pending = False
        self._decoder = DleDecoder(**self._shield_state())
        self._audio.clear()
        self.state = state
        self._tx_quiet = 0
        self._next_frame = self.clock.now() - TX_LEAD_FRAMES * FRAME_SECONDS
        leftover, self._rx = bytes(self._rx), bytearray()
        if leftover:
            self._route(leftover)
        return result

    def _enter(self, command: str, state: str) -> None:
        result = self._start_data(command, state)
        if result != "CONNECT":
            raise ModemError(f"modem on {self.port}: {command} answered {result}")

    def _end_data_state(self, abort: bool = False) -> None:
        """Leave RX, TX or DUPLEX and wait for the modem's OK (nothing if in command mode).
        Tries the chipset's codes in order; ModemStuck if the modem ignores them all."""
        state = self.state
        if state not in (RX, TX, DUPLEX):
            return
        tried = []
        for code in self._chipset.stop_codes(state, abort):
            tried.append(_codes(code))
            if self._try_leave(state, code, abort):
                if len(tried) > 1:
                    _log.warning("line %s: modem on %s left %s only on %s (ignored %s)",
                                 self.id, self.port, STATE_NAMES[state], tried[-1],
                                 ", ".join(tried[:-1]))
                self._audio.clear()
                self.state = OFFHOOK
                return
        raise ModemStuck(f"modem on {self.port}: did not leave {STATE_NAMES[state]} "
                         f"(ignored {', '.join(tried)})")

    def _try_leave(self, state: str, code: bytes, abort: bool) -> bool:
        self._write(code)
        wait = self.command_timeout
        if state == TX and not abort:
            wait = max(wait, PLAYOUT_TIMEOUT)    # the buffered audio plays out first
        deadline = self.clock.now() + wait
        if state in (RX, DUPLEX):
            # The modem ends its stream with DLE ETX, then answers OK (V.253, CX930xx).
            while self._decoder is not None:
                data = self._read(deadline)
                if data is None:
                    return False
                self._route(data)
        try:
            # In transmit the modem sends no DLE ETX back: its OK comes as text.
            self._wait_final(deadline, f"end of {STATE_NAMES[state]}")
        except ModemError:
            return False
        if self._decoder is not None:
            self._keep_shield(self._decoder)
            self._decoder = None
        return True

    def _route(self, data: bytes) -> None:
        """Bytes from the modem: through the DLE decoder in a data state, else text."""
        if self._decoder is None:
            self._text(data)
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
            self._keep_shield(self._decoder)
            rest = bytes(self._decoder.remainder)
            self._decoder = None
            if rest:
                self._text(rest)

    def _dle_event(self, ev: DleEvent) -> None:
        if ev.kind == "dtmf":
            self._events.append(KeyPressed(ev.value))
        elif ev.kind in HANGUP_EVENTS:
            # Reported late (Rockwell: after the receive buffer) and sometimes falsely
            # (USR DLE d while recording): the call engine confirms it with its listener.
            self._events.append(HungUp(HANGUP_EVENTS[ev.kind]))
        elif ev.kind != "end":
            _log.debug("line %s: modem event %s %r", self.id, ev.kind, ev.value)

    def _receive_frame(self) -> array:
        need = FRAME * BYTES_PER_SAMPLE[self._format]
        deadline = self.clock.now() + self.stall_timeout
        while len(self._audio) < need:
            data = self._read(deadline)
            if data is None:
                raise ModemError(f"modem on {self.port}: no audio for {self.stall_timeout:g} s")
            self._route(data)
            if self._decoder is None:        # the modem left the data state by itself
                self._wait_final(self.clock.now() + self.command_timeout, "end of data")
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
