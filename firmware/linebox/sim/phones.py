"""Simulated IP phones for `linebox sim`: the scenario's ``[[phone]]`` tables, on the
virtual clock.

A phone rings when a line's ring group (or a transfer) rings its extension, answers
after ``answer_after`` seconds of ringing (or never), then plays its steps into the
bridge and records what it hears, until it hangs up (``hangup = "bye"``), transfers
the call, or the line's side goes away. It stops ringing when another phone answered
or the line gave up on the phones (the voicemail route answered, the caller hung up).
The phones' side of the story is published for the transcript: ``phone_ringing``,
``phone_answer``, ``phone_ring_stopped``, ``phone_hangup``.
"""

from array import array

from linebox import FRAME
from linebox.dsp import gen
from linebox.events import PHONE_ANSWER, PHONE_HANGUP, PHONE_RING_STOPPED, PHONE_RINGING
from linebox.gateway.phones import Phones, RingAttempt
from linebox.hw.line import SILENT_FRAME
from linebox.sim.scenario import Dtmf, Hangup, PhoneSpec, Say, Silence, Transfer, Wait


class SimPhone:
    """One scenario phone."""

    def __init__(self, spec: PhoneSpec, phones: "SimPhones") -> None:
        self.spec = spec
        self.extension = spec.extension
        self.phones = phones
        self.state = "idle"                 # idle | ringing | talking
        self.attempt: RingAttempt | None = None
        self.ring_start = 0.0
        self.end = None
        self.heard = array("h")             # everything it heard, call after call
        self._out = None

    def ring(self, attempt: RingAttempt) -> None:
        self.state = "ringing"
        self.attempt = attempt
        self.ring_start = self.phones.now()
        name, number = self.phones.caller_display(attempt.line_id, attempt.caller)
        self._publish(PHONE_RINGING, caller_name=name, caller_number=number)

    def step(self) -> None:
        if self.state == "ringing":
            self._ringing()
        elif self.state == "talking":
            self._talking()

    def _ringing(self) -> None:
        attempt = self.attempt
        if not attempt.ringing:
            reason = "answered_elsewhere" if attempt.extension else (attempt.cancel_reason or "cancelled")
            self._stop(reason)
            return
        after = self.spec.answer_after
        if after is None or self.phones.now() - self.ring_start < after - 1e-9:
            return
        bridge = attempt.answered(self.extension)
        if bridge is None:
            self._stop("too_late")
            return
        self.state = "talking"
        self.end = bridge.phone_end
        self._out = _frames(self.spec.steps)
        self._publish(PHONE_ANSWER)

    def _stop(self, reason: str) -> None:
        self._publish(PHONE_RING_STOPPED, reason=reason)
        self.state = "idle"
        self.attempt = None

    def _talking(self) -> None:
        end = self.end
        if end.closed:
            self._hung_up(f"line:{end.cause}" if end.closed_by_other else end.cause)
            return
        self.heard.extend(end.pull())
        try:
            frame = next(self._out)
        except StopIteration as stop:
            action = stop.value
            if isinstance(action, Transfer):
                kind = "box" if action.to in self.phones.boxes else "extension"
                self.attempt.transfer(kind, action.to)
                end.close("transfer")
                self._hung_up("transfer")
            else:
                end.close("bye")
                self._hung_up("bye")
            return
        end.push(frame)

    def _hung_up(self, cause: str) -> None:
        self._publish(PHONE_HANGUP, cause=cause)
        self.state = "idle"
        self.end = None
        self.attempt = None
        if self.spec.record is not None:
            from linebox.wavfile import write_wav
            write_wav(self.spec.record, self.heard)

    def _publish(self, event: str, **fields) -> None:
        line = self.attempt.line_id if self.attempt is not None else None
        self.phones.bus.publish({"event": event, "t": round(self.phones.now(), 3), "line": line,
                                 "extension": self.extension, **fields})


def _frames(steps):
    """The phone's audio, frame by frame; returns the step that ends its call (a
    `Hangup` or a `Transfer`), or talks silence for ever once its steps are over."""
    for step in steps:
        if isinstance(step, Say):
            samples = step.audio
        elif isinstance(step, Silence | Wait):
            samples = gen.silence(step.seconds)
        elif isinstance(step, Dtmf):
            samples = gen.dtmf_string(step.digits, on=step.on, off=step.off, low_dbm0=step.level - 2.0)
        elif isinstance(step, Hangup | Transfer):
            return step
        else:
            continue
        for i in range(0, len(samples), FRAME):
            frame = samples[i:i + FRAME]
            if len(frame) < FRAME:
                frame = frame + array("h", bytes(2 * (FRAME - len(frame))))
            yield frame
    while True:
        yield SILENT_FRAME


class SimPhones(Phones):
    """The scenario's phones, stepped once a frame by the simulator's loop."""

    def __init__(self, specs, bus, clock, boxes=()) -> None:
        self.bus = bus
        self.now = clock
        self.boxes = set(boxes)
        self.by_extension = {s.extension: SimPhone(s, self) for s in specs}

    def ring(self, line_id, extensions, callerid):
        free = [self.by_extension[e] for e in extensions
                if e in self.by_extension and self.by_extension[e].state == "idle"]
        if not free:
            return None
        attempt = RingAttempt(line_id, tuple(p.extension for p in free), callerid)
        for p in free:
            p.ring(attempt)
        return attempt

    def step(self) -> None:
        for p in self.by_extension.values():
            p.step()

    @property
    def busy(self) -> bool:
        return any(p.state != "idle" for p in self.by_extension.values())

