"""The simulated exchange: rings, caller ID, the caller's steps, hang-ups, the clock.

A tiny stand-in firmware drives the lines here (answer on ring N, hang up when told);
the real call flows are tested on top of this exchange elsewhere.
"""

from array import array
from datetime import datetime
from pathlib import Path

import pytest

from linebox.calls.rings import RingCounter
from linebox.dsp import gen
from linebox.dsp.callerid import CallerIdDetector
from linebox.dsp.dtmf import DtmfDetector
from linebox.dsp.levels import dbm0
from linebox.dsp.plans import PLAN_NAMES, get_plan, tone_signal
from linebox.events import Bus
from linebox.sim.exchange import SimExchange
from linebox.sim.scenario import parse_scenario
from linebox.wavfile import write_wav

START = "2024-03-05T09:30:00"


def make(calls, plans=None, folder=Path("."), **top):
    """An exchange for ``calls`` (dicts as in the TOML), and the list of bus events."""
    data = {"call": calls, "start": START, **top}
    sc = parse_scenario(data, folder, "test")
    bus = Bus()
    events: list[dict] = []
    bus.subscribe(events.append)
    lines = {c["line"] for c in calls}
    return SimExchange(sc, plans or dict.fromkeys(lines, "us"), bus), events


def mine(events, *kinds):
    """The exchange's own events (the stand-in firmware's are left out), without ``call``."""
    return [{k: v for k, v in e.items() if k != "call"} for e in events if e["event"] in kinds]


KINDS = ("incoming", "caller_hangup", "caller_gave_up", "call_end")


class Firmware:
    """Answers each line on ring ``answer_on`` and records what it hears, per line."""

    def __init__(self, ex: SimExchange, answer_on: int | dict | None = 2):
        self.ex = ex
        self.answer_on = answer_on if isinstance(answer_on, dict) else dict.fromkeys(
            ex.line_ids, answer_on)
        self.rings = {lid: RingCounter(ex.line(lid).plan) for lid in ex.line_ids}
        self.heard: dict[int, list] = {lid: [] for lid in ex.line_ids}   # (t, Tick, off_hook)
        self.play: dict[int, array | None] = dict.fromkeys(ex.line_ids)
        self.hangup_at: dict[int, float] = {}

    def step(self) -> None:
        for lid in self.ex.line_ids:
            line = self.ex.line(lid)
            tick = line.tick(self.play[lid] if line.off_hook else None)
            self.heard[lid].append((round(self.ex.now, 2), tick, line.off_hook))
            n = self.rings[lid].feed(tick.ringing)
            if n is not None and n == self.answer_on[lid] and not line.off_hook:
                line.set_hook(True)
                self.rings[lid].reset()
            if line.off_hook and lid in self.hangup_at and self.ex.now >= self.hangup_at[lid]:
                line.set_hook(False)
        self.ex.advance()

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / 0.02)):
            self.step()

    def run_until_done(self, limit: float = 600.0) -> None:
        while not self.ex.done():
            assert self.ex.now < limit, "scenario did not finish"
            self.step()

    def audio(self, lid: int, t0: float = 0.0, t1: float = 1e9, off_hook: bool | None = None) -> array:
        out = array("h")
        for t, tick, oh in self.heard[lid]:
            if t0 <= t < t1 and (off_hook is None or oh == off_hook):
                out += tick.audio
        return out


def ring_runs(fw: Firmware, lid: int) -> list[tuple[float, float]]:
    """(start, end) of each stretch of ringing frames."""
    runs, start = [], None
    for t, tick, _ in fw.heard[lid]:
        if tick.ringing and start is None:
            start = t
        elif not tick.ringing and start is not None:
            runs.append((start, t))
            start = None
    return runs


def frame_levels(samples: array) -> list[float]:
    return [dbm0(samples[i:i + 160]) for i in range(0, len(samples) - 159, 160)]


# ------------------------------------------------------------------ ringing

@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_rings_follow_the_plan_cadence_until_the_caller_gives_up(plan):
    ex, events = make([{"line": 1, "give_up_after_rings": 3}], {1: plan})
    fw = Firmware(ex, answer_on=None)
    fw.run_until_done()
    cadence = get_plan(plan).ring_cadence
    period = sum(cadence)
    expected = []
    for k in range(3):
        t = k * period
        for i in range(0, len(cadence), 2):
            expected.append((round(t, 2), round(t + cadence[i], 2)))
            t += cadence[i] + cadence[i + 1]
    assert ring_runs(fw, 1) == expected
    end = round(3 * period, 2)
    assert mine(events, *KINDS) == [
        {"event": "incoming", "t": 0.0, "line": 1, "caller_number": None, "caller_name": None},
        {"event": "caller_gave_up", "t": end, "line": 1, "rings": 3},
        {"event": "call_end", "t": end, "line": 1},
    ]
    assert ex.done()
    assert all(tick.loop is None for _, tick, _ in fw.heard[1])


