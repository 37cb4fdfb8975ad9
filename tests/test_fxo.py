"""The FXO line driver: ring pulses to per-frame ringing, the hook relay, line voltage,
gains, a vanishing sound card, calibration; and a whole call through the real engine with
the line's audio in alsa-lib's file plugin and the pins simulated.

``make_file_fxo_line`` and ``RingSignal`` are for other tests too (the end-to-end test
runs the full firmware over them)::

    line, pins, played = make_file_fxo_line(tmp_path, line_audio, monkeypatch=monkeypatch)
    ring = RingSignal(pins, RING_PIN, line.clock, plan="us")
    ring.start()
    for _ in range(n):
        ring.advance(0.02)        # drives the ring pin and moves the clock one frame
        runner.step()             # LineRunner(line, ...): one tick
    line.close()                  # flushes played.raw: PREFILL silent frames, then every tick's frame
"""

import math
import time
from array import array
from pathlib import Path

import pytest

from linebox import FRAME
from linebox.calls.engine import LineRunner
from linebox.calls.rings import RingCounter
from linebox.clock import ManualClock
from linebox.config import LineConfig
from linebox.dsp import gen
from linebox.dsp.plans import get_plan
from linebox.events import HIDDEN, Bus
from linebox.hw.audio import PREFILL, AlsaAudio, AudioGone, SimAudio
from linebox.hw.fxo import FxoLine, _Poller, calibrate, from_config, tone_level_dbm0
from linebox.hw.gpio import SimPins
from linebox.hw.line import Fault, FaultCleared
from test_audio_alsa import alsa_file_pcm

HOOK_PIN, RING_PIN, LOOP_PIN = 17, 27, 22
STEP = 0.001          # RingSignal's resolution: the pin is set every millisecond
TWICE = 20 * math.log10(2.0)


class RingSignal:
    """A ring-detect optocoupler on a ringing line: during each burst of the plan's ring
    cadence, a pulse every 1/``freq`` s, active for half of it. ``advance(dt)`` drives
    the pin millisecond by millisecond and moves the shared clock."""

    def __init__(self, pins: SimPins, pin: int, clock: ManualClock, plan: str = "us",
                 freq: float = 20.0, active_low: bool = True, offset: float = 0.0055) -> None:
        self.pins, self.pin, self.clock = pins, pin, clock
        self.cadence = get_plan(plan).ring_cadence
        self.period = 1.0 / freq
        self.active_low = active_low
        self.offset = offset          # first pulse this long after start (between samples)
        self.start_t: float | None = None

    def start(self) -> None:
        self.start_t = self.clock()

    def stop(self) -> None:
        self.start_t = None
        self._drive(False)

    def active_at(self, t: float) -> bool:
        if self.start_t is None or t < self.start_t:
            return False
        u = (t - self.start_t) % sum(self.cadence)
        for i, dur in enumerate(self.cadence):
            if u < dur:
                if i % 2:
                    return False
                p = u - self.offset
                return p >= 0 and p % self.period < self.period / 2 and p < dur - self.period / 2
            u -= dur
        return False

    def advance(self, dt: float) -> None:
        end = self.clock() + dt
        for k in range(1, round(dt / STEP) + 1):
            self.clock.t = end - dt + k * STEP
            self._drive(self.active_at(self.clock.t))
        self.clock.t = end

    def _drive(self, active: bool) -> None:
        self.pins.drive(self.pin, active != self.active_low)


def sim_line(clock: ManualClock, audio=None, **kw):
    pins = SimPins(clock)
    audio = SimAudio() if audio is None else audio
    line = FxoLine(1, "us", pins=pins, audio_factory=lambda: audio, hook_pin=HOOK_PIN,
                   ring_pin=RING_PIN, loop_pin=LOOP_PIN, clock=clock, sleep=clock.sleep, **kw)
    return line, pins, audio


def frames(signal: array) -> list[array]:
    return [signal[i:i + FRAME] for i in range(0, len(signal), FRAME)]


def runs(flags: list[bool]) -> list[tuple[int, int]]:
    """(first, last) frame index of each run of True."""
    out, start = [], None
    for i, f in enumerate(flags + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i - 1))
            start = None
    return out


# -- ringing -------------------------------------------------------------------------------

