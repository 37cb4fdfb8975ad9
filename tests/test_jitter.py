"""The bridged phone leg's audio path: an adaptive jitter buffer pulled on the analog
line's clock (depth follows the packets' jitter, recovers from a stall and its burst,
stays bounded when the two clocks drift either way), and a bridged call whose frames
cross in the next slot each way whatever the phase of the two legs."""

import random
import socket
import struct
import time
from array import array

from linebox import FRAME
from linebox.calls.engine import Hangup, LineRunner
from linebox.dsp import g711
from linebox.events import Bus
from linebox.gateway.bridge import Bridge, bridged
from linebox.hw.line import SILENT_FRAME, Line, Tick
from linebox.sip.rtp import JB_DECAY_PULLS, JB_KEEP_MAX, JB_TRIM_WINDOW, JitterBuffer
from linebox.sip.sdp import Media
from linebox.sip.uac import BridgedSipLine

SLOT = 0.02


def _play(jb, arrivals, pulls):
    """Feed ``arrivals`` [(time, frame number)] and pull at ``pulls`` [time], in time
    order (a packet and a pull at the same instant: the packet first). Returns, per
    pull, (seconds the frame played waited since it came, frame number played or None,
    depth before the pull)."""
    events = sorted([(t, 0, k) for t, k in arrivals] + [(t, 1, None) for t in pulls])
    came = {}
    out = []
    for t, kind, k in events:
        if kind == 0:
            came[k] = t
            jb.put(1000 + FRAME * k, k.to_bytes(4, "big"), t)
        else:
            depth = jb.depth
            p = jb.take(t)
            k = None if p is None else int.from_bytes(p[:4], "big")
            out.append((None if k is None else t - came[k], k, depth))
    return out


def _delays(played):
    """Whole slots each played frame waited beyond the first pull after it came."""
    return [int(w / SLOT) for w, k, _ in played if k is not None]


def test_a_steady_stream_plays_each_frame_at_the_first_pull_after_it_came():
    jb = JitterBuffer()
    n = 500
    played = _play(jb, [(k * SLOT + 0.003, k) for k in range(n)],
                   [k * SLOT + 0.015 for k in range(n)])
    assert [k for _, k, _ in played] == list(range(n))     # none lost, none repeated
    assert set(_delays(played)) == {0}
    assert jb.underruns == jb.lost == jb.trimmed == jb.late == 0
    assert jb.keep == 1 and max(d for *_, d in played) == 1


def test_the_depth_follows_the_jitter_and_stops_the_underruns():
    rnd = random.Random(12)
    n = 1500
    pulls = [k * SLOT + 0.010 for k in range(n)]
    # Packets up to 25 ms late (a busy Wi-Fi hop): more than the 10 ms margin a frame
    # waits for its pull, so a fixed one-frame buffer keeps running dry.
    jittery = [(k * SLOT + rnd.uniform(0.0, 0.025), k) for k in range(n)]
    jb = JitterBuffer()
    played = _play(jb, jittery, pulls)
    assert jb.jitter > 0.004                     # the RFC 3550 estimate saw it
    assert jb.keep >= 2                          # and the buffer holds a frame more for it
    early = sum(1 for _, k, _ in played[:500] if k is None)
    late = sum(1 for _, k, _ in played[-500:] if k is None)
    assert early >= 1 and late <= 1              # it ran dry at first, then hardly
    assert max(_delays(played[-500:])) <= 3      # without piling up latency
    assert jb.lost + jb.trimmed <= 10            # and without throwing audio away

    # The same packets without the jitter: one frame is all it keeps.
    calm = JitterBuffer()
    _play(calm, [(k * SLOT, k) for k in range(n)], pulls)
    assert calm.keep == 1 and calm.underruns == 0


def test_a_lone_late_packet_costs_a_silent_frame_and_no_lasting_delay():
    jb = JitterBuffer()
    arrivals = [(k * SLOT + (0.025 if k == 100 else 0.002), k) for k in range(600)]
    played = _play(jb, arrivals, [k * SLOT + 0.010 for k in range(600)])
    assert [k for _, k, _ in played[:102]] == list(range(100)) + [None, 100]
    assert jb.underruns == 1 and jb.lost == 0
    # A spike, not jitter: it keeps one frame, and the one frame the wait left standing
    # is shed within two trim windows (not after seconds of 20 ms more delay).
    assert jb.keep == 1 and jb.trimmed == 1
    assert max(_delays(played[100 + 2 * JB_TRIM_WINDOW:])) == 0


