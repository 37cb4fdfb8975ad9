"""Runs one line: counts rings, answers, and drives a call flow frame by frame.

A call flow is a generator that yields the next 20 ms frame to play (or None for
silence) and reads what the line brought through its `Call`. Every timeout is counted in
frames of the line's own audio, so a simulated line runs as fast as the CPU allows and a
real line at the sound card's pace, with the same behaviour.
"""

import logging
from array import array
from collections import deque
from collections.abc import Callable, Generator, Iterable

from linebox import FRAME
from linebox.caller import CallerId, blocked_by
from linebox.calls.rings import RingCounter
from linebox.clock import FRAME_SECONDS, frames_in, samples_in, seconds_of
from linebox.dsp.alert import AlertToneDetector
from linebox.dsp.levels import energy
from linebox.dsp.listener import Listener
from linebox.events import ANSWER, LINE_STATE, PROMPT_END
from linebox.hw.line import (
    CallerIdReceived,
    Fault,
    FaultCleared,
    HungUp,
    KeyPressed,
    Line,
    LineReversal,
    Tick,
)

log = logging.getLogger(__name__)

# Tones that mean the caller hung up and the exchange is talking to an open line.
HANGUP_TONES = ("busy", "reorder", "dial")
# A loop-current drop shorter than this is a glitch (or a hook flash), not a hang-up.
LOOP_DROP_SECONDS = 0.1
# How long a prompt stopped by a key waits for that key to be released (longer presses
# are still seen, later, by whatever waits for keys next).
KEY_RELEASE_WAIT = 1.0
# A driver's report of a hang-up tone (a modem's DLE b / DLE d) comes seconds after the
# tone began (Rockwell RCV144ACX: "after any remaining data in the voice receive buffer",
# then every 3-4 s) and may be false (vgetty US_Robotics.c: DLE d while recording or
# playing). Such a report waits this long for the listener, which hears the tone itself
# (its onset is where a message ends). Unconfirmed, it is dropped where the listener
# could hear the line (full duplex, or recording), and taken where it could not (a
# half-duplex modem playing a prompt hears for itself only).
DRIVER_TONE_CONFIRM_SECONDS = 4.0
DRIVER_TONE_CAUSES = ("busy", "reorder", "dial")
# Caller ID before the first ring (BT SIN 227, ETSI EN 300 659-1 §6.1.1): from a line
# reversal, or the dual-tone alert heard on the idle line (a line whose driver cannot
# see the reversal), the listener runs until the first ring. With no ring this long
# after, the line is idle again (ASSUMED: the exchange rings within a second or two of
# the data; the alert starts at least 100 ms after the reversal).
PRE_RING_SECONDS = 8.0

Flow = Generator[array | None, None, object]


class Hangup(Exception):
    """The caller is gone (raised inside a flow by the primitive that noticed)."""