def test_answer_stops_the_ringing_at_once_and_loop_current_flows():
    ex, _ = make([{"line": 1, "steps": [{"wait": {"seconds": 1}}]}])
    fw = Firmware(ex, answer_on=2)
    fw.run(7.0)
    assert ring_runs(fw, 1) == [(0.0, 2.0), (6.0, 6.02)]
    after = [tick for t, tick, _ in fw.heard[1] if t >= 6.02]
    assert after and all(not tk.ringing and tk.loop is True for tk in after)
    assert ex.call_on_line(1) == 1


# ------------------------------------------------------------------ caller ID

@pytest.mark.parametrize("plan", ["us", "de", "fr", "eu"])
def test_caller_id_between_first_and_second_ring_decodes_to_the_scenario_caller(plan):
    caller = {"number": "5551234567", "name": "JOHN DOE"}
    ex, _ = make([{"line": 1, "caller": caller, "give_up_after_rings": 2}], {1: plan})
    fw = Firmware(ex, answer_on=None)
    fw.run_until_done()
    det = CallerIdDetector(get_plan(plan).callerid)
    found = []
    for _, tick, _ in fw.heard[1]:
        found += det.feed(tick.audio, sum(s * s for s in tick.audio))
    found += det.flush()
    assert len(found) == 1
    cid = found[0]
    assert (cid["number"], cid["name"], cid["datetime"]) == ("5551234567", "JOHN DOE", "03050930")
    assert (cid["standard"], cid["format"]) == (get_plan(plan).callerid, "mdmf")
    cadence = get_plan(plan).ring_cadence
    ring1_end = sum(cadence[:-1])                        # UK: the double ring is one ring
    ring2_start = sum(get_plan(plan).ring_cadence)
    assert cid["t"] == pytest.approx(ring1_end + 0.5, abs=0.03)
    # The whole burst is over before ring 2.
    audio = fw.audio(1, ring1_end, ring2_start)
    loud = [i for i, lv in enumerate(frame_levels(audio)) if lv > -40]
    assert loud and ring1_end + (loud[-1] + 1) * 0.02 <= ring2_start - 0.2 + 1e-9


def test_uk_caller_id_comes_before_the_first_ring_the_bt_way():
    # BT SIN 227: line reversal, the dual-tone alert, the V.23 burst, then the first ring.
    from linebox.dsp.alert import AlertToneDetector
    from linebox.hw.line import LineReversal
    from linebox.sim.exchange import UK_ALERT_TO_DATA, UK_DATA_TO_RING, UK_REVERSAL_TO_ALERT

    caller = {"number": "01632960123", "name": "JOHN DOE"}
    ex, events = make([{"line": 1, "caller": caller, "give_up_after_rings": 2}], {1: "uk"})
    fw = Firmware(ex, answer_on=None)
    fw.run_until_done()
    heard = fw.heard[1]
    reversals = [t for t, tick, _ in heard if any(isinstance(f, LineReversal) for f in tick.events)]
    assert reversals == [0.0]
    alert, cid = AlertToneDetector(), CallerIdDetector("v23")
    alerts, found = [], []
    for _, tick, _ in heard:
        e = sum(s * s for s in tick.audio)
        alerts += alert.feed(tick.audio, e)
        found += cid.feed(tick.audio, e)
    assert len(alerts) == 1 and len(found) == 1
    assert alerts[0]["t"] == pytest.approx(UK_REVERSAL_TO_ALERT, abs=0.003)
    assert alerts[0]["dur"] == pytest.approx(0.1, abs=0.004)
    assert found[0]["t"] == pytest.approx(UK_REVERSAL_TO_ALERT + 0.1 + UK_ALERT_TO_DATA, abs=0.003)
    assert (found[0]["number"], found[0]["name"], found[0]["standard"]) == ("01632960123", "JOHN DOE", "v23")
    # The first ring comes after the burst and its gap; then the plan's cadence, twice.
    runs = ring_runs(fw, 1)
    first = runs[0][0]
    loud = [t for t, tick, _ in heard if dbm0(tick.audio) > -40]
    assert loud[-1] + 0.02 <= first - UK_DATA_TO_RING + 0.02 + 1e-9
    cadence = get_plan("uk").ring_cadence
    assert runs == [(first, round(first + 0.4, 2)), (round(first + 0.6, 2), round(first + 1.0, 2)),
                    (round(first + 3.0, 2), round(first + 3.4, 2)), (round(first + 3.6, 2), round(first + 4.0, 2))]
    assert mine(events, "caller_gave_up")[0]["t"] == pytest.approx(first + 2 * sum(cadence))