def test_ring_pulses_become_ringing_frames_in_the_plan_cadence():
    clock = ManualClock()
    line, pins, _ = sim_line(clock)
    ring = RingSignal(pins, RING_PIN, clock, "us")
    ring.start()
    flags = []
    for _ in range(650):
        ring.advance(0.02)
        flags.append(line.tick().ringing)
    # Ringing from the frame of the second pulse (0.056 s) to the last pulse (1.981 s)
    # plus the 70 ms hold; again 6 s later.
    assert runs(flags) == [(2, 101), (302, 401), (602, 649)]


def test_the_ring_counter_counts_the_fxo_ringing_frames():
    clock = ManualClock()
    line, pins, _ = sim_line(clock)
    ring = RingSignal(pins, RING_PIN, clock, "uk", freq=25.0)
    ring.start()
    counter = RingCounter("uk")
    starts = []
    for i in range(300):                          # 6 s: two UK double rings
        ring.advance(0.02)
        n = counter.feed(line.tick().ringing)
        if n:
            starts.append((n, i))
    assert starts == [(1, 2), (2, 152)]


def test_a_steady_ring_level_rings_after_100_ms():
    clock = ManualClock()
    line, pins, _ = sim_line(clock)
    flags = []
    for i in range(20):
        clock.advance(0.015)
        if i == 5:
            pins.drive_low(RING_PIN)              # an RC-filtered detector: low while ringing
        if i == 15:
            pins.drive_high(RING_PIN)
        clock.advance(0.005)
        flags.append(line.tick().ringing)
    # Active from 0.115 s; rings once held 100 ms (frame 10 ends at 0.22 s); stops 70 ms
    # after the end at 0.315 s (frame 18 ends at 0.38 s).
    assert runs(flags) == [(10, 18)]


def test_a_single_spike_is_not_a_ring():
    clock = ManualClock()
    line, pins, _ = sim_line(clock)
    flags = []
    for i in range(30):
        clock.advance(0.01)
        if i == 3:
            pins.drive_low(RING_PIN)
            clock.advance(0.002)
            pins.drive_high(RING_PIN)
        clock.advance(0.01)
        flags.append(line.tick().ringing)
    assert flags == [False] * 30


def test_a_ring_input_stuck_active_is_a_fault_not_an_endless_ring():
    clock = ManualClock()
    line, pins, _ = sim_line(clock)
    pins.drive_low(LOOP_PIN)                      # line voltage present
    pins.drive_low(RING_PIN)                      # at 0 s, and for good
    ticks = []
    for i in range(600):                          # 12 s
        clock.t = (i + 1) / 50                    # frame ends, exact where it matters
        ticks.append(line.tick())
    events = [(i, e) for i, t in enumerate(ticks) for e in t.events]
    reason = "ring input active for 10 s (check ring_active_low and the wiring)"
    assert events == [(499, Fault("ring", reason))]
    assert ticks[498].ringing is True and ticks[499].ringing is False
    pins.drive_high(RING_PIN)
    clock.advance(0.02)
    assert line.tick().events == (FaultCleared("ring"),)


# -- hook, line voltage, audio --------------------------------------------------------------

@pytest.mark.parametrize("active_high, levels", [(True, [False, True, False]),
                                                 (False, [True, False, True])])
def test_set_hook_drives_the_relay_pin(active_high, levels):
    clock = ManualClock()
    line, pins, _ = sim_line(clock, hook_active_high=active_high)
    clock.t = 1.0
    line.set_hook(True)
    clock.t = 2.5
    line.set_hook(False)
    pins.assert_states_and_times(HOOK_PIN, list(zip([0.0, 1.0, 2.5], levels, strict=True)))
    assert line.off_hook is False


def test_audio_flows_on_hook_too_for_caller_id():
    clock = ManualClock()
    line_audio = gen.white_noise(0.1, -20.0)
    line, _, audio = sim_line(clock, SimAudio(line_audio))
    heard = []
    for _ in range(5):
        clock.advance(0.02)
        heard.append(line.tick(None).audio)
    assert heard == frames(line_audio)
    assert audio.played == array("h", bytes(2 * 5 * FRAME))


