"""Inbound: an analog call's ringing rings the line's group of IP phones (``ring``).

The line's runner (`linebox.calls.engine.LineRunner`) drives this object from its own
thread, one frame at a time: ``start`` at the first ring (every registered contact of
the group is rung at once, shown the line until the caller ID arrives), ``callerid``
when it is decoded, ``answered`` polled each frame (the first phone to answer gets the
call: the line goes off hook and `line_leg` bridges it), and ``give_up`` when the
voicemail route answers after ``ring_rings`` rings or the caller hangs up (the phones'
ringing is cancelled; a phone answering in that very moment gets a BYE).

A call the answering phone blind-transfers (REFER) follows it from `line_leg`: to
another extension (rung like the group, the caller hearing ringback meanwhile) or to a
box (the caller leaves a message there).
"""

import logging
from collections.abc import Callable

from linebox import FRAME, RATE
from linebox.calls.engine import Call, Flow, Hangup
from linebox.dsp.plans import tone_signal
from linebox.events import BRIDGED, RING_GROUP, RING_GROUP_END, TRANSFER
from linebox.gateway.bridge import SILENCE_END_SECONDS, bridged
from linebox.gateway.phones import ANSWERED, Phones, RingAttempt

log = logging.getLogger(__name__)

# A transferred call rings its new extension this long before it falls to the line's
# voicemail route (ASSUMED: about as long as ring_rings' default of 4 US rings).
TRANSFER_RING_SECONDS = 24.0


class RingGroup:
    """One line's ring group. ``phones()`` returns the current `Phones` (None while
    there are none: no SIP service, no scenario phones)."""

    def __init__(self, line_cfg, phones: Callable[[], Phones | None], svc) -> None:
        self.cfg = line_cfg
        self.phones = phones
        self.svc = svc
        self.attempt: RingAttempt | None = None

    @property
    def ringing(self) -> bool:
        """Phones are ringing for the present call."""
        return self.attempt is not None and self.attempt.ringing

    @property
    def answered(self) -> bool:
        return self.attempt is not None and self.attempt.state == ANSWERED

    def start(self, runner, callerid=None) -> None:
        phones = self.phones()
        self.attempt = None
        if phones is None or not (self.cfg.ring or phones.takes_every_line):
            return
        self.attempt = phones.ring(runner.id, self.cfg.ring, callerid)
        if self.attempt is not None:
            runner.publish(RING_GROUP, extensions=list(self.attempt.extensions))
        else:
            log.info("line %s: no phone of %s is registered; voicemail as usual",
                     runner.id, ", ".join(self.cfg.ring))

    def callerid(self, callerid) -> None:
        if self.attempt is not None:
            self.attempt.callerid(callerid)

    def give_up(self, runner, reason: str) -> bool:
        """The line is done with the phones: True if their ringing stopped (or none
        rang), False if a phone answered first (the call is its)."""
        attempt = self.attempt
        if attempt is None:
            return True
        if attempt.state == ANSWERED:
            return False
        was_ringing = attempt.ringing
        if not attempt.cancel(reason):
            return False
        if was_ringing:
            runner.publish(RING_GROUP_END, reason=reason)
        self.attempt = None
        return True

    def take(self, runner) -> Callable[[Call], Flow]:
        """The answered call's flow for the line (call once `answered` is true)."""
        attempt = self.attempt
        self.attempt = None
        runner.publish(BRIDGED, extension=attempt.extension)
        return line_leg(self.svc, self.phones, self.cfg, attempt)


def line_leg(svc, phones: Callable[[], Phones | None], line_cfg, attempt: RingAttempt):
    """The flow of an analog call a phone answered: bridged until either side hangs up;
    a blind transfer (REFER) moves the caller to another extension or to a box."""

    def flow(call: Call) -> Flow:
        from linebox.calls.flows import Session, leave_message
        current = attempt
        try:
            while True:
                yield from bridged(call, current.bridge.line_end, SILENCE_END_SECONDS)
                target = current.transfer_to
                if target is None:
                    return
                kind, number = target
                call.publish(TRANSFER, extension=current.extension, kind=kind, to=number)
                if kind == "box":
                    yield from leave_message(Session(svc, call, number))
                    return
                current = yield from ring_for(call, phones(), (number,))
                if current is None:
                    if line_cfg.route == "attendant":
                        return
                    yield from leave_message(Session(svc, call, line_cfg.route))
                    return
                call.publish(BRIDGED, extension=current.extension)
        except Hangup:
            return
    return flow


def ring_for(call: Call, phones: Phones | None, extensions: tuple[str, ...],
             seconds: float = TRANSFER_RING_SECONDS) -> Flow:
    """Ring ``extensions`` for an answered call while the caller hears ringback: the
    attempt a phone answered, or None (nobody in ``seconds``, or nobody to ring)."""
    if phones is None:
        return None
    attempt = phones.ring(call.runner.id, extensions, call.callerid)
    if attempt is None:
        return None
    call.publish(RING_GROUP, extensions=list(attempt.extensions))
    ringback = tone_signal(call.runner.plan, "ringback", seconds)
    for i in range(0, int(seconds * RATE) - FRAME + 1, FRAME):
        if attempt.state == ANSWERED:
            return attempt
        if not attempt.ringing:
            break                   # every phone refused
        yield ringback[i:i + FRAME]
        if call.hangup_cause is not None:
            attempt.cancel("caller_gone")
            call.publish(RING_GROUP_END, reason="caller_gone")
            raise Hangup(call.hangup_cause)
    if attempt.cancel("no_answer"):
        call.publish(RING_GROUP_END, reason="no_answer")
        return None
    return attempt
