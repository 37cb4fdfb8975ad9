"""The simulated exchange: scenario callers on sim lines, on a virtual clock.

The exchange turns each caller's actions into what a real line would carry: ring
signal in the plan's cadence, caller ID as FSK audio between the first and second
ring (on ``uk`` lines before the first ring, the BT way: see UK_* below), the caller's speech and key presses once answered, and after the caller hangs
up the plan's busy, reorder or dial tone, a loop-current drop, or plain silence. The
firmware hears all of it through its own listener; the exchange tells it nothing else.

Clock: the lead loop ticks every line once (``SimExchange.line(i).tick(out)``), then
calls ``advance()`` to move the clock one 20 ms frame. Calls start on frame boundaries.
A call due while its line is busy (ringing, in a call, or off-hook) waits until the
line is free, as a queue of callers would.

While off-hook the firmware also hears its own output echoed by the line hybrid
(``echo_return_loss_db`` down) and steady line noise (``line_noise_dbm0``).

Outgoing calls: a line the firmware takes off-hook with no call on it hears the plan's
dial tone. The exchange listens to what the firmware sends for DTMF digits (the
project's detector, the one the listener uses; tests check it against DTMF made by
SoX); the first digit stops the dial tone. The number is complete when the digits are
a scenario callee's number, or 4 s after the last digit. After a short post-dial delay
the caller hears what the callee does: ringback then its answer (its steps play into the
line, and what the firmware sends is recorded, ``SimExchange.callee_records``), busy,
reorder, SIT (also for a number no callee has), or ringback until the firmware gives up.
"""

import math
from array import array
from datetime import datetime, timedelta
from operator import add, mul

from linebox import FRAME, RATE
from linebox.dsp import gen
from linebox.dsp.alert import FREQS as ALERT_FREQS
from linebox.dsp.dtmf import DtmfDetector
from linebox.dsp.plans import get_plan, tone_signal
from linebox.events import (
    CALLEE_ANSWER,
    CALLEE_END,
    CALLEE_HANGUP,
    DIALLED,
    PROMPT,
    PROMPT_END,
    Bus,
)
from linebox.hw.line import SILENT_FRAME, Line, LineReversal, Tick
from linebox.sim.scenario import CalleeSpec, CallSpec, Dtmf, Hangup, Say, Scenario, Silence, Wait

CALLERID_DELAY = 0.5          # s after the first ring burst ends (GR-30: at least 0.5 s)
CALLERID_GUARD = 0.2          # s of quiet kept between the burst's end and the next ring
# UK lines (BT SIN 227; ETSI EN 300 659-1 §6.1.1 "prior to ringing, with line reversal and
# DT-AS"): the line's polarity reverses, the dual-tone alert (2130 + 2750 Hz, 100 +- 10 ms)
# follows, then the V.23 burst, then the first ring. Gaps as Zyxel's UK line parameters
# have them (reversal to alert 300 ms, alert to data 150 ms, data to ring 400 ms); spandsp
# sends the alert at -13 dBm0 a tone. SIN 227 itself was not at hand: the gaps are
# ASSUMED within its limits (alert at least 100 ms after the reversal).
UK_REVERSAL_TO_ALERT = 0.3
UK_ALERT = 0.1
UK_ALERT_DBM0 = -13.0
UK_ALERT_TO_DATA = 0.15
UK_DATA_TO_RING = 0.4
TONE_CAP = 120.0              # s of busy/reorder/dial tone before the exchange gives up
NOISE_FRAMES = 53             # frames of precomputed noise per line, cycled (prime: no beat)
ECHO_SHIFT = 16               # echo gain as a 16-bit fixed-point fraction