def test_rx_and_tx_gains_scale_with_clipping():
    clock = ManualClock()
    audio = SimAudio(array("h", [1000] * FRAME + [20000] * FRAME))
    line, _, _ = sim_line(clock, audio, rx_gain_db=TWICE, tx_gain_db=-TWICE)
    assert line.tick(array("h", [1000] * FRAME)).audio == array("h", [2000] * FRAME)
    assert line.tick(array("h", [-3001] * FRAME)).audio == array("h", [32767] * FRAME)
    assert audio.played == array("h", [500] * FRAME + [-1500] * FRAME)


def test_loop_input_reports_line_voltage_and_a_dead_line_is_a_fault_once():
    clock = ManualClock()
    line, pins, _ = sim_line(clock)
    pins.drive_low(LOOP_PIN)                      # optocoupler lit: the exchange feeds the line
    clock.t = 0.98
    assert line.tick().loop is True
    pins.drive_high(LOOP_PIN)                     # unplugged
    ticks = []
    for i in range(600):
        clock.t = (i + 50) / 50                   # the first tick without voltage ends at 1 s
        ticks.append(line.tick())
    assert {t.loop for t in ticks} == {False}
    faults = [(i, t.events) for i, t in enumerate(ticks) if t.events]
    assert faults == [(500, (Fault("line", "no line voltage"),))]   # at 11 s: 10 s without voltage
    assert line.fault == "no line voltage"
    pins.drive_low(LOOP_PIN)
    clock.advance(0.02)
    assert line.tick().events == (FaultCleared("line"),)
    assert line.fault is None


def test_no_line_voltage_while_off_hook_is_not_a_dead_line():
    clock = ManualClock()
    line, _, _ = sim_line(clock)                  # loop input idle: no voltage
    line.set_hook(True)
    events = []
    for _ in range(600):
        clock.advance(0.02)
        events += line.tick().events
    assert events == []


def test_without_a_loop_pin_the_loop_is_unknown():
    clock = ManualClock()
    pins = SimPins(clock)
    line = FxoLine(1, pins=pins, audio_factory=SimAudio, hook_pin=HOOK_PIN, ring_pin=RING_PIN,
                   clock=clock, sleep=clock.sleep)
    assert line.tick().loop is None


def test_a_vanished_sound_card_is_one_fault_silent_paced_ticks_and_reopens_with_backoff():
    clock = ManualClock()
    state = {"card": SimAudio(gen.white_noise(1.0, -20.0)), "plugged": True}
    attempts = []

    def factory():
        attempts.append(clock())
        if not state["plugged"]:
            raise AudioGone("audio hw:1: No such device")
        return state["card"]

    pins = SimPins(clock)
    line = FxoLine(1, pins=pins, audio_factory=factory, hook_pin=HOOK_PIN, ring_pin=RING_PIN,
                   clock=clock, sleep=clock.sleep)
    clock.advance(0.02)
    assert line.tick().audio == state["card"].line[:FRAME]
    state["card"].vanish("audio hw:1: No such device")
    state["plugged"] = False
    lost_at = clock()
    events = []
    for _ in range(2000):                         # 40 s of ticks, paced by the line itself
        tick = line.tick(array("h", [500] * FRAME))
        assert tick.audio == array("h", bytes(2 * FRAME))
        events += tick.events
    assert events == [Fault("audio", "sound card: audio hw:1: No such device")]
    assert round(clock() - lost_at, 6) == 40.0   # 2000 ticks of 20 ms
    # Each retry waits twice as long as the one before (to the next tick).
    gaps = [b - a for a, b in zip([lost_at] + attempts[1:], attempts[1:], strict=False)]
    assert [round(g, 1) for g in gaps] == [1.0, 2.0, 4.0, 8.0, 16.0]
    state["card"] = SimAudio(gen.white_noise(1.0, -20.0, seed=7))
    state["plugged"] = True
    events = []
    while not events:
        tick = line.tick()
        events += tick.events
    assert events == [FaultCleared("audio")]
    assert round(attempts[-1] - attempts[-2], 1) == 32.0
    assert tick.audio == state["card"].line[:FRAME]
    assert line.fault is None