def test_the_puller_catching_up_after_its_own_stalls_does_not_deepen_the_buffer():
    # The line's thread stalls 400 ms every 4 s, then runs its late slots back to
    # back: the buffer overflows (it holds JB_KEEP_MAX) and the catching-up pulls run it
    # dry, faster than any sender. No packet was late: that is no jitter to keep for.
    jb = JitterBuffer()
    n = 3000
    pulls = []
    for k in range(n):
        t = k * SLOT + 0.010
        if k % 200 in range(100, 120):
            t = (k - k % 200 + 120) * SLOT + 0.001 * (k % 200 - 100)   # all at once
        pulls.append(t)
    played = _play(jb, [(k * SLOT + 0.002, k) for k in range(n)], pulls)
    assert jb.underruns >= 5 and jb.trimmed >= 5       # it did overflow and run dry
    assert jb.keep == 1
    assert max(_delays(played[-60:])) == 0             # (after the last stall)


def test_a_stall_and_its_burst_cost_silence_then_the_latency_goes_back_down():
    jb = JitterBuffer()
    arrivals = [(k * SLOT + 0.002, k) for k in range(100)]
    arrivals += [(100 * SLOT + 0.2, k) for k in range(100, 110)]     # 200 ms stall, then all at once
    arrivals += [(k * SLOT + 0.002, k) for k in range(110, 1000)]
    played = _play(jb, arrivals, [k * SLOT + 0.010 for k in range(1000)])
    stall = [k for _, k, _ in played[100:110]]
    assert stall.count(None) >= 9                      # silence while nothing came
    # Within two trim windows of the burst the backlog is down to one frame more than
    # before (one stall is not much jitter)...
    after = played[110 + 2 * JB_TRIM_WINDOW:]
    assert max(_delays(after)) <= 1 and max(d for *_, d in after) <= 2
    # ...by dropping it once, not frame by frame, and nothing else is lost but the frame
    # shed when it keeps one frame less again (below).
    assert 1 <= jb.trimmed <= 10 and jb.lost == 0
    ks = [k for _, k, _ in after]
    assert ks == sorted(ks) and 1000 - after[0][1] - len(ks) <= 1
    # And once steady a while, it keeps one frame again: no waiting beyond the pull.
    steady = played[110 + JB_DECAY_PULLS + 2 * JB_TRIM_WINDOW:]
    assert jb.keep == 1 and max(_delays(steady)) == 0 and max(d for *_, d in steady) == 1
    assert jb.underruns == stall.count(None)


def test_a_sender_clock_faster_than_the_line_keeps_the_depth_bounded():
    jb = JitterBuffer()
    n = 5000
    fast = 1.002                                       # 0.2 %: a frame every 10 s
    played = _play(jb, [(k * SLOT / fast, k) for k in range(int(n * fast))],
                   [k * SLOT + 0.010 for k in range(n)])
    depths = [d for *_, d in played]
    assert max(depths) <= 2 + 1                        # never a queue that grows
    assert jb.underruns == 0
    # What the drift needs and no more: one frame shed for each one it gained.
    assert abs(jb.trimmed - (n * (fast - 1))) <= 2
    assert max(_delays(played[-100:])) <= 1


def test_a_sender_clock_slower_than_the_line_plays_a_silent_frame_now_and_then():
    jb = JitterBuffer(decay_pulls=JB_DECAY_PULLS)
    n = 5000
    slow = 0.998
    played = _play(jb, [(k * SLOT / slow, k) for k in range(int(n * slow))],
                   [k * SLOT + 0.010 for k in range(n)])
    gaps = sum(1 for _, k, _ in played if k is None)
    assert abs(gaps - n * (1 - slow)) <= 2             # one silent frame per frame of drift
    assert jb.trimmed == 0 and jb.lost == 0            # and every frame the phone sent played
    assert max(d for *_, d in played) <= 2
    assert max(_delays(played)) <= 1


