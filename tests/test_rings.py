"""RingCounter: one count per ring of the plan's cadence, and when the caller gave up."""

from pathlib import Path

import pytest

from linebox.calls.rings import RingCounter
from linebox.dsp.plans import PLAN_NAMES, get_plan
from linebox.events import Bus
from linebox.sim.exchange import SimExchange
from linebox.sim.scenario import parse_scenario

FRAME_S = 0.02


def frames(seconds: float) -> int:
    return round(seconds / FRAME_S)


def cadence_signal(plan: str, periods: int) -> list[bool]:
    """The ring signal, per frame, of ``periods`` whole cadence periods."""
    out = []
    for _ in range(periods):
        for i, s in enumerate(get_plan(plan).ring_cadence):
            out += [i % 2 == 0] * frames(s)
    return out


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_counts_each_ring_of_the_simulated_exchange_once_at_its_start(plan):
    sc = parse_scenario({"call": [{"line": 1, "give_up_after_rings": 4}]}, Path("."), "t")
    ex = SimExchange(sc, {1: plan}, Bus())
    rc = RingCounter(plan)
    counted, stopped_at = [], None
    while stopped_at is None:
        n = rc.feed(ex.line(1).tick().ringing)
        if n is not None:
            counted.append((n, round(ex.now, 2)))
        if rc.stopped:
            stopped_at = round(ex.now, 2)
        ex.advance()
    period = sum(get_plan(plan).ring_cadence)
    assert counted == [(k + 1, round(k * period, 2)) for k in range(4)]
    # Stopped = the longest quiet plus its margin after the last ringing frame.
    last_ring_end = 3 * period + (period - get_plan(plan).ring_cadence[-1])
    assert stopped_at == pytest.approx(last_ring_end + rc.stop_frames * FRAME_S, abs=1e-9)


def test_uk_double_ring_counts_as_one_ring():
    rc = RingCounter("uk")
    counts = [rc.feed(r) for r in cadence_signal("uk", 3)]
    assert [(i, n) for i, n in enumerate(counts) if n] == [(0, 1), (150, 2), (300, 3)]


def test_us_ring_with_one_dropped_frame_is_still_one_ring():
    rc = RingCounter("us")
    sig = cadence_signal("us", 2)
    sig[50] = False                     # a detector missed a frame in the middle of ring 1
    sig[51] = False
    counts = [n for n in map(rc.feed, sig) if n]
    assert counts == [1, 2]


def test_a_burst_after_a_quiet_longer_than_the_merge_window_is_a_new_ring():
    rc = RingCounter("us")
    sig = [True] * 10 + [False] * rc.merge_frames + [True] * 10
    assert [n for n in map(rc.feed, sig) if n] == [1, 2]
    rc.reset()
    sig = [True] * 10 + [False] * (rc.merge_frames - 1) + [True] * 10
    assert [n for n in map(rc.feed, sig) if n] == [1]


def test_in_gap_is_true_between_bursts_only():
    rc = RingCounter("us")
    seen = []
    for r in [False] * 3 + [True] * 100 + [False] * 5:
        rc.feed(r)
        seen.append(rc.in_gap)
    assert seen == [False] * 103 + [True] * 5


def test_stopped_after_longest_quiet_plus_margin_then_a_new_ring_counts_from_one():
    rc = RingCounter("de")
    assert rc.stop_frames == frames(4.0 + 1.0)
    for r in [True] * 50:
        rc.feed(r)
    for _ in range(rc.stop_frames):
        rc.feed(False)
        assert not rc.stopped
    rc.feed(False)
    assert rc.stopped and not rc.in_gap and rc.count == 1
    assert rc.feed(True) == 1
    assert rc.count == 1 and not rc.stopped


def test_no_ring_yet_is_neither_in_gap_nor_stopped():
    rc = RingCounter("fr")
    for _ in range(1000):
        assert rc.feed(False) is None
    assert (rc.count, rc.in_gap, rc.stopped) == (0, False, False)


def test_reset_makes_the_next_ring_number_one():
    rc = RingCounter("eu")
    assert rc.feed(True) == 1
    rc.reset()
    assert rc.count == 0
    assert rc.feed(True) == 1


def test_unknown_plan_is_refused():
    with pytest.raises(ValueError, match="unknown tone plan 'xx'"):
        RingCounter("xx")