def test_a_driver_bug_in_the_audio_does_not_escape_tick():
    clock = ManualClock()

    class Broken(SimAudio):
        def read_frame(self):
            raise ZeroDivisionError("oops")

    line, _, _ = sim_line(clock, Broken())
    tick = line.tick()
    assert tick.events == (Fault("audio", "sound card: audio error: oops"),)
    assert tick.audio == array("h", bytes(2 * FRAME))


def test_close_goes_on_hook_and_releases_inputs_and_card():
    clock = ManualClock()
    line, pins, audio = sim_line(clock)
    line.set_hook(True)
    line.close()
    assert pins.states(HOOK_PIN) == [False, True, False]
    assert pins.released == [RING_PIN, LOOP_PIN]
    assert audio.closed and line.audio is None


def test_from_config_wires_pins_levels_and_gains():
    clock = ManualClock()
    pins = SimPins(clock)
    cfg = LineConfig(id=3, driver="fxo", plan="de", rings=4, toll_saver_rings=0, route="100",
                     audio="plughw:CARD=Device", hook_pin=5, ring_pin=6, loop_pin=13,
                     hook_active_high=False, ring_active_low=False, loop_active_low=True,
                     rx_gain_db=3.0, tx_gain_db=-2.0)
    line = from_config(cfg, pins, audio_factory=SimAudio, clock=clock, sleep=clock.sleep)
    assert (line.id, line.plan, line.rx_gain_db, line.tx_gain_db) == (3, "de", 3.0, -2.0)
    assert pins.modes == {5: "out", 6: "in", 13: "in"}
    assert pins.levels == {5: True, 6: False, 13: True}   # on-hook = high; pulls idle
    with pytest.raises(ValueError, match="line 3 is a modem line"):
        from_config(LineConfig(id=3, driver="modem", plan="us", rings=4, toll_saver_rings=0,
                               route="100", port="/dev/ttyACM0"), pins)


# -- calibration ---------------------------------------------------------------------------

def test_calibrate_measures_the_loopback_and_suggests_the_rx_gain():
    clock = ManualClock()
    line, _, _ = sim_line(clock, SimAudio(loopback_db=-15.0))
    result = calibrate(line, seconds=1.0, tone_hz=1000.0, tone_dbm0=-10.0)
    assert result == {"tone_hz": 1000.0, "tx_dbm0": -10.0, "rx_dbm0": -25.0,
                      "rx_total_dbm0": -25.0, "noise_dbm0": None, "snr_db": None,
                      "rx_gain_db": 0.0, "suggested_rx_gain_db": 15.0}


def test_calibrate_suggests_nothing_when_nothing_comes_back():
    clock = ManualClock()
    line, _, _ = sim_line(clock, SimAudio())
    result = calibrate(line, seconds=0.5)
    assert (result["rx_dbm0"], result["suggested_rx_gain_db"]) == (None, None)


def test_tone_level_picks_one_frequency_out_of_a_mix():
    mix = gen.mix(gen.tone(1000.0, 1.0, -20.0), gen.tone((350.0, 440.0), 1.0, -13.0))
    assert round(tone_level_dbm0(mix, 1000.0), 1) == -20.0


# -- a whole call on the ALSA file plugin ---------------------------------------------------

def make_file_fxo_line(tmp_path: Path, line_audio, plan: str = "us", monkeypatch=None,
                       pad_seconds: float = 60.0, **line_kw) -> tuple[FxoLine, SimPins, Path]:
    """An FxoLine whose sound card is alsa-lib's file plugin (capture reads
    ``line_audio``, then ``pad_seconds`` of silence; playback goes to the returned file,
    complete after ``line.close()``) and whose pins are SimPins on a ManualClock
    (``line.clock``). Pins: HOOK_PIN, RING_PIN, LOOP_PIN (active low, idle high)."""
    device, _, played = alsa_file_pcm(Path(tmp_path) / "alsa", line_audio, pad_seconds,
                                      monkeypatch=monkeypatch)
    clock = ManualClock()
    pins = SimPins(clock)
    line = FxoLine(1, plan, pins=pins, audio_factory=lambda: AlsaAudio(device),
                   hook_pin=HOOK_PIN, ring_pin=RING_PIN, loop_pin=LOOP_PIN, clock=clock,
                   sleep=clock.sleep, **line_kw)
    return line, pins, played


