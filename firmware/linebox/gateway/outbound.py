"""A phone's call out through an analog line (issue 12, outbound).

``Outbound.place(extension, number)`` checks that the extension may dial the number
(its ``dial`` patterns; emergency numbers always may, on any line), picks a free line
the extension may use, and seizes it at that line's next frame. The call then runs on
the line's own clock, as the line's call flow (`line_flow`):

1. off-hook; the listener must hear dial tone within 3 s (none: 503, and a log line
   naming the line);
2. early media: from here the phone hears the line (`OutboundCall.state` "early": the
   SIP side sends 183 with SDP); the digits go out as DTMF (dsp/gen, Q.23 frequencies);
3. call progress, heard by the listener: ringback keeps the call early; busy -> 486,
   reorder (or dial tone again) -> 503, SIT -> 404, ringback for 3 minutes -> 480;
   voice, or the end of ringback, or no progress tone at all within 10 s -> answered
   (200 OK; an analog line has no answer supervision);
4. `bridged` (gateway/bridge.py) until either side hangs up: the phone's BYE/CANCEL
   closes its end and the line goes on-hook; busy/reorder/dial tone, a loop drop or 30 s
   of silence on the line closes the line's end and the phone gets its BYE.

The phone side is anything holding ``OutboundCall.phone_end`` (a SIP call's runner, or a
simulated phone); it learns the call's progress through ``on_change``.
"""

import logging
import operator
from array import array

from linebox import FRAME, RATE
from linebox.calls.engine import HANGUP_TONES, Call, Flow
from linebox.dsp import gen
from linebox.dsp.levels import frame_energy
from linebox.errors import LineboxError
from linebox.events import OUTBOUND_END, OUTBOUND_START
from linebox.gateway.bridge import SILENCE_END_SECONDS, Bridge, bridged
from linebox.gateway.dialrules import matches

log = logging.getLogger(__name__)

DIAL_TONE_WAIT = 3.0          # s: no dial tone by then -> 503 (issue 12)
# DTMF as a telephone sends it: ITU-T Q.23 frequencies (dsp/gen), 100 ms on and 100 ms
# off (Q.24 asks a receiver to take 40 ms; Bell System phones send 50 ms minimum), the
# high group 2 dB above the low one, at the levels of Q.24's nominal range (ASSUMED:
# -5 / -7 dBm0, the scenario's default too).
DTMF_ON, DTMF_OFF = 0.1, 0.1
DTMF_HIGH_DBM0, DTMF_LOW_DBM0 = -5.0, -7.0
# ASSUMED: no ringback, busy or SIT within this long after the last digit: the far end
# answered without ringback (some PBX lines give none); the call is bridged already.
NO_PROGRESS_ANSWER = 10.0
RINGBACK_LIMIT = 180.0        # s of ringback: nobody answers -> 480
MAX_NUMBER = 20               # digits after the prefix (E.164: 15, plus access codes)
VOICE_ANSWER = 0.4            # s of voice on the line (outside tones, the phone quiet)
_PHONE_QUIET = frame_energy(-45.0)
_mul = operator.mul

# What the line's tones mean for the phone: SIP status, reason phrase, result name.
TONE_RESULTS = {
    "busy": (486, "Busy Here", "busy"),
    "reorder": (503, "Service Unavailable", "reorder"),
    "dial": (503, "Service Unavailable", "reorder"),
    "sit": (404, "Not Found", "sit"),
}