def test_uk_line_without_caller_id_rings_at_once_without_a_reversal():
    ex, _ = make([{"line": 1, "give_up_after_rings": 1}], {1: "uk"})
    fw = Firmware(ex, answer_on=None)
    fw.run_until_done()
    assert ring_runs(fw, 1)[0][0] == 0.0
    assert all(not tick.events for _, tick, _ in fw.heard[1])


def test_caller_id_sends_reasons_for_absence():
    caller = {"number_absent": "P", "name_absent": "O"}
    ex, events = make([{"line": 1, "caller": caller, "give_up_after_rings": 2}])
    fw = Firmware(ex, answer_on=None)
    fw.run_until_done()
    det = CallerIdDetector("bell202")
    found = []
    for _, tick, _ in fw.heard[1]:
        found += det.feed(tick.audio, sum(s * s for s in tick.audio))
    assert [(c["number"], c["name"], c["number_absent"], c["name_absent"]) for c in found] == [
        (None, None, "P", "O")]


def test_no_caller_means_no_audio_before_the_answer():
    ex, _ = make([{"line": 1, "give_up_after_rings": 2}], line_noise_dbm0=False)
    fw = Firmware(ex, answer_on=None)
    fw.run_until_done()
    assert not any(fw.audio(1))


# ------------------------------------------------------------------ the caller's steps

def test_dtmf_step_after_answer_is_heard_by_the_dtmf_detector_with_the_right_digits():
    steps = [{"wait": "answer"}, {"silence": 0.5}, {"dtmf": "159#*0"}, {"dtmf": "7", "on": 0.2}]
    ex, _ = make([{"line": 1, "steps": steps}])
    fw = Firmware(ex, answer_on=1)
    fw.play[1] = gen.tone(1000.0, 0.02, -15.0)      # the firmware talks; its echo is heard too
    fw.run(5.0)
    det = DtmfDetector()
    keys = []
    for _, tick, oh in fw.heard[1]:
        if oh:
            keys += det.feed(tick.audio, sum(s * s for s in tick.audio))
    keys += det.flush()
    assert "".join(k["digit"] for k in keys) == "159#*07"
    # The detector's clock starts at the answer: 0.5 s of silence, then 0.08 on, 0.08 off.
    assert [k["t"] for k in keys[:2]] == [pytest.approx(0.5, abs=0.011),
                                          pytest.approx(0.66, abs=0.011)]
    assert keys[-1]["dur"] == pytest.approx(0.2, abs=0.03)


def test_say_step_puts_the_wav_samples_on_the_line_unchanged(tmp_path):
    speech = gen.white_noise(0.333, -20.0, seed=7)       # not a whole number of frames
    write_wav(tmp_path / "hello.wav", speech)
    steps = [{"silence": 0.01}, {"say": "hello.wav"}, {"say": "hello.wav"}]
    ex, _ = make([{"line": 1, "steps": steps}], folder=tmp_path,
                 echo_return_loss_db=False, line_noise_dbm0=False)
    fw = Firmware(ex, answer_on=1)
    fw.run(3.0)
    heard = fw.audio(1, off_hook=True)
    assert heard[:80] == array("h", bytes(160))
    assert heard[80:80 + 2 * len(speech)] == speech + speech
    assert not any(heard[80 + 2 * len(speech):])


def test_wait_beep_holds_the_caller_until_the_beep_prompt_ends():
    ex, events = make([{"line": 1, "steps": [{"wait": "beep"}, {"dtmf": "5"}]}])
    fw = Firmware(ex, answer_on=1)
    fw.run(1.0)
    ex.bus.publish({"event": "prompt", "name": "beep", "line": 1})
    fw.run(1.0)
    ex.bus.publish({"event": "prompt_end", "name": "beep", "line": 2})    # another line's
    fw.run(1.0)
    assert max(fw.audio(1, 0.0, 3.0, off_hook=True)) < 100          # only line noise so far
    end_t = ex.now
    ex.bus.publish({"event": "prompt_end", "name": "beep", "line": 1})
    fw.run(1.0)
    levels = frame_levels(fw.audio(1, end_t))
    assert levels[0] > -10 and levels[3] > -10 and levels[4] < -50


