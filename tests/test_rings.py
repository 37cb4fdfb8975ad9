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


# -- UK: caller ID before the first ring (BT SIN 227), through the real firmware ----------

UK_CALL = ('[[call]]\nline = 1\nat = 1\ncaller = {{ number = "01632960123", name = "JOHN DOE" }}\n'
           'give_up_after_rings = {give_up}\nsteps = [ {{ wait = "beep" }}, {{ silence = 1 }}, '
           '{{ hangup = "busy" }} ]\n')


def _uk_run(tmp_path, give_up=6, rings=2):
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from simkit import Sim
    sim = Sim(tmp_path, lines=((1, "100", "uk"),), rings=rings)
    return sim.run(UK_CALL.format(give_up=give_up))


def _seq(events):
    return [(e["event"], e.get("n")) for e in events if e["event"] in ("callerid", "ring", "answer")]


def test_uk_line_takes_caller_id_before_ring_one_and_counts_rings_as_ever(tmp_path):
    events = _uk_run(tmp_path)
    assert _seq(events) == [("callerid", None), ("ring", 1), ("ring", 2), ("answer", None)]
    cid = next(e for e in events if e["event"] == "callerid")
    assert (cid["number"], cid["name"]) == ("01632960123", "JOHN DOE")
    answer = next(e for e in events if e["event"] == "answer")
    assert (answer["after_rings"], answer["caller_number"]) == (2, "01632960123")


def test_uk_caller_id_is_heard_from_the_alert_tone_where_the_line_shows_no_reversal(tmp_path, monkeypatch):
    # An FXO line without a polarity input: the alert tone on the idle line starts listening.
    import linebox.sim.exchange as exchange

    class NotAReversal:
        pass

    monkeypatch.setattr(exchange, "LineReversal", NotAReversal)
    events = _uk_run(tmp_path)
    assert _seq(events) == [("callerid", None), ("ring", 1), ("ring", 2), ("answer", None)]


def test_uk_missed_call_keeps_the_caller_from_before_the_first_ring(tmp_path):
    events = _uk_run(tmp_path, give_up=1, rings=4)
    missed = [e for e in events if e["event"] == "missed_call"]
    assert len(missed) == 1 and missed[0]["caller_number"] == "01632960123"


def test_a_reversal_with_no_ring_after_it_leaves_the_line_idle():
    from array import array

    from linebox.calls.engine import PRE_RING_SECONDS, LineRunner
    from linebox.hw.line import SILENT_FRAME, Line, LineReversal, Tick

    class Quiet(Line):
        def __init__(self):
            super().__init__(1, "uk")
            self.k = 0

        def tick(self, out=None):
            self.k += 1
            return Tick(array("h", SILENT_FRAME), events=(LineReversal(),) if self.k == 1 else ())

    bus = Bus()
    seen = []
    bus.subscribe(seen.append)
    runner = LineRunner(Quiet(), 1, "uk", bus, lambda call: iter(()), lambda: 2)
    runner.step()
    assert runner.busy                       # listening for caller ID
    for _ in range(frames(PRE_RING_SECONDS) + 1):
        runner.step()
    assert not runner.busy and runner.listener is None
    assert [e for e in seen if e["event"] in ("ring", "callerid", "missed_call")] == []