# Phases of a call on its line.
RINGING, CONNECTED, GONE = "ringing", "connected", "gone"
# Stages of an outgoing call (the firmware dials out), before CONNECTED / GONE.
DIAL_TONE, DIGITS, POST_DIAL, RINGBACK, TONE = "dial_tone", "digits", "post_dial", "ringback", "tone"
# ASSUMED figures of a typical local exchange (no standard fixes them): the digits are
# complete 4 s after the last one (en-bloc matching of a known number ends it at once);
# a line that dials nothing for 10 s gets reorder (permanent signal); 0.5 s of silence
# before ringback or a tone (post-dial delay).
INTER_DIGIT_TIMEOUT = 4.0
FIRST_DIGIT_TIMEOUT = 10.0
POST_DIAL_DELAY = 0.5
RINGBACK_CAP = 180.0          # s of ringback for a callee that never answers
SIT_SECONDS = 8.0             # one seamless stretch of SIT (repeats: three segments, silence)


class _Call:
    """One scenario call's progress: when it is due, when it started and ended."""

    def __init__(self, spec: CallSpec) -> None:
        self.spec = spec
        self.due: float | None = spec.at if spec.at is not None else None
        self.started = False
        self.end_t: float | None = None


class _Outgoing:
    """One call the firmware dials out on a line: what the exchange heard and did."""

    def __init__(self, n: int) -> None:
        self.stage = DIAL_TONE
        self.since = n                        # sample where the stage began
        self.digits = ""
        self.last_digit = n
        self.dtmf = DtmfDetector()
        self.callee: CalleeSpec | None = None
        self.answer_at = 0                    # sample where the callee answers
        self.heard: list[array] = []          # what the firmware sent, once connected


class CalleeRecord:
    """What one answered callee heard: the firmware's audio down the line, at 8 kHz."""

    def __init__(self, callee: CalleeSpec, line: int, t: float) -> None:
        self.callee = callee
        self.number = callee.number
        self.line = line
        self.t = t                            # virtual seconds when it answered
        self.audio = array("h")