def test_wait_prompt_counts_a_prompt_that_started_while_the_caller_was_talking():
    steps = [{"silence": 2.0}, {"wait": "prompt:menu"}, {"dtmf": "1"}, {"wait": "prompt:menu"},
             {"dtmf": "2"}]
    ex, _ = make([{"line": 1, "steps": steps}])
    fw = Firmware(ex, answer_on=1)
    fw.run(1.0)
    ex.bus.publish({"event": "prompt", "name": "menu", "line": 1})   # during the silence
    fw.run(2.0)                                                      # "1" is sent at 2.0
    ex.bus.publish({"event": "prompt", "name": "greeting", "line": 1})
    fw.run(2.0)                                                      # "2" waits for "menu"
    ex.bus.publish({"event": "prompt", "name": "menu", "line": 1})
    fw.run(1.0)
    det = DtmfDetector()
    keys = []
    for _, tick, oh in fw.heard[1]:
        if oh:
            keys += det.feed(tick.audio, sum(s * s for s in tick.audio))
    assert [(k["digit"], round(k["t"], 1)) for k in keys] == [("1", 2.0), ("2", 5.0)]


def test_wait_seconds_is_virtual_time():
    ex, events = make([{"line": 1, "steps": [{"wait": {"seconds": 30}}, {"hangup": "silent"}]}])
    fw = Firmware(ex, answer_on=1)
    fw.run(31.0)
    assert mine(events, "caller_hangup") == [
        {"event": "caller_hangup", "t": 30.0, "line": 1, "how": "silent"}]


# ------------------------------------------------------------------ hang-ups

@pytest.mark.parametrize("plan, tone, runs", [
    ("us", "busy", [25] * 6), ("de", "busy", [24] * 6), ("us", "reorder", [13, 12] * 3),
    ("de", "reorder", [12] * 6), ("uk", "busy", None),
])
def test_busy_or_reorder_after_the_caller_hangs_up_follows_the_plan_cadence(plan, tone, runs):
    ex, events = make([{"line": 1, "steps": [{"silence": 0.3}, {"hangup": tone}]}], {1: plan})
    fw = Firmware(ex, answer_on=1)
    fw.run(5.0)
    assert mine(events, "caller_hangup") == [
        {"event": "caller_hangup", "t": 0.3, "line": 1, "how": tone}]
    heard = fw.audio(1, 0.32)
    # The firmware hears exactly the plan's tone (plus noise and its own silence).
    ref = tone_signal(plan, tone, len(heard) / 8000)
    diff = [a - b for a, b in zip(heard, ref, strict=True)]
    assert max(map(abs, diff)) < 40                      # line noise at -70 dBm0 only
    on = [lv > -30 for lv in frame_levels(heard)]
    seen, n = [], 1
    for a, b in zip(on, on[1:], strict=False):
        if a == b:
            n += 1
        else:
            seen.append(n)
            n = 1
    assert on[0]
    if runs is not None:                                 # UK: 0.375 s is not whole frames
        assert seen[:6] == runs
    assert all(tk.loop is True for t, tk, _ in fw.heard[1] if t >= 0.32)


def test_dial_tone_is_steady_until_the_firmware_hangs_up_and_the_call_ends():
    ex, events = make([{"line": 1, "steps": [{"hangup": "dial"}]}])
    fw = Firmware(ex, answer_on=1)
    fw.hangup_at[1] = 4.0
    fw.run_until_done()
    levels = frame_levels(fw.audio(1, 0.02, 4.0))
    assert all(-11.5 < lv < -8.5 for lv in levels)       # 350 + 440 Hz at -13 dBm0 each
    assert mine(events, "caller_hangup", "call_end") == [
        {"event": "caller_hangup", "t": 0.0, "line": 1, "how": "dial"},
        {"event": "call_end", "t": 4.0, "line": 1},
    ]
    assert ex.call_on_line(1) is None


def test_hangup_tone_stops_after_120_seconds():
    ex, _ = make([{"line": 1, "steps": [{"hangup": "busy"}]}])
    fw = Firmware(ex, answer_on=1)
    fw.run(125.0)
    assert max(frame_levels(fw.audio(1, 119.0, 120.0))) > -25
    assert max(frame_levels(fw.audio(1, 120.0))) < -60
    assert not ex.done()                                 # the firmware never hung up