class Refused(LineboxError):
    """The call cannot be placed: ``status`` and ``reason`` for the phone."""

    def __init__(self, status: int, reason: str, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.reason = reason


class OutboundCall:
    """One phone's call out: shared by the line's flow and the phone side.

    ``state``: ``seizing``, ``early`` (the phone hears the line), ``answered``, then
    ``failed`` (``status``/``reason`` for the phone) or ``ended``. ``on_change(call)``
    callbacks run on the line's thread, under the appliance lock."""

    def __init__(self, router: "Outbound", extension: str, number: str, emergency: bool,
                 candidates: list, echo="default") -> None:
        self.router = router
        self.extension = extension
        self.number = number
        self.emergency = emergency
        self.bridge = Bridge(echo=echo)
        self.phone_end = self.bridge.phone_end
        self.line_end = self.bridge.line_end
        self.state = "seizing"
        self.status: int | None = None
        self.reason: str | None = None
        self.result: str | None = None
        self.line_id: int | None = None
        self.runner = None
        self._candidates = list(candidates)
        self._callbacks: list = []

    def on_change(self, callback) -> None:
        self._callbacks.append(callback)

    def hang_up(self, cause: str = "cancel") -> None:
        """The phone is gone (BYE, CANCEL): the line goes on-hook at its next frame."""
        self.phone_end.close(cause)

    # -- the line's side -------------------------------------------------------------
    def _set(self, state: str) -> None:
        self.state = state
        for cb in list(self._callbacks):
            try:
                cb(self)
            except Exception:      # noqa: BLE001 - a broken listener must not stop the line
                log.exception("outbound call: progress listener failed")

    def _fail(self, status: int, reason: str, result: str) -> None:
        if self.state in ("failed", "ended"):
            return
        self.status, self.reason, self.result = status, reason, result
        self._set("failed")
        self.line_end.close(result)

    def _seize_next(self) -> None:
        while self._candidates:
            runner = self._candidates.pop(0)
            if runner.idle:
                self.runner = runner
                runner.seize(lambda call, r=runner: line_flow(self, call, r), self._seized)
                return
        self._fail(486, "Busy Here", "all_lines_busy")

    def _seized(self, ok: bool) -> None:
        if self.phone_end.closed and self.state == "seizing":
            if ok:
                return           # the flow sees the closed end and goes on-hook at once
            self.state = "ended"
            return
        if not ok:
            self._seize_next()


class Outbound:
    """The outbound route: who may dial what, through which line.

    ``runners()`` returns the appliance's line runners (the lines in service)."""

    def __init__(self, config, runners) -> None:
        self.config = config
        self.gateway = config.gateway
        self.runners = runners

    def number_for(self, dialled: str) -> tuple[str, bool] | None:
        """What goes down the line for ``dialled`` and whether it is an emergency
        number: an emergency number as dialled (no prefix needed: 47 CFR 9.16), or the
        digits after ``outbound_prefix``. None: not an outbound number."""
        emergency = self.gateway.emergency
        if dialled in emergency:
            return dialled, True
        prefix = self.gateway.outbound_prefix
        if not dialled.startswith(prefix) or len(dialled) == len(prefix):
            return None
        number = dialled[len(prefix):]
        if not number or len(number) > MAX_NUMBER or not set(number) <= set("0123456789*#"):
            return None
        return number, number in emergency

    def place(self, extension, number: str, emergency: bool = False, echo="default") -> OutboundCall:
        """Start a call out for ``extension`` (an ExtensionConfig, authenticated by the
        caller of this); under the appliance lock. Raises Refused."""
        if emergency:
            # Any line at all, the extension's own first.
            own = list(extension.lines)
            allowed = own + sorted(r.id for r in self.runners() if r.id not in own)
        else:
            if not extension.lines:
                raise Refused(403, "Forbidden", f"extension {extension.number} may not call out "
                              "(no lines in its [[extension]])")
            if not matches(extension.dial, number):
                raise Refused(403, "Forbidden", f"extension {extension.number} may not dial "
                              f"{number} (not in its dial patterns)")
            allowed = list(extension.lines)
        by_id = {r.id: r for r in self.runners()}
        permitted = [by_id[i] for i in dict.fromkeys(allowed) if i in by_id]
        usable = [r for r in permitted if r.line.full_duplex and r.fault is None]
        if not usable:
            why = "half-duplex" if permitted and all(not r.line.full_duplex for r in permitted) \
                else "out of service"
            raise Refused(503, "Service Unavailable",
                          f"extension {extension.number}: no line to call out on "
                          f"(lines {sorted(allowed)} {why})")
        free = [r for r in usable if r.idle]
        if not free:
            raise Refused(486, "Busy Here", f"extension {extension.number}: every line it may "
                          f"use is busy (lines {sorted(r.id for r in usable)})")
        call = OutboundCall(self, extension.number, number, emergency, free, echo=echo)
        call._seize_next()
        return call


class KeysAsTones:
    """The phone's end of an outbound call's bridge, for the phone's leg: keys the phone
    signals (RFC 4733 events, SIP INFO: its call's ``digits``) go down the line as DTMF
    tones in place of its audio, so the far end's menu ("press 1") hears them. Everything
    else is the end's."""

    def __init__(self, end, call: Call) -> None:
        self._end = end
        self._call = call
        self._tones = array("h")

    def __getattr__(self, name):
        return getattr(self._end, name)

    def push(self, frame: array) -> None:
        digits = self._call.digits
        while digits:
            self._tones += dial_audio(digits.popleft())
        if self._tones:
            frame, self._tones = self._tones[:FRAME], self._tones[FRAME:]
            if len(frame) < FRAME:
                frame += array("h", bytes(2 * (FRAME - len(frame))))
        self._end.push(frame)


def _frames(seconds: float) -> int:
    return int(round(seconds * RATE / FRAME))


def dial_audio(number: str) -> array:
    """The DTMF a telephone would send for ``number``."""
    return gen.dtmf_string(number, DTMF_ON, DTMF_OFF, low_dbm0=DTMF_LOW_DBM0,
                           high_dbm0=DTMF_HIGH_DBM0)


def line_flow(oc: OutboundCall, call: Call, runner) -> Flow:
    """The line's call flow for a call out (see the module's description)."""
    oc.line_id = runner.id
    end = oc.line_end
    call.hangup_tones = ()            # dial, busy, reorder are call progress for now
    call.keys = False                 # the echo of our own dialling is no key press
    call.publish(OUTBOUND_START, extension=oc.extension, number=oc.number)
    result = "line_gone"
    try:
        result = yield from _dial(oc, call, end, runner)
        if result == "dialled":
            result = yield from _progress(oc, call, end)
        if result == "answered":
            oc._set("answered")
            call.hangup_tones = HANGUP_TONES      # (keys stay off: the far end's are audio)
            result = "hung_up"
            cause = yield from bridged(call, end, silence_end=SILENCE_END_SECONDS)
            result = f"phone_{cause}" if cause else "hung_up"
    finally:
        if call.hangup_cause is not None and result in ("line_gone", "dialled", "hung_up"):
            result = f"line_{call.hangup_cause}"
        if oc.state in ("seizing", "early"):
            if end.closed and end.closed_by_other:
                oc.result = "cancelled"
                oc.state = "ended"
            else:
                oc._fail(503, "Service Unavailable", result)
        elif oc.state == "answered":
            oc.result = result
            oc._set("ended")
        if not end.closed:
            end.close(result)
        call.publish(OUTBOUND_END, extension=oc.extension, result=oc.result)


def _dial(oc: OutboundCall, call: Call, end, runner) -> Flow:
    """Wait for dial tone, then send the digits (the phone hears the line from then)."""
    listener = call.listener
    left = _frames(DIAL_TONE_WAIT)
    while listener.tone != "dial":
        if end.closed:
            return "cancelled"
        if left <= 0:
            log.warning("line %s: no dial tone within %.0f s: the call out from extension "
                        "%s failed", runner.id, DIAL_TONE_WAIT, oc.extension)
            oc._fail(503, "Service Unavailable", "no_dial_tone")
            return "no_dial_tone"
        left -= 1
        yield None
        call.check()
    oc._set("early")
    digits = dial_audio(oc.number)
    for i in range(0, len(digits), FRAME):
        end.pull()                    # the phone is not heard while dialling
        yield digits[i:i + FRAME]
        if end.closed:
            return "cancelled"
        call.check()
        end.push(call.heard)
    return "dialled"


def _progress(oc: OutboundCall, call: Call, end) -> Flow:
    """Bridge both ways and listen for what the line does; the call's outcome."""
    listener = call.listener
    vad = listener.vad
    ringback = 0                      # frames of ringback heard
    quiet = 0                         # frames with no tone at all
    voice = 0
    need_voice = _frames(VOICE_ANSWER)
    # The dial tone heard before dialling may still be "current" for a moment after a
    # short number (its occurrence ends 0.3 s after it stops); only a dial tone that
    # comes back is progress. One that never stops: the exchange took no digits.
    old_dial = listener.tone == "dial"
    old_dial_frames = 0
    while True:
        frame = end.pull()
        yield frame
        if end.closed:
            return "cancelled"
        call.check()
        end.push(call.heard)
        tone = listener.tone
        if tone == "dial" and old_dial:
            old_dial_frames += 1
            if old_dial_frames < _frames(DIAL_TONE_WAIT):
                continue
        elif old_dial:
            old_dial = False
        if tone in TONE_RESULTS:
            status, reason, result = TONE_RESULTS[tone]
            oc._fail(status, reason, result)
            return result
        if tone == "ringback":
            ringback += 1
            if ringback >= _frames(RINGBACK_LIMIT):
                oc._fail(480, "Temporarily Unavailable", "no_answer")
                return "no_answer"
            continue
        if ringback:
            return "answered"                   # the ringback is over: someone answered
        quiet += 1
        # Voice, not a tone's first burst (no tone is being matched), while the phone is
        # quiet (the hybrid's echo of the phone's voice is no answer).
        talking = vad.active and not listener.progress.sounding
        if talking and sum(map(_mul, frame, frame)) < _PHONE_QUIET:
            voice += 1
            if voice >= need_voice:
                return "answered"
        else:
            voice = 0
        if quiet >= _frames(NO_PROGRESS_ANSWER):
            return "answered"