class Call:
    """One call in progress, as a flow sees it: its keys, its caller, its clock."""

    def __init__(self, runner: "LineRunner", callerid: CallerId | None) -> None:
        self.runner = runner
        self.callerid = callerid or CallerId()
        self.digits: deque[str] = deque()
        self.hangup_cause: str | None = None
        self.hangup_t: float | None = None   # line time where the caller's audio ended
        self.heard: array | None = None       # the last frame heard
        self.last_key_t = 0.0                 # line time where the last key began
        self._loop_seen = False
        self._loop_low_frames = 0
        self._reported: tuple[str, float, bool] | None = None   # cause, t, listener could hear
        self.state = "answered"
        # Which tones mean the far end hung up, and whether keys heard count: a call out
        # through the line expects dial, busy or reorder tone as call progress, and hears
        # the echo of its own dialling (gateway/outbound.py turns both off until answered).
        self.hangup_tones: tuple[str, ...] = HANGUP_TONES
        self.keys = True

    # -- facts -------------------------------------------------------------
    @property
    def t(self) -> float:
        """Seconds on the line's clock."""
        return self.runner.t

    @property
    def listener(self) -> Listener:
        return self.runner.listener

    @property
    def caller_number(self) -> str | None:
        return self.callerid.number

    @property
    def caller_name(self) -> str | None:
        return self.callerid.name

    def line_time(self, listener_t: float) -> float:
        """A listener event time on the line clock."""
        return self.runner.listener_origin + listener_t

    def publish(self, event: str, **fields) -> None:
        self.runner.publish(event, **fields)

    def set_state(self, state: str) -> None:
        """answered, recording or playing: what the line is doing, for dashboards."""
        if state != self.state:
            self.state = state
            self.runner.set_state(state)

    # -- input -------------------------------------------------------------
    def absorb(self, tick: Tick, events: Iterable[dict]) -> None:
        """Take in what one frame brought: keys, hang-up tones, loop current."""
        self.heard = tick.audio
        driver_keys = self.runner.line.reports_dtmf
        for ev in events:
            kind = ev["type"]
            if kind == "dtmf" and not driver_keys:
                if self.keys:
                    self._key(ev["digit"], self.line_time(ev["t"]))
            elif kind == "tone" and ev["tone"] in self.hangup_tones:
                self._hung_up(ev["tone"], self.line_time(ev["t"]))
        if tick.loop is True:
            self._loop_seen = True
            self._loop_low_frames = 0
        elif tick.loop is False and self._loop_seen:
            self._loop_low_frames += 1
            if self._loop_low_frames * FRAME >= samples_in(LOOP_DROP_SECONDS):
                self._hung_up("loop", self.t - self._loop_low_frames * FRAME_SECONDS)
        frame_start = self.t - FRAME_SECONDS
        for fact in tick.events:
            if isinstance(fact, KeyPressed):
                if self.keys:
                    self._key(fact.digit, frame_start if fact.t is None else fact.t)
            elif isinstance(fact, HungUp):
                at = frame_start if fact.t is None else fact.t
                if fact.cause in DRIVER_TONE_CAUSES and fact.cause not in self.hangup_tones:
                    continue                 # call progress, not a hang-up (calling out)
                if fact.cause in DRIVER_TONE_CAUSES:
                    if self._reported is None:
                        hearing = self.runner.line.full_duplex or self.state == "recording"
                        self._reported = (fact.cause, at, hearing)
                else:
                    self._hung_up(fact.cause, at)
        if self._reported is not None:
            self._check_report()

    def _check_report(self) -> None:
        """A driver's tone report: confirmed by the listener (which then has set the
        hang-up at the tone's onset), or judged once the confirm window is over."""
        cause, at, hearing = self._reported
        if self.hangup_cause is not None:
            self._reported = None
            return
        if self.t - at < DRIVER_TONE_CONFIRM_SECONDS:
            return
        self._reported = None
        if hearing:
            log.info("line %s: the line reported %s tone; the listener heard none: ignored",
                     self.runner.id, cause)
            return
        self._hung_up(cause, at)

    def _key(self, digit: str, at: float) -> None:
        """One key press, whoever decoded it (the listener or the driver): ``at`` is the
        line time where it began, where a recording ended by it is cut."""
        self.digits.append(digit)
        self.last_key_t = at
        self.publish("dtmf", digit=digit)

    def _hung_up(self, cause: str, at: float) -> None:
        if self.hangup_cause is None:
            self.hangup_cause = cause
            self.hangup_t = at
            self.publish("hangup_detected", cause=cause)

    def gone(self, cause: str) -> None:
        """The flow concluded the caller is gone (e.g. long silence)."""
        self._hung_up(cause, self.t)

    def check(self) -> None:
        if self.hangup_cause is not None:
            raise Hangup(self.hangup_cause)

    def key_waiting(self) -> bool:
        if self.runner.line.reports_dtmf:
            # The driver reports a key while its tone is still on (a modem's DLE code);
            # the listener hearing that same tone is no second key to wait for.
            return bool(self.digits)
        return bool(self.digits) or self.listener.pressed is not None

    def take_key(self) -> str | None:
        return self.digits.popleft() if self.digits else None

    # -- primitives (generators: use with `yield from`) ---------------------
    def play(self, name: str, samples: array, interruptible: bool = True) -> Flow:
        """Play a prompt; a key (or one typed ahead) stops it. Returns True if played out."""
        if interruptible and self.key_waiting():
            yield from self._await_release()
            return False
        self.publish("prompt", name=name)
        n = len(samples)
        done = True
        for i in range(0, n, FRAME):
            frame = samples[i:i + FRAME]
            if len(frame) < FRAME:
                frame.extend([0] * (FRAME - len(frame)))
            yield frame
            self.check()
            if interruptible and self.key_waiting():
                done = False
                break
        self.publish(PROMPT_END, name=name)
        if not done:
            yield from self._await_release()
        return done

    def _await_release(self) -> Flow:
        """A key is down: let it come up, so the flow sees which key it was."""
        left = frames_in(KEY_RELEASE_WAIT)
        if self.runner.line.reports_dtmf:
            return
        while not self.digits and self.listener.pressed is not None and left > 0:
            left -= 1
            yield None
            self.check()

    def pause(self, seconds: float) -> Flow:
        """Silence on the line for ``seconds``."""
        for _ in range(frames_in(seconds)):
            yield None
            self.check()

    def wait_key(self, timeout: float) -> Flow:
        """The next key, waiting up to ``timeout`` seconds for one; None on timeout."""
        left = frames_in(timeout)
        while not self.digits:
            if left <= 0:
                return None
            left -= 1
            yield None
            self.check()
        return self.digits.popleft()

    def collect(self, max_digits: int, timeout: float = 6.0, inter_digit: float = 4.0,
                terminator: str = "#") -> Flow:
        """Keys up to ``terminator`` or ``max_digits``; the terminator is not returned."""
        got = ""
        wait = timeout
        while len(got) < max_digits:
            key = yield from self.wait_key(wait)
            if key is None or key == terminator:
                break
            got += key
            wait = inter_digit
        return got