def test_loop_hangup_drops_loop_current_and_the_line_goes_quiet():
    ex, events = make([{"line": 1, "steps": [{"dtmf": "1"}, {"hangup": "loop"}]}])
    fw = Firmware(ex, answer_on=1)
    fw.run(2.0)
    loops = [(t, tk.loop) for t, tk, _ in fw.heard[1]]
    # Ring 1 (on-hook), then the key press from 0.02 to 0.18; the caller hangs up at its
    # end, in the frame starting at 0.16.
    assert [lp for t, lp in loops if t < 0.16] == [None] + [True] * 7
    assert {lp for t, lp in loops if t >= 0.16} == {False}
    assert max(frame_levels(fw.audio(1, 0.18))) < -60
    assert mine(events, "caller_hangup") == [
        {"event": "caller_hangup", "t": 0.16, "line": 1, "how": "loop"}]


def test_when_the_steps_run_out_the_caller_stays_silent_on_the_line():
    ex, events = make([{"line": 1, "steps": [{"dtmf": "1"}]}])
    fw = Firmware(ex, answer_on=1)
    fw.run(20.0)
    assert not ex.done() and ex.call_on_line(1) == 1
    assert mine(events, "caller_hangup") == []
    assert all(tk.loop is True for t, tk, _ in fw.heard[1] if t > 0.2)
    assert max(frame_levels(fw.audio(1, 0.2))) < -60


def test_firmware_hanging_up_first_ends_the_call_at_once():
    ex, events = make([{"line": 1, "steps": [{"wait": {"seconds": 100}}, {"hangup": "busy"}]}])
    fw = Firmware(ex, answer_on=1)
    fw.hangup_at[1] = 3.0
    fw.run_until_done()
    assert mine(events, *KINDS) == [
        {"event": "incoming", "t": 0.0, "line": 1, "caller_number": None, "caller_name": None},
        {"event": "call_end", "t": 3.0, "line": 1},
    ]
    assert ex.now == 3.02


def test_exchange_events_carry_the_call_index():
    ex, events = make([{"line": 1, "give_up_after_rings": 1}, {"line": 1, "give_up_after_rings": 1}])
    Firmware(ex, answer_on=None).run_until_done()
    assert [(e["event"], e["call"]) for e in events] == [
        ("incoming", 1), ("caller_gave_up", 1), ("call_end", 1),
        ("incoming", 2), ("caller_gave_up", 2), ("call_end", 2)]


def test_off_hook_with_no_call_hears_dial_tone():
    ex, _ = make([{"line": 1, "at": 50}])
    line = ex.line(1)
    line.set_hook(True)
    ticks = [line.tick() for _ in range(10)]
    assert all(t.loop is True and -11.5 < dbm0(t.audio) < -8.5 for t in ticks)
    line.set_hook(False)
    assert line.tick().loop is None


# ------------------------------------------------------------------ echo and noise

@pytest.mark.parametrize("erl", [24.0, 12.0])
def test_own_output_comes_back_at_the_echo_return_loss(erl):
    ex, _ = make([{"line": 1}], echo_return_loss_db=erl, line_noise_dbm0=False)
    fw = Firmware(ex, answer_on=1)
    fw.play[1] = gen.tone(1000.0, 0.02, -10.0)
    fw.run(1.0)
    level = dbm0(fw.audio(1, 0.1, off_hook=True))
    assert level == pytest.approx(-10.0 - erl, abs=0.2)


def test_no_echo_and_no_noise_is_digital_silence():
    ex, _ = make([{"line": 1}], echo_return_loss_db=False, line_noise_dbm0=False)
    fw = Firmware(ex, answer_on=1)
    fw.play[1] = gen.tone(1000.0, 0.02, -3.0)
    fw.run(1.0)
    assert not any(fw.audio(1, off_hook=True))


def test_line_noise_is_at_the_configured_level_and_the_same_every_run():
    runs = []
    for _ in range(2):
        ex, _ = make([{"line": 1}], line_noise_dbm0=-50.0)
        fw = Firmware(ex, answer_on=1)
        fw.run(2.0)
        runs.append(fw.audio(1, off_hook=True))
    assert runs[0] == runs[1]
    assert dbm0(runs[0]) == pytest.approx(-50.0, abs=0.5)