def test_a_packet_that_never_comes_is_skipped_and_a_late_one_dropped():
    jb = JitterBuffer()
    arrivals = [(k * SLOT, k) for k in range(50) if k != 20] + [(30 * SLOT + 0.001, 20)]
    played = _play(jb, arrivals, [k * SLOT + 0.010 for k in range(50)])
    ks = [k for _, k, _ in played]
    # Frame 21 was not there yet at 20's pull: one silent frame, then 20 is given up for
    # 21 (no later for it than it would have been), and 20 coming after all is too late.
    assert ks[:20] == list(range(20)) and ks[20] is None and ks[21:] == list(range(21, 50))
    assert max(_delays(played)) == 0
    assert jb.lost == 1 and jb.late == 1


def test_the_depth_never_exceeds_its_limit():
    jb = JitterBuffer()
    for k in range(40):
        jb.put(FRAME * k, b"x" * FRAME, 0.0)
    jb.take()
    assert jb.depth <= JB_KEEP_MAX


# -- the bridge, one frame at a time, both orders of the two legs' slots --------------------
class _Line(Line):
    """An analog line hearing a marker in frame ``mark_at``; ``played[i]`` what its tick i played."""

    def __init__(self, mark_at: int) -> None:
        super().__init__(1)
        self.n = 0
        self.mark_at = mark_at
        self.played = []

    def tick(self, out=None) -> Tick:
        self.played.append(out)
        self.n += 1
        value = 8000 if self.n - 1 == self.mark_at else 0
        return Tick(audio=array("h", [value] * FRAME))


def _marked(frame) -> bool:
    return frame is not None and max(abs(s) for s in frame) > 4000


def _bridged_call(line_first: bool):
    ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ours.bind(("127.0.0.1", 0))
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    phone.setblocking(False)
    media = Media("127.0.0.1", phone.getsockname()[1], "PCMU", 0, None, "sendrecv")
    now = [0.0]
    sip = BridgedSipLine(ours, media, "127.0.0.1", clock=lambda: now[0], sleep=lambda s: None)
    bridge = Bridge(echo=None)
    bus = Bus()

    def leg(end):
        def flow(call):
            try:
                yield from bridged(call, end)
            except Hangup:
                return
        return flow
    analog = _Line(mark_at=30)
    line_runner = LineRunner(analog, 1, "us", bus, leg(bridge.line_end), rings_needed=lambda: 0)
    line_runner.start_call(leg(bridge.line_end))
    sip_runner = LineRunner(sip, None, "us", bus, leg(bridge.phone_end), rings_needed=lambda: 0)
    sip_runner.start_call(leg(bridge.phone_end), listen=False)
    to = ours.getsockname()
    mark, quiet = g711.ulaw_encode(array("h", [8000] * FRAME)), g711.ulaw_encode(SILENT_FRAME)
    sent_in = []          # slot in which each RTP packet we sent left
    heard_marker_in = None
    phone_mark_slot = 40
    for slot in range(80):
        phone.sendto(struct.pack("!BBHII", 0x80, 0, slot, 160 * slot, 5)
                     + (mark if slot == phone_mark_slot else quiet), to)
        time.sleep(0.002)                  # (the loopback delivers it)
        legs = [lambda: line_runner.step(), lambda: sip_runner.process(sip.tick(sip_runner.out))]
        for step in (legs if line_first else legs[::-1]):
            step()
        now[0] += SLOT
        while True:
            try:
                data = phone.recv(2048)
            except BlockingIOError:
                break
            sent_in.append(slot)
            if heard_marker_in is None and _marked(g711.ulaw_decode(data[12:])):
                heard_marker_in = slot
    played_in = next(i for i, f in enumerate(analog.played) if _marked(f))
    ours.close()
    phone.close()
    return heard_marker_in - analog.mark_at, played_in - phone_mark_slot


def test_a_bridged_call_crosses_in_the_next_slot_each_way_whatever_the_legs_order():
    for line_first in (True, False):
        up, down = _bridged_call(line_first)
        # Line → phone: in the first packet that leaves after the line heard it (the
        # same slot when the phone's leg comes second in it, else the next).
        assert up == (0 if line_first else 1), (line_first, up)
        # Phone → line: played in the line's next slot after the packet came: the
        # frame is pulled from the jitter buffer when the line plays it.
        assert down == 1, (line_first, down)