class SimExchange:
    """Plays a scenario's callers on simulated lines, on a virtual clock.

    ``plans`` maps each line id to its tone plan. Publishes the callers' side on
    ``bus``: ``incoming``, ``caller_hangup``, ``caller_gave_up``, ``call_end``; listens
    for the firmware's ``prompt`` and ``prompt_end`` events, which callers wait for.
    """

    def __init__(self, scenario: Scenario, plans: dict[int, str], bus: Bus, rate: int = RATE) -> None:
        if rate != RATE:
            raise ValueError(f"the simulated exchange runs at {RATE} Hz, not {rate}")
        missing = scenario.lines() - set(plans)
        if missing:
            raise ValueError(f"no tone plan for line(s) {sorted(missing)}")
        self.scenario = scenario
        self.bus = bus
        self.rate = rate
        self._n = 0                                   # the clock, in samples
        self.start = scenario.start or datetime.now().astimezone().replace(microsecond=0)
        self._calls = [_Call(c) for c in scenario.calls]
        if self._calls and self._calls[0].spec.after is not None:
            self._calls[0].due = self._calls[0].spec.after
        self._tones: dict[tuple[str, str], array] = {}
        self._dtmf: dict[tuple, array] = {}
        erl = scenario.echo_return_loss_db
        self.echo_gain = None if erl is None else round(10 ** (-erl / 20) * (1 << ECHO_SHIFT))
        # echo_of[x] is sample x after the hybrid's loss; a negative x indexes from the end,
        # which is where the negative half of the table is: map() then does it in C.
        g = self.echo_gain
        self.echo_of = None if not g else [
            ((i if i < 32768 else i - 65536) * g) >> ECHO_SHIFT for i in range(65536)]
        self._lines = {lid: SimLine(self, lid, plan) for lid, plan in sorted(plans.items())}
        self.callee_records: list[CalleeRecord] = []
        bus.subscribe(self._on_event)
        self._start_due()

    # ------------------------------------------------------------ the lead loop's view

    def line(self, line_id: int) -> "SimLine":
        """The Line the firmware drives for ``line_id``."""
        return self._lines[line_id]

    @property
    def line_ids(self) -> list[int]:
        return list(self._lines)

    @property
    def now(self) -> float:
        """Virtual seconds since the start."""
        return self._n / self.rate

    def wall_time(self, t: float | None = None) -> datetime:
        """The wall-clock time at virtual time ``t`` (default: now)."""
        return self.start + timedelta(seconds=self.now if t is None else t)

    def advance(self) -> None:
        """Move the clock one frame, after every line has ticked once."""
        self._n += FRAME
        self._start_due()

    def done(self) -> bool:
        """Every call has ended and none is left to start."""
        return all(c.end_t is not None for c in self._calls)

    def idle_until(self) -> float | None:
        """While every line is idle and on-hook: when the next call starts (a frame
        boundary after now). None if a line is busy, a call is due now, or none is left."""
        if any(ln.busy for ln in self._lines.values()):
            return None
        dues = [c.due for c in self._calls if not c.started and c.due is not None]
        if not dues:
            return None
        n = self._frame_at(min(dues))
        return n / self.rate if n > self._n else None

    def skip_to(self, t: float) -> None:
        """Jump the clock to ``t`` (rounded up to a frame) while every line is idle."""
        if any(ln.busy for ln in self._lines.values()):
            raise RuntimeError("skip_to while a line is busy")
        n = self._frame_at(t)
        if n > self._n:
            self._n = n
            self._start_due()

    def call_on_line(self, line_id: int) -> int | None:
        """Scenario index (1-based) of the call in progress on ``line_id``, or None."""
        call = self._lines[line_id].call
        return call.spec.index if call is not None else None

    # ------------------------------------------------------------ inside

    def _frame_at(self, t: float) -> int:
        """The first frame boundary (in samples) at or after ``t`` seconds."""
        n = math.ceil(round(t * self.rate, 6))
        return -(-n // FRAME) * FRAME

    def _start_due(self) -> None:
        for call in self._calls:
            if call.started or call.due is None or self._frame_at(call.due) > self._n:
                continue
            line = self._lines[call.spec.line]
            if not line.busy:
                call.started = True
                line.start_call(call)

    def _ended(self, call: _Call) -> None:
        """A call is over: the next call in scenario order may now know when it is due."""
        call.end_t = self.now
        i = self._calls.index(call)
        if i + 1 < len(self._calls):
            nxt = self._calls[i + 1]
            if nxt.spec.after is not None:
                nxt.due = call.end_t + nxt.spec.after

    def _publish(self, line: "SimLine", event: str, **fields) -> None:
        ev = {"event": event, "t": round(self.now, 3), "line": line.id}
        if line.call is not None:
            ev["call"] = line.call.spec.index
        ev.update(fields)
        self.bus.publish(ev)

    def _on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind not in (PROMPT, PROMPT_END):
            return
        line = self._lines.get(ev.get("line"))
        if line is not None:
            line.firmware_event(kind, ev.get("name"))

    def tone_loop(self, plan: str, name: str) -> array:
        """One seamless period of the plan's ``name`` tone (steady tones: one second)."""
        key = (plan, name)
        if key not in self._tones:
            if name == "sit":
                self._tones[key] = tone_signal(plan, name, SIT_SECONDS)
            else:
                cadence = get_plan(plan).tones[name].cadence
                self._tones[key] = tone_signal(plan, name, sum(cadence) if cadence else 1.0)
        return self._tones[key]

    def dtmf_audio(self, step: Dtmf) -> array:
        """The key presses of a dtmf step (each key's tone is made once per exchange)."""
        out = array("h")
        for d in step.digits:
            key = (d, step.on, step.off, step.level)
            if key not in self._dtmf:
                self._dtmf[key] = gen.dtmf(d, step.on, step.off, step.level - 2.0, step.level)
            out += self._dtmf[key]
        return out


class SimLine(Line):
    """One simulated line: the Line the firmware drives, fed by the exchange."""

    def __init__(self, exchange: SimExchange, line_id: int, plan: str) -> None:
        super().__init__(line_id, plan)
        self._ex = exchange
        p = get_plan(plan)
        self.callerid_standard = p.callerid
        self._ring_on, self._ring_first_end = _ring_frames(p.ring_cadence)
        self.callerid_before_ring = plan == "uk"
        self._pre_ring = 0                    # frames before the first ring (UK caller ID)
        self._noise = _noise_frames(exchange.scenario.line_noise_dbm0, line_id)
        self._noise_i = 0
        self.call: _Call | None = None
        self.phase: str | None = None         # RINGING, CONNECTED, GONE; None: no call
        # Ringing: where the call started on the clock, when the caller gives up, caller ID.
        self._call_n = 0
        self._give_up_frame = 0
        self._cid_audio: array | None = None
        self._cid_at = 0
        # Connected: the caller's steps and the audio of the one under way.
        self._steps = iter(())
        self._buf: array | None = None
        self._pos = 0
        self._quiet = 0                       # samples of caller silence still to send
        self._blocked: tuple | None = None    # the firmware event the caller waits for
        self._seen: set[tuple] = set()        # firmware events since the last wait
        self._how: str | None = None          # how the caller hung up
        # Tone on the line: busy/reorder/dial after the caller left, or dial tone.
        self._tone: array | None = None
        self._tone_pos = 0
        self._tone_left = 0
        # An outgoing call (the firmware went off-hook with no call ringing).
        self.out: _Outgoing | None = None
        self._record: CalleeRecord | None = None

    @property
    def busy(self) -> bool:
        """A call is on the line or the firmware is off-hook: no new call can ring."""
        return self.call is not None or self.off_hook

    # ------------------------------------------------------------ the firmware's side

    def tick(self, out: array | None = None) -> Tick:
        if self.call is None:
            if not self.off_hook:
                return Tick(SILENT_FRAME)
            return self._outgoing_tick(out)
        if self.phase == RINGING:
            return self._ringing_tick()
        if self.phase == CONNECTED:
            audio = self._caller_frame()          # may end with the caller hanging up
            return Tick(self._mix(audio, out), loop=self._how != "loop")
        if self._how == "loop":
            return Tick(self._mix(None, out), loop=False)
        return Tick(self._mix(self._tone_frame(), out), loop=True)

    def set_hook(self, off_hook: bool) -> None:
        was = self.off_hook
        super().set_hook(off_hook)
        if off_hook == was:
            return
        if off_hook:
            if self.phase == RINGING:
                self._answer()
            elif self.call is None:
                self._start_outgoing()
        elif self.call is not None:
            self._end_call()
        else:
            self._end_outgoing()

    # ------------------------------------------------------------ call life

    def start_call(self, call: _Call) -> None:
        """The exchange rings this line for ``call``."""
        self.call = call
        self.phase = RINGING
        self._call_n = self._ex._n
        spec = call.spec
        self._cid_audio, self._cid_at = self._callerid(spec, self._ex.wall_time())
        self._pre_ring = 0
        if self._cid_audio is not None and self.callerid_before_ring:
            self._cid_audio = _uk_pre_ring(self._cid_audio)
            self._cid_at = 0
            self._pre_ring = -(-len(self._cid_audio) // FRAME)
        self._give_up_frame = self._pre_ring + spec.give_up_after_rings * len(self._ring_on)
        c = spec.caller
        self._ex._publish(self, "incoming", caller_number=c.number if c else None,
                          caller_name=c.name if c else None)

    def _callerid(self, spec: CallSpec, when: datetime) -> tuple[array | None, int]:
        """The caller-ID burst and the sample (from the call's start) where it begins."""
        if spec.caller is None:
            return None, 0
        from linebox.dsp.fskmod import callerid_burst, encode_mdmf

        c = spec.caller
        msg = encode_mdmf(number=c.number, name=c.name, datetime=when.strftime("%m%d%H%M"),
                          number_absent=c.number_absent, name_absent=c.name_absent)
        burst = callerid_burst(self.callerid_standard, msg)
        first_end = self._ring_first_end * FRAME
        second_ring = len(self._ring_on) * FRAME
        at = first_end + round(CALLERID_DELAY * RATE)
        latest = second_ring - round(CALLERID_GUARD * RATE) - len(burst)
        return burst, max(first_end, min(at, latest))

    def _ringing_tick(self) -> Tick:
        k = (self._ex._n - self._call_n) // FRAME
        if k >= self._give_up_frame:
            self._ex._publish(self, "caller_gave_up", rings=self.call.spec.give_up_after_rings)
            self._end_call()
            return Tick(SILENT_FRAME)
        audio = None
        if self._cid_audio is not None:
            i = k * FRAME - self._cid_at
            if -FRAME < i < len(self._cid_audio):
                audio = _window(self._cid_audio, i)
        if k < self._pre_ring:
            # UK caller ID before the first ring: the line reverses, then alert and data.
            return Tick(self._mix(audio, None), events=(LineReversal(),) if k == 0 else ())
        k -= self._pre_ring
        return Tick(self._mix(audio, None), ringing=self._ring_on[k % len(self._ring_on)])

    def _answer(self) -> None:
        self.phase = CONNECTED
        self._steps = iter(self.call.spec.steps)
        self._buf = None
        self._pos = 0
        self._quiet = 0
        self._blocked = None
        self._seen = set()
        self._how = None
        self._advance()

    def _end_call(self) -> None:
        call = self.call
        self._ex._publish(self, "call_end")
        self.call = None
        self.phase = None
        self._tone = None
        self._ex._ended(call)

    def _caller_hangup(self, how: str) -> None:
        self.phase = GONE
        self._how = how
        if self.out is not None:
            self._close_record()
            self._ex._publish(self, CALLEE_HANGUP, number=self.out.callee.number, how=how,
                              callee=self.out.callee.index)
        else:
            self._ex._publish(self, "caller_hangup", how=how)
        if how in ("busy", "reorder", "dial"):
            self._start_tone(how)

    # ------------------------------------------------------------ outgoing calls

    def _start_outgoing(self) -> None:
        self.out = _Outgoing(self._ex._n)
        self.phase = None
        self._how = None
        self._start_tone("dial")

    def _end_outgoing(self) -> None:
        """The firmware hung up an outgoing call (or went on-hook after dial tone)."""
        o = self.out
        self.out = None
        self._tone = None
        self.phase = None
        self._close_record()
        if o is not None and o.stage != DIAL_TONE:
            fields = {"number": o.digits}
            if o.callee is not None:
                fields["callee"] = o.callee.index
            self._ex._publish(self, CALLEE_END, **fields)

    def _close_record(self) -> None:
        """The callee's call is over: what it heard goes to its ``record`` file (every
        call to it so far, one after the other)."""
        rec, self._record = self._record, None
        if rec is None or rec.callee.record is None:
            return
        from linebox.wavfile import write_wav

        audio = array("h")
        for r in self._ex.callee_records:
            if r.callee is rec.callee:
                audio += r.audio
        write_wav(rec.callee.record, audio)

    def _outgoing_tick(self, out: array | None) -> Tick:
        o = self.out
        n = self._ex._n
        stage = o.stage
        if stage in (DIAL_TONE, DIGITS):
            self._hear_digits(o, out, n)
            stage = o.stage
        if stage == POST_DIAL and n - o.since >= POST_DIAL_DELAY * RATE:
            self._route(o, n)
            stage = o.stage
        if stage == RINGBACK and o.callee is not None and o.callee.result == "answer" \
                and n >= o.answer_at:
            self._callee_answers(o)
            stage = o.stage
        if self.phase == CONNECTED:
            if self._record is not None:
                self._record.audio += out if out is not None else SILENT_FRAME
            audio = self._caller_frame()        # the callee's steps; may hang up
            return Tick(self._mix(audio, out), loop=self._how != "loop")
        if self.phase == GONE and self._how == "loop":
            return Tick(self._mix(None, out), loop=False)
        return Tick(self._mix(self._tone_frame(), out), loop=True)

    def _hear_digits(self, o: _Outgoing, out: array | None, n: int) -> None:
        """Decode the firmware's DTMF; the number is complete on a callee's number or
        after the inter-digit timeout."""
        frame = out if out is not None else SILENT_FRAME
        for ev in o.dtmf.feed(frame, sum(map(mul, frame, frame)) if out is not None else 0):
            if o.stage == DIAL_TONE:
                o.stage = DIGITS
                self._tone = None              # the first digit stops the dial tone
            o.digits += ev["digit"]
            o.last_digit = n
            if self._ex.scenario.callee(o.digits) is not None:
                self._dialled(o, n)
                return
        if o.dtmf.pressed is not None and o.stage == DIAL_TONE:
            o.stage = DIGITS                   # the key is down: dial tone off already
            self._tone = None
        if o.stage == DIAL_TONE and n - o.since >= FIRST_DIGIT_TIMEOUT * RATE:
            o.stage = TONE
            self._ex._publish(self, DIALLED, number="", result="timeout")
            self._start_tone("reorder")
        elif o.stage == DIGITS and o.dtmf.pressed is None and o.digits \
                and n - o.last_digit >= INTER_DIGIT_TIMEOUT * RATE:
            self._dialled(o, n)

    def _dialled(self, o: _Outgoing, n: int) -> None:
        o.callee = self._ex.scenario.callee(o.digits)
        o.stage = POST_DIAL
        o.since = n
        fields = {"number": o.digits, "result": o.callee.result if o.callee else "unknown"}
        if o.callee is not None:
            fields["callee"] = o.callee.index
        self._ex._publish(self, DIALLED, **fields)

    def _route(self, o: _Outgoing, n: int) -> None:
        result = o.callee.result if o.callee is not None else "sit"
        o.since = n
        if result in ("answer", "no_answer"):
            o.stage = RINGBACK
            self._start_tone("ringback")
            cadence = get_plan(self.plan).tones["ringback"].cadence
            period = round(sum(cadence) * RATE)
            if result == "no_answer":
                self._tone_left = round(RINGBACK_CAP * RATE)
            else:
                # Answered in the silence after the N-th ring (0 rings: at once).
                o.answer_at = n + o.callee.answer_after_rings * period
        else:
            o.stage = TONE
            self._start_tone(result)

    def _callee_answers(self, o: _Outgoing) -> None:
        o.stage = CONNECTED
        self._tone = None
        self._record = CalleeRecord(o.callee, self.id, self._ex.now)
        self._ex.callee_records.append(self._record)
        self._ex._publish(self, CALLEE_ANSWER, number=o.callee.number, callee=o.callee.index)
        self.phase = CONNECTED
        self._steps = iter(o.callee.steps)
        self._buf = None
        self._pos = 0
        self._quiet = 0
        self._blocked = None
        self._seen = set()
        self._how = None
        self._advance()

    # ------------------------------------------------------------ the caller's steps

    def firmware_event(self, kind: str, name: str | None) -> None:
        """A prompt started or ended on this line: a waiting caller may go on."""
        if self.phase != CONNECTED:
            return
        key = ("end" if kind == PROMPT_END else "start", name)
        if key == self._blocked:
            self._blocked = None
            self._seen.clear()
            self._advance()
        else:
            self._seen.add(key)

    def _advance(self) -> None:
        """Take steps until one makes audio, blocks, or hangs up (or none are left)."""
        while self.phase == CONNECTED and self._blocked is None and not self._quiet \
                and (self._buf is None or self._pos >= len(self._buf)):
            step = next(self._steps, None)
            if step is None:
                self._buf = None
                return
            self._take(step)

    def _take(self, step) -> None:
        if isinstance(step, Wait):
            if step.until == "seconds":
                self._quiet = round(step.seconds * RATE)
            elif step.until != "answer":
                # Events since the previous wait count: the caller may have been talking.
                key = ("end", "beep") if step.until == "beep" else ("start", step.prompt)
                if key in self._seen:
                    self._seen.clear()
                else:
                    self._blocked = key
            return
        if isinstance(step, Silence):
            self._quiet = round(step.seconds * RATE)
        elif isinstance(step, Say):
            self._buf, self._pos = step.audio, 0
        elif isinstance(step, Dtmf):
            self._buf, self._pos = self._ex.dtmf_audio(step), 0
        elif isinstance(step, Hangup):
            self._caller_hangup(step.how)

    def _caller_frame(self) -> array | None:
        """The caller's next 160 samples (None: silence), taking steps as they finish."""
        buf, pos = self._buf, self._pos
        if not self._quiet and buf is not None and pos + FRAME <= len(buf):
            self._pos = pos + FRAME                  # the common case: inside a say or dtmf
            self._advance()
            return buf[pos:pos + FRAME]
        parts, need, sound = [], FRAME, False
        while need and self.phase == CONNECTED:
            if self._quiet:
                n = min(need, self._quiet)
                self._quiet -= n
                parts.append(SILENT_FRAME[:n])
            elif self._buf is not None and self._pos < len(self._buf):
                n = min(need, len(self._buf) - self._pos)
                parts.append(self._buf[self._pos:self._pos + n])
                self._pos += n
                sound = True
            else:
                self._advance()
                if not self._quiet and (self._buf is None or self._pos >= len(self._buf)):
                    break                            # waiting, gone, or out of steps
                continue
            need -= n
        # Take the next steps now, so a hang-up right after the audio happens in this frame.
        self._advance()
        if not sound:
            return None
        out = _join(parts)
        if len(out) < FRAME:
            out += SILENT_FRAME[:FRAME - len(out)]
        return out

    # ------------------------------------------------------------ audio

    def _start_tone(self, name: str) -> None:
        self._tone = self._ex.tone_loop(self.plan, name)
        self._tone_pos = 0
        self._tone_left = round(TONE_CAP * RATE)

    def _tone_frame(self) -> array | None:
        if self._tone is None or self._tone_left <= 0:
            return None
        self._tone_left -= FRAME
        frame = _window(self._tone, self._tone_pos, loop=True)
        self._tone_pos = (self._tone_pos + FRAME) % len(self._tone)
        return frame

    def _mix(self, audio: array | None, out) -> array:
        """What the firmware hears: ``audio`` + line noise + echo of ``out``."""
        acc = audio
        if self._noise:
            noise = self._noise[self._noise_i]
            self._noise_i = (self._noise_i + 1) % len(self._noise)
            acc = noise if acc is None else map(add, acc, noise)
        echo_of = self._ex.echo_of
        if out is not None and echo_of is not None:
            echo = map(echo_of.__getitem__, out)
            acc = echo if acc is None else map(add, acc, echo)
        if acc is None:
            return SILENT_FRAME
        if isinstance(acc, array):
            return acc
        vals = list(acc)
        try:
            return array("h", vals)
        except OverflowError:
            return array("h", map(gen.clip, vals))


def _uk_pre_ring(burst: array) -> array:
    """What a UK line carries between its reversal and its first ring: quiet, the
    dual-tone alert, quiet, the caller-ID burst, quiet (see UK_*)."""
    alert = gen.tone(ALERT_FREQS, UK_ALERT, UK_ALERT_DBM0)
    return (gen.silence(UK_REVERSAL_TO_ALERT) + alert + gen.silence(UK_ALERT_TO_DATA) + burst
            + gen.silence(UK_DATA_TO_RING))


def _join(parts: list[array]) -> array:
    out = array("h")
    for p in parts:
        out += p
    return out


def _window(src: array, i: int, loop: bool = False) -> array:
    """160 samples of ``src`` from ``i`` (negative: zeros first); past the end: zeros,
    or ``src`` again from its start when ``loop``."""
    if i < 0:
        return SILENT_FRAME[:-i] + src[:FRAME + i]
    frame = src[i:i + FRAME]
    while len(frame) < FRAME:
        frame += src[:FRAME - len(frame)] if loop else SILENT_FRAME[:FRAME - len(frame)]
    return frame


def _ring_frames(cadence: tuple[float, ...]) -> tuple[list[bool], int]:
    """Per-frame ring signal over one cadence period, and the frame where the first
    ring burst (all of one period's on-segments) ends."""
    on: list[bool] = []
    for i, seconds in enumerate(cadence):
        on += [i % 2 == 0] * round(seconds * RATE / FRAME)
    last_on = max(i for i, v in enumerate(on) if v)
    return on, last_on + 1


def _noise_frames(level_dbm0: float | None, seed: int) -> list[array]:
    if level_dbm0 is None:
        return []
    noise = gen.white_noise(NOISE_FRAMES * FRAME / RATE, level_dbm0, seed=seed)
    return [noise[i:i + FRAME] for i in range(0, len(noise), FRAME)]
