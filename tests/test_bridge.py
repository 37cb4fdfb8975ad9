"""The gateway's audio bridge: two legs on two clocks, a FIFO each way with drift
handling, closing from either side, the echo suppressor on the line→phone way, and the
`bridged` call flow run by two real call engines."""

import threading
from array import array

from linebox import FRAME
from linebox.calls.engine import LineRunner
from linebox.dsp import gen
from linebox.dsp.echo import COMFORT_MAX_DBM0, COMFORT_MIN_DBM0, EchoSuppressor
from linebox.dsp.levels import dbm0
from linebox.events import Bus
from linebox.gateway.bridge import (
    KEEP_DECAY_PULLS,
    MAX_BACKLOG,
    TRIM_WINDOW_FRAMES,
    Bridge,
    bridged,
)
from linebox.hw.fxo import tone_level_dbm0 as tone_power
from linebox.hw.line import SILENT_FRAME, HungUp, Line, Tick


def _frame(value: int) -> array:
    return array("h", [value] * FRAME)


def test_frames_cross_in_order_and_an_empty_fifo_plays_silence():
    b = Bridge(echo=None)
    for v in (1, 2, 3):
        b.line_end.push(_frame(v))
    assert [b.phone_end.pull()[0] for _ in range(4)] == [1, 2, 3, 0]
    assert b.phone_end.underruns == 1 and b.phone_end.drops == 0
    b.phone_end.push(_frame(9))
    assert b.line_end.pull()[0] == 9 and b.line_end.pull() == SILENT_FRAME


def test_a_pushed_frame_is_copied_so_the_pusher_may_reuse_its_buffer():
    b = Bridge(echo=None)
    buf = _frame(5)
    b.phone_end.push(buf)
    buf[0] = 99
    assert b.line_end.pull()[0] == 5


def test_backlog_beyond_the_limit_drops_the_oldest_and_counts_it():
    b = Bridge(echo=None)
    for v in range(1, 7):
        b.phone_end.push(_frame(v))
    assert b.line_end.drops == 6 - MAX_BACKLOG
    assert [b.line_end.pull()[0] for _ in range(MAX_BACKLOG)] == [4, 5, 6]


def test_a_standing_backlog_of_two_frames_is_trimmed_once_a_window():
    # The phone's clock runs a little fast: it has pushed one frame ahead all along.
    b = Bridge(echo=None)
    b.phone_end.push(_frame(0))
    got = []
    for i in range(1, TRIM_WINDOW_FRAMES + 1):
        b.phone_end.push(_frame(i))
        got.append(b.line_end.pull()[0])
    assert b.line_end.drops == 1
    assert b.line_end.backlog == 0          # the standing frame is gone
    assert got[-1] == TRIM_WINDOW_FRAMES    # and the newest frame played with no delay


def test_a_backlog_of_one_frame_is_no_standing_latency_and_is_kept():
    b = Bridge(echo=None)
    for i in range(3 * TRIM_WINDOW_FRAMES):
        b.phone_end.push(_frame(i))
        assert b.line_end.pull()[0] == i
    assert b.line_end.drops == 0 and b.line_end.underruns == 0


def test_pushes_now_and_then_late_cost_one_underrun_not_a_drop_each_time():
    # The two legs' slots are close together: now and then the line's push comes just
    # after the phone's pull (its thread woke late). The first costs a silent frame;
    # then the FIFO keeps the frame it left standing instead of dropping one a second
    # later and running dry again at the next late push.
    b = Bridge(echo=None)
    got = []
    n = 2000
    for i in range(1, n + 1):
        if i % 80 == 0:           # (less often than the trim window)
            got.append(b.line_end.pull()[0])
            b.phone_end.push(_frame(i))
        else:
            b.phone_end.push(_frame(i))
            got.append(b.line_end.pull()[0])
    heard = [v for v in got if v]
    assert heard == sorted(heard) and len(heard) + b.line_end.drops + b.line_end.backlog == n
    # (Keeping one frame less after KEEP_DECAY_PULLS quiet pulls sheds that frame and
    # the next late push runs dry once more: a few times in 2000 frames.)
    assert b.line_end.underruns <= n // KEEP_DECAY_PULLS + 1
    assert b.line_end.drops <= n // KEEP_DECAY_PULLS
    assert b.line_end.backlog <= 1