def test_a_call_rung_in_on_gpio_is_answered_and_talks_through_alsa(tmp_path, monkeypatch):
    line_audio = gen.white_noise(12.0, -25.0)
    line, pins, played_path = make_file_fxo_line(tmp_path, line_audio, monkeypatch=monkeypatch)
    assert line.audio is not None
    ring = RingSignal(pins, RING_PIN, line.clock, "us")
    bus = Bus()
    events = []
    bus.subscribe(lambda ev: events.append(ev) if ev["event"] not in HIDDEN else None)
    greeting = gen.tone(1000.0, 0.5, -10.0)
    heard = []

    def flow(call):
        for frame in frames(greeting):
            yield frame
            heard.append(call.heard)

    runner = LineRunner(line, 1, "us", bus, flow, rings_needed=lambda: 2)
    ring.start()
    ticks = 0
    while not any(ev["event"] == "onhook" for ev in events):
        if line.off_hook and ring.start_t is not None:
            ring.stop()                             # the exchange stops ringing on answer
        ring.advance(0.02)
        runner.step()
        ticks += 1
        assert ticks < 1000
    line.close()

    assert [(e["event"], e.get("n"), e.get("after_rings")) for e in events] == [
        ("ring", 1, None), ("ring", 2, None), ("answer", None, 2), ("onhook", None, None)]
    # Ring 2 rings frames 302-401; frame 402, the first quiet one, answers: 403 ticks done.
    answered_ticks = 403
    assert [e["t"] for e in events if e["event"] == "answer"] == [answered_ticks * 0.02]
    pins.assert_states(HOOK_PIN, [False, True, False])
    # The engine asks for the first frame when it answers; the next tick plays it.
    played = array("h")
    played.frombytes(played_path.read_bytes())
    silence = array("h", bytes(2 * FRAME))
    assert played == silence * (PREFILL + answered_ticks) + greeting
    # What the flow heard is the line file, frame for frame, from the tick after answering
    # (tick n reads frame n of the file).
    first = answered_ticks
    assert heard == frames(line_audio)[first:first + len(heard)]
    assert len(heard) == len(greeting) // FRAME


def test_without_edge_callbacks_the_ring_input_is_sampled_by_a_thread():
    class NoEdges(SimPins):
        def add_edge_callback(self, pin, callback):
            return False

    pins = NoEdges()
    pins.setup_input(RING_PIN, "up")
    seen = []
    poller = _Poller(pins, RING_PIN, lambda pin, level: seen.append((pin, level)))
    poller.start()
    try:
        for level in (False, True):
            pins.drive(RING_PIN, level)
            deadline = time.monotonic() + 5.0
            while (RING_PIN, level) not in seen and time.monotonic() < deadline:
                time.sleep(0.001)
    finally:
        poller.stopping.set()
        poller.join(5.0)
    assert seen == [(RING_PIN, False), (RING_PIN, True)]


def test_a_brief_line_voltage_drop_on_hook_is_a_line_reversal():
    # BT SIN 227: the exchange reverses the line before caller ID; behind the bridge
    # rectifier the line-voltage input sees the voltage pass through zero for milliseconds.
    from linebox.hw.line import LineReversal

    clock = ManualClock()
    line, pins, _ = sim_line(clock)
    pins.drive_low(LOOP_PIN)                      # the line is fed
    for _ in range(100):
        clock.advance(0.02)
        assert line.tick().events == ()
    clock.t += 0.005
    pins.drive_high(LOOP_PIN)
    clock.t += 0.004                              # 4 ms through zero
    pins.drive_low(LOOP_PIN)
    clock.advance(0.011)
    assert line.tick().events == (LineReversal(),)
    clock.advance(0.02)
    assert line.tick().events == ()
    # A longer drop (an unplugged cable, a hang-up's open loop) is no reversal.
    pins.drive_high(LOOP_PIN)
    clock.t += 0.5
    pins.drive_low(LOOP_PIN)
    clock.advance(0.02)
    assert line.tick().events == ()
    # Nor is one off-hook.
    line.set_hook(True)
    pins.drive_high(LOOP_PIN)
    clock.t += 0.004
    pins.drive_low(LOOP_PIN)
    clock.advance(0.02)
    assert line.tick().events == ()