# ASSUMED: a second off hook is long enough for an exchange to take the call as answered
# (and stop ringing the office's phones) before the hang-up clears it; callattendant
# likewise picks up and hangs up on a blocked caller.
BLOCKED_OFF_HOOK_SECONDS = 1.0


def hang_up_at_once(call: "Call") -> Flow:
    """A blocked caller's call: off hook a moment, in silence, then on hook."""
    yield from call.pause(BLOCKED_OFF_HOOK_SECONDS)


class _Deaf:
    """The listener of a call that needs none: hears nothing, costs nothing."""

    pressed = tone = vad = fsk = None
    dtmf_callerid = False

    def feed(self, frame) -> tuple:
        return ()


_DEAF = _Deaf()


class LineRunner:
    """Everything that happens on one line, one frame at a time.

    ``flow_factory(call)`` makes the call flow for an answered call. ``answer_now()``
    says how many rings to wait for (it reads toll-saver state from the store).
    ``ring_group`` (`linebox.gateway.ringgroup.RingGroup`): IP phones rung from the
    first ring; the first to answer takes the call, else the flow answers as usual.
    """

    def __init__(self, line: Line, line_id: int, plan: str, bus, flow_factory: Callable[[Call], Flow],
                 rings_needed: Callable[[], int], answering: Callable[[], bool] = lambda: True,
                 block: tuple[str, ...] = (), ring_group=None) -> None:
        self.line = line
        self.block = block                   # the line's block list ([[line]] block)
        self._blocked: str | None = None     # the pattern this caller matched
        self.id = line_id
        self.plan = plan
        self.bus = bus
        self.flow_factory = flow_factory
        self.rings_needed = rings_needed
        self.answering = answering
        self.rings = RingCounter(plan)
        self.samples = 0
        self.listener: Listener | None = None
        self.listener_origin = 0.0
        self.callerid: CallerId | None = None
        self.call: Call | None = None
        self.flow: Flow | None = None
        self.out: array | None = None
        self.state = "idle"
        self._rings_needed: int | None = None   # None: not answering this call
        self.faults: dict[str, str] = {}     # active faults by key: out of service while any
        self._pre_ring = 0                   # frames still to wait for ring 1 (caller ID first)
        self._idle_alert = AlertToneDetector()
        self._seize: tuple | None = None     # an outbound call waiting for the next frame
        self.ring_group = ring_group

    @property
    def t(self) -> float:
        return seconds_of(self.samples)

    @property
    def fault(self) -> str | None:
        """The first active fault's reason, or None while the line is in service."""
        return next(iter(self.faults.values()), None)

    @property
    def busy(self) -> bool:
        """Something is going on (ringing or a call): the clock must not jump."""
        return self.flow is not None or self.listener is not None or self._seize is not None

    @property
    def idle(self) -> bool:
        """On-hook, not ringing, in service, not promised to an outbound call."""
        return (self.flow is None and self.listener is None and self._seize is None
                and self.fault is None)

    def seize(self, flow_factory: Callable[[Call], Flow], done: Callable[[bool], None]) -> None:
        """Ask for this line for a call out (from any thread, under the appliance lock).
        At its next frame, if it is still idle and not ringing, the line goes off-hook
        and runs ``flow_factory(call)``; ``done(True)`` is called then, on the line's
        thread, or ``done(False)`` if the line was taken meanwhile."""
        if not self.idle:
            done(False)
            return
        self._seize = (flow_factory, done)

    def publish(self, event: str, **fields) -> None:
        self.bus.publish({"event": event, "t": round(self.t, 3), "line": self.id, **fields})

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.bus.publish({"event": LINE_STATE, "line": self.id, "state": state})

    def skip(self, samples: int) -> None:
        """Jump the clock over idle time (the simulator does this between calls)."""
        self.samples += samples
        for _ in range(2):
            self.rings.feed(False)

    def step(self) -> None:
        """One frame: play what the flow asked for, take in what the line brought."""
        self.process(self.line.tick(self.out))

    def process(self, tick: Tick) -> None:
        """Take in one frame from the line (the daemon calls this under the app lock,
        with the blocking ``line.tick`` outside it)."""
        self.samples += FRAME
        self.out = None
        if tick.events:
            self._line_facts(tick)
        if self._seize is not None:
            factory, done = self._seize
            self._seize = None
            if self.fault is None and self.flow is None and self.listener is None \
                    and not tick.ringing:
                self.start_call(factory)
                done(True)
                return
            done(False)
        if self.fault is not None:
            return
        if self.flow is None:
            self._on_hook(tick)
        else:
            events = self.listener.feed(tick.audio)
            self.call.absorb(tick, events)
            self._resume()

    def _line_facts(self, tick: Tick) -> None:
        """Faults reported by the driver: the line is out of service until every active
        fault is cleared (a line can lose its sound card and its line voltage at once)."""
        for fact in tick.events:
            if isinstance(fact, Fault) and fact.key not in self.faults:
                first = not self.faults
                self.faults[fact.key] = fact.reason
                self.publish("line_fault", reason=fact.reason, key=fact.key)
                if first:
                    if self.flow is not None:
                        self.hang_up()
                    else:
                        self._reset()
                    self.set_state("fault")
            elif isinstance(fact, FaultCleared) and fact.key in self.faults:
                reason = self.faults.pop(fact.key)
                self.publish("line_fault_cleared", reason=reason, key=fact.key)
                if not self.faults:
                    self.set_state("idle")

    def _on_hook(self, tick: Tick) -> None:
        n = self.rings.feed(tick.ringing)
        rg = self.ring_group
        if n:
            if n == 1 and not self._pre_ring:
                self._start_listening()
            if n == 1 and rg is not None:
                rg.start(self, self.callerid)
            self._pre_ring = 0
            self.set_state("ringing")
            self.publish("ring", n=n)
            # Asked once a ring, not every frame: it reads the store (toll saver).
            self._rings_needed = self.rings_needed() if self.answering() else None
        elif self.listener is None:
            if not self._caller_id_first(tick):
                return
        elif self._pre_ring:
            self._pre_ring -= 1
            if not self._pre_ring:
                log.info("line %s: no ring after the line reversal or alert tone", self.id)
                self._reset()
                return
        if self.listener is None:
            return
        for ev in self.listener.feed(tick.audio):
            if ev["type"] == "callerid" and self.callerid is None:
                self._got_callerid(CallerId.from_fields(ev))
        for fact in tick.events:
            if isinstance(fact, CallerIdReceived) and self.callerid is None:
                self._got_callerid(fact.callerid)
        if self._blocked is not None and self.rings.in_gap:
            if rg is None or rg.give_up(self, "blocked"):
                self._answer(hang_up_at_once)
            else:
                self._answer(rg.take(self))
        elif rg is not None and rg.answered:
            self._answer(rg.take(self))
        elif self._rings_needed is not None and self.rings.in_gap and self.rings.count >= self._rings_needed:
            # The voicemail route answers unless a phone did in this very moment.
            if rg is None or rg.give_up(self, "voicemail"):
                self._answer()
            else:
                self._answer(rg.take(self))
        elif self.rings.stopped:
            if rg is not None:
                rg.give_up(self, "caller_gone")
            self.publish("missed_call", rings=self.rings.count, caller_number=self._cid("number"),
                         caller_name=self._cid("name"))
            self._reset()

    def _caller_id_first(self, tick: Tick) -> bool:
        """On the idle line: a line reversal, or the dual-tone alert, means caller ID
        comes before the first ring. Start listening; True if it did."""
        reversal = any(isinstance(fact, LineReversal) for fact in tick.events)
        if not reversal:
            audio = tick.audio
            if not self._idle_alert.feed(audio, energy(audio)):
                return False
        self._start_listening()
        self._pre_ring = frames_in(PRE_RING_SECONDS)
        log.info("line %s: %s: listening for caller ID before the first ring", self.id,
                 "line reversal" if reversal else "alert tone")
        return True

    def _caller_fields(self) -> dict:
        cid = self.callerid
        return {"caller_number": self._cid("number"), "caller_name": self._cid("name"),
                "caller_number_absent": cid.number_absent if cid else None,
                "caller_name_absent": cid.name_absent if cid else None}

    def _cid(self, key: str):
        return getattr(self.callerid, key) if self.callerid is not None else None

    def _start_listening(self) -> None:
        self.listener = Listener(self.plan)
        self.listener_origin = self.t - FRAME_SECONDS
        self.callerid = None

    def _got_callerid(self, callerid: CallerId) -> None:
        self.callerid = callerid
        self.publish("callerid", **callerid.fields())
        pattern = blocked_by(callerid, self.block)
        if pattern is not None:
            # Answered at the next ring gap (whatever answering and rings say) and hung up
            # at once: the office's phones stop ringing, no greeting, no message.
            self._blocked = pattern
            self.publish("call_blocked", pattern=pattern, caller_number=callerid.number,
                         caller_name=callerid.name)
            return
        if self.ring_group is not None:
            self.ring_group.callerid(callerid)

    def _answer(self, flow_factory: Callable[[Call], Flow] | None = None) -> None:
        self.line.set_hook(True)
        # Caller ID comes only before the answer: stop looking for it (CPU on a Pi Zero),
        # and keep a caller typing "1234#" from being taken for DTMF caller ID.
        self.listener.dtmf_callerid = False
        self.listener.fsk = None
        # The caller as the answer knew it, so a reporter needs no memory of the ring cycle.
        self.publish(ANSWER, after_rings=self.rings.count, **self._caller_fields())
        self.set_state("answered")
        self.call = Call(self, self.callerid)
        self.flow = (flow_factory or self.flow_factory)(self.call)
        self._resume()

    def start_call(self, flow_factory: Callable[[Call], Flow], callerid: CallerId | None = None,
                   listen: bool = True) -> None:
        """Start a call at once, without ring counting (a SIP call is answered by the
        protocol): the listener hears it from here, the flow runs from its first frame.
        ``listen`` False: no listener (a bridged phone's leg; the line's side listens),
        the driver's facts (BYE, RFC 4733 keys) still reach the flow."""
        self._start_listening()
        self.listener_origin = self.t        # its first frame is the next one, not this one
        if not listen:
            self.listener = _DEAF
        self.listener.dtmf_callerid = False
        self.listener.fsk = None
        self.line.set_hook(True)
        self.set_state("answered")
        self.call = Call(self, callerid)
        self.flow = flow_factory(self.call)
        self._resume()

    def _resume(self) -> None:
        try:
            self.out = next(self.flow)
        except StopIteration:
            self.hang_up()
        except Hangup:
            self.hang_up()
        except Exception:
            # A bug or a failure (say, the store on a broken disk) ends this call, never
            # the line: the caller hears the line drop, the next call is answered again.
            log.exception("line %s: the call flow failed; hanging up", self.id)
            self.flow = None
            self.hang_up()

    def hang_up(self) -> None:
        self.publish("onhook")
        self.line.set_hook(False)
        self._reset()

    def _reset(self) -> None:
        if self.ring_group is not None:
            self.ring_group.give_up(self, "line_reset")
        if self.flow is not None:
            self.flow.close()
        self.flow = None
        self.call = None
        self.listener = None
        self.callerid = None
        self.out = None
        self._rings_needed = None
        self._pre_ring = 0
        self._idle_alert = AlertToneDetector()
        self._blocked = None
        self.rings.reset()
        self.set_state("idle")