def test_closing_one_end_tells_the_other_with_the_cause():
    b = Bridge(echo=None)
    heard = []
    b.on_close(lambda cause, end: heard.append((cause, end.name)))
    b.line_end.close("busy")
    b.phone_end.close("bye")                   # too late: the first cause stays
    assert b.phone_end.closed and b.phone_end.cause == "busy"
    assert b.phone_end.closed_by_other and not b.line_end.closed_by_other
    assert heard == [("busy", "line")]
    late = []
    b.on_close(lambda cause, end: late.append(cause))
    assert late == ["busy"]
    b.line_end.push(_frame(1))                 # a closed bridge takes nothing more
    assert b.phone_end.backlog == 0


def test_two_threads_lose_no_frame_except_those_counted():
    b = Bridge(echo=None)
    n = 3000

    def producer():
        for i in range(1, n + 1):
            b.phone_end.push(_frame(i))

    t = threading.Thread(target=producer)
    t.start()
    got = []
    while t.is_alive() or b.line_end.backlog:
        v = b.line_end.pull()[0]
        if v:
            got.append(v)
    t.join()
    assert got == sorted(got)
    assert len(got) + b.line_end.drops == n


def test_echo_of_the_phone_is_muted_and_the_caller_talking_over_it_passes():
    b = Bridge()
    phone_voice = gen.tone([700], 1.0, -10.0)
    caller = gen.tone([1000], 1.0, -12.0)
    echo_only, double_talk = [], []
    for i in range(0, len(phone_voice), FRAME):
        b.phone_end.push(phone_voice[i:i + FRAME])
        played = b.line_end.pull()
        echo = array("h", (s // 16 for s in played))       # the hybrid: 24 dB down
        b.line_end.push(echo)
        echo_only.append(b.phone_end.pull())
    for i in range(0, len(phone_voice), FRAME):
        b.phone_end.push(phone_voice[i:i + FRAME])
        played = b.line_end.pull()
        mixed = array("h", (s // 16 + c for s, c in zip(played, caller[i:i + FRAME], strict=True)))
        b.line_end.push(mixed)
        double_talk.append(b.phone_end.pull())
    # Muted, the first pull met an empty FIFO; what replaces the echo is comfort noise
    # at the (digitally quiet) line's floor, not the echo and not dead silence.
    muted = array("h")
    for f in echo_only[2:]:
        muted.extend(f)
    assert all(f != SILENT_FRAME for f in echo_only[2:])
    assert abs(dbm0(muted) - COMFORT_MIN_DBM0) < 1.0
    assert tone_power(muted, 700) < COMFORT_MIN_DBM0 - 10
    heard = array("h")
    for f in double_talk[5:]:
        heard.extend(f)
    assert abs(tone_power(heard, 1000) - (-12.0)) < 1.5
    assert b.stats()["echo_suppressed"] >= len(echo_only) - 2


def _suppress(es, line_audio, far_audio):
    out = array("h")
    for i in range(0, len(line_audio) - FRAME + 1, FRAME):
        es.reference(far_audio[i:i + FRAME])
        out.extend(es.process(line_audio[i:i + FRAME]))
    return out


def test_the_muted_echo_is_comfort_noise_at_the_line_s_background_level():
    background = gen.white_noise(2.0, -60.0, seed=3)
    phone_voice = gen.tone([700], 2.0, -10.0)
    es = EchoSuppressor()
    # The phone user quiet first (the line's background is learnt), then talking: the
    # line returns their voice 24 dB down over the hiss.
    _suppress(es, background[:8000], gen.silence(1.0))
    echo = array("h", (b + s // 16 for b, s in zip(background, phone_voice, strict=True)))
    out = _suppress(es, echo, phone_voice)
    assert es.suppressed >= len(out) // FRAME - 1
    assert abs(dbm0(out) - (-60.0)) < 2.0                   # the hiss goes on...
    assert tone_power(out, 700) < -75                        # ...the echo does not
    assert es.comfort_dbm0 == -60


def test_comfort_noise_stays_below_its_ceiling_on_a_noisy_line_and_can_be_off():
    hiss = gen.white_noise(1.0, -35.0, seed=4)
    phone_voice = gen.tone([700], 1.0, -5.0)
    es = EchoSuppressor()
    _suppress(es, hiss, gen.silence(1.0))
    # (A -35 dBm0 line with a 24 dB hybrid: its echo is under the hiss, all muted.)
    quiet = array("h", (s // 200 for s in phone_voice))
    out = _suppress(es, quiet, phone_voice)
    assert es.suppressed >= 45
    assert abs(dbm0(out[5 * FRAME:]) - COMFORT_MAX_DBM0) < 1.0
    off = EchoSuppressor(comfort_noise=False)
    assert _suppress(off, array("h", (s // 16 for s in phone_voice)), phone_voice)[FRAME:] \
        == array("h", bytes(2 * (len(phone_voice) - FRAME)))


def test_without_a_suppressor_the_echo_reaches_the_phone():
    b = Bridge(echo=None)
    b.phone_end.push(gen.tone([700], 0.02, -10.0))
    played = b.line_end.pull()
    b.line_end.push(array("h", (s // 16 for s in played)))
    assert abs(dbm0(b.phone_end.pull()) - (-10.0 - 24.1)) < 0.5


class ScriptLine(Line):
    """A line that hears ``source`` (then silence), keeps what was played, and reports
    ``hangup`` at frame ``hangup_at``."""

    def __init__(self, source: array, hangup_at: int | None = None, hangup="busy") -> None:
        super().__init__(1)
        self.source = source
        self.played = array("h")
        self.n = 0
        self.hangup_at, self.hangup = hangup_at, hangup

    def tick(self, out=None) -> Tick:
        self.played.extend(out if out is not None else SILENT_FRAME)
        i = self.n * FRAME
        self.n += 1
        audio = self.source[i:i + FRAME]
        if len(audio) < FRAME:
            audio = array("h", SILENT_FRAME)
        events = (HungUp(self.hangup),) if self.n == self.hangup_at else ()
        return Tick(audio=audio, events=events)


def _runner(line, bus, end, result, silence_end=None):
    def flow(call):
        try:
            result.append(("returned", (yield from bridged(call, end, silence_end))))
        except Exception as e:
            result.append(("raised", type(e).__name__, str(e)))
            raise
    r = LineRunner(line, 1, "us", bus, flow, rings_needed=lambda: 0)
    r.start_call(flow)
    return r


def test_two_call_engines_bridged_hear_each_other_and_the_hangup_ends_both():
    bus = Bus()
    events = []
    bus.subscribe(events.append)
    b = Bridge()
    analog = ScriptLine(gen.tone([1000], 2.0, -12.0), hangup_at=100, hangup="loop")
    phone = ScriptLine(gen.tone([700], 2.0, -12.0))
    ra_result, rp_result = [], []
    ra = _runner(analog, bus, b.line_end, ra_result)
    rp = _runner(phone, bus, b.phone_end, rp_result)
    for _ in range(120):
        if ra.flow is not None:
            ra.step()
        if rp.flow is not None:
            rp.step()
    assert ra.flow is None and rp.flow is None        # both legs hung up
    assert ra_result == [("raised", "Hangup", "loop")]
    assert rp_result == [("returned", "loop")]
    # Each side played the other's tone (after a frame or two of FIFO), at its level.
    assert abs(tone_power(phone.played[5 * FRAME:90 * FRAME], 1000) - (-12.0)) < 1.0
    assert abs(tone_power(analog.played[5 * FRAME:90 * FRAME], 700) - (-12.0)) < 1.0
    assert tone_power(phone.played[5 * FRAME:90 * FRAME], 700) < -40


def test_a_bridged_leg_with_nobody_talking_ends_on_silence():
    bus = Bus()
    b = Bridge()
    quiet = ScriptLine(array("h"))
    result = []
    r = _runner(quiet, bus, b.line_end, result, silence_end=2.0)
    frames = 0
    while r.flow is not None and frames < 500:
        r.step()
        frames += 1
    assert result == [("raised", "Hangup", "silence")]
    assert 99 <= frames <= 102          # 2 s of 20 ms frames
    assert b.closed and b.cause == "silence"


def test_a_leg_reset_from_outside_closes_the_bridge():
    bus = Bus()
    b = Bridge()
    r = _runner(ScriptLine(array("h")), bus, b.line_end, [])
    r.step()
    r.hang_up()                          # e.g. a line fault
    assert b.closed and b.closed_by is b.line_end


# -- the ring attempt: exactly one of "a phone answered" and "the line gave up" wins ----

def test_the_first_phone_to_answer_gets_the_bridge_and_a_later_one_nothing():
    from linebox.gateway.phones import RingAttempt
    a = RingAttempt(1, ("201", "202"), None)
    first = a.answered("201")
    assert first is not None and a.extension == "201"
    assert a.answered("202") is None
    assert a.cancel("voicemail") is False            # the call is the phone's
    assert a.state == "answered"


def test_a_phone_answering_after_the_line_gave_up_gets_nothing():
    from linebox.gateway.phones import RingAttempt

    class Recorded(RingAttempt):
        stopped: list = []

        def _stop_ringing(self, reason):
            self.stopped.append(reason)
    a = Recorded(1, ("201",), None)
    assert a.cancel("voicemail") is True
    assert a.answered("201") is None and a.bridge is None
    assert a.stopped == ["voicemail"]
    assert a.cancel("again") is True and a.stopped == ["voicemail"]   # told once


def test_phones_show_the_line_until_the_caller_id_is_known():
    from linebox.caller import CallerId
    from linebox.gateway.phones import Phones

    class P(Phones):
        def ring(self, *a):
            return None
    p = P()
    assert p.caller_display(1, None) == ("Line 1", "line1")
    assert p.caller_display(2, CallerId(number="5551234567")) == ("Line 2", "5551234567")
    assert p.caller_display(1, CallerId(number="555", name="JOHN DOE")) == ("JOHN DOE", "555")


def test_the_bridged_phone_leg_sheds_a_standing_frame_of_jitter_buffer():
    import socket
    import struct

    from linebox.dsp import g711
    from linebox.sip.rtp import JB_TRIM_WINDOW as TRIM_WINDOW_FRAMES
    from linebox.sip.sdp import Media
    from linebox.sip.uac import BridgedSipLine

    ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ours.bind(("127.0.0.1", 0))
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    media = Media("127.0.0.1", phone.getsockname()[1], "PCMU", 0, None, "sendrecv")
    now = [0.0]
    line = BridgedSipLine(ours, media, "127.0.0.1", clock=lambda: now[0], sleep=lambda s: None)
    to = ours.getsockname()

    def send(k):
        frame = array("h", [1000 + 50 * (k % 100)] * FRAME)
        phone.sendto(struct.pack("!BBHII", 0x80, 0, k, 160 * k, 5) + g711.ulaw_encode(frame), to)

    # A hiccup: two packets arrive together, then one each frame: one always waits.
    send(0)
    send(1)
    k = 2
    import time
    for _ in range(3 * TRIM_WINDOW_FRAMES):
        time.sleep(0.001)
        line.tick(None)
        now[0] += 0.02
        send(k)
        k += 1
    assert line.trimmed >= 1
    time.sleep(0.001)
    line.tick(None)
    assert len(line._buffer) <= 1
    ours.close()
    phone.close()