def test_loud_caller_plus_echo_clips_instead_of_failing(tmp_path):
    write_wav(tmp_path / "loud.wav", array("h", [32000] * 800))
    ex, _ = make([{"line": 1, "steps": [{"say": "loud.wav"}]}], folder=tmp_path,
                 echo_return_loss_db=0.0)
    fw = Firmware(ex, answer_on=1)
    fw.play[1] = array("h", [32000] * 160)
    fw.run(0.2)
    assert max(fw.audio(1, off_hook=True)) == 32767


# ------------------------------------------------------------------ the clock and the calls

def test_two_calls_on_two_lines_overlap_with_at():
    ex, events = make([{"line": 1, "at": 0, "give_up_after_rings": 2},
                       {"line": 2, "at": 3.0, "give_up_after_rings": 2}])
    fw = Firmware(ex, answer_on=None)
    fw.run(4.0)
    assert (ex.call_on_line(1), ex.call_on_line(2)) == (1, 2)
    fw.run_until_done()
    assert [(e["event"], e["line"], e["t"]) for e in events] == [
        ("incoming", 1, 0.0), ("incoming", 2, 3.0), ("caller_gave_up", 1, 12.0),
        ("call_end", 1, 12.0), ("caller_gave_up", 2, 15.0), ("call_end", 2, 15.0)]
    assert ring_runs(fw, 2) == [(3.0, 5.0), (9.0, 11.0)]


def test_after_counts_from_the_end_of_the_previous_call():
    ex, events = make([{"line": 1, "steps": [{"hangup": "busy"}]},
                       {"line": 2, "after": 5.0, "give_up_after_rings": 1}])
    fw = Firmware(ex, answer_on={1: 1, 2: None})
    fw.hangup_at[1] = 7.5
    fw.run_until_done()
    assert [(e["event"], e["line"], e["t"]) for e in mine(events, "incoming", "call_end")] == [
        ("incoming", 1, 0.0), ("call_end", 1, 7.5), ("incoming", 2, 12.5), ("call_end", 2, 18.5)]


def test_a_call_due_while_its_line_is_busy_rings_when_the_line_is_free():
    ex, events = make([{"line": 1, "give_up_after_rings": 1},
                       {"line": 1, "at": 2.0, "give_up_after_rings": 1}])
    Firmware(ex, answer_on=None).run_until_done()
    assert [(e["event"], e["t"]) for e in mine(events, "incoming", "call_end")] == [
        ("incoming", 0.0), ("call_end", 6.0), ("incoming", 6.02), ("call_end", 12.02)]


def test_idle_until_and_skip_to_jump_to_the_next_call():
    ex, events = make([{"line": 1, "at": 100.0, "give_up_after_rings": 1},
                       {"line": 1, "after": 30.005, "give_up_after_rings": 1}])
    assert ex.idle_until() == 100.0
    ex.skip_to(ex.idle_until())
    assert ex.now == 100.0 and ex.call_on_line(1) == 1
    assert ex.idle_until() is None                      # ringing: nothing to skip
    with pytest.raises(RuntimeError):
        ex.skip_to(200.0)
    fw = Firmware(ex, answer_on=None)
    while ex.idle_until() is None and not ex.done():
        fw.step()
    assert ex.now == 106.02 and ex.call_on_line(1) is None
    assert ex.idle_until() == 136.02                   # 106.0 + 30.005, up to a frame
    ex.skip_to(ex.idle_until())
    assert mine(events, "incoming")[-1]["t"] == 136.02
    fw.run_until_done()
    assert ex.done() and ex.idle_until() is None


def test_wall_time_follows_the_virtual_clock():
    ex, _ = make([{"line": 1, "at": 90.0}])
    ex.skip_to(ex.idle_until())
    assert ex.wall_time() == datetime.fromisoformat("2024-03-05T09:31:30").astimezone()


def test_caller_id_time_is_the_virtual_wall_clock_at_the_call():
    ex, _ = make([{"line": 1, "at": 3600.0, "caller": {"number": "123"}, "give_up_after_rings": 2}])
    ex.skip_to(ex.idle_until())
    fw = Firmware(ex, answer_on=None)
    fw.run_until_done(limit=4000)
    det = CallerIdDetector("bell202")
    found = []
    for _, tick, _ in fw.heard[1]:
        found += det.feed(tick.audio, sum(s * s for s in tick.audio))
    assert [c["datetime"] for c in found] == ["03051030"]


def test_a_line_without_a_plan_is_refused():
    sc = parse_scenario({"call": [{"line": 4}]}, Path("."), "t")
    with pytest.raises(ValueError, match=r"no tone plan for line\(s\) \[4\]"):
        SimExchange(sc, {1: "us"}, Bus())
