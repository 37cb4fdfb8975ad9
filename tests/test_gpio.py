"""GPIO pins and the lamps on them: the simulated backend, the choice of backend, the Pi
backend's use of the RPi.GPIO API (checked against a stand-in module: there is no Pi
here), and blink patterns timed on a manual clock."""

import sys
import time
import types

import pytest

from linebox.clock import ManualClock
from linebox.errors import LineboxError
from linebox.hw.gpio import RpiGpioPins, SimPins, default_pins
from linebox.hw.gpio_leds import GpioLedBackend, StatusLed


@pytest.fixture
def clock():
    return ManualClock(100.0)


@pytest.fixture
def sim_pins(clock):
    """A SimPins on a manual clock, closed after the test."""
    pins = SimPins(clock)
    yield pins
    pins.close()


def test_sim_pins_record_every_output_change_with_its_time(sim_pins, clock):
    sim_pins.setup_output(17, False)
    clock.advance(0.5)
    sim_pins.write(17, True)
    clock.advance(0.25)
    sim_pins.write(17, True)          # no change: not recorded
    sim_pins.write(17, False)
    sim_pins.assert_states_and_times(17, [(100.0, False), (100.5, True), (100.75, False)])
    sim_pins.assert_states(17, [False, True, False])
    assert sim_pins.read(17) is False


def test_assert_states_and_times_fails_on_a_wrong_time(sim_pins, clock):
    sim_pins.setup_output(5, True)
    with pytest.raises(AssertionError, match="GPIO 5 changes"):
        sim_pins.assert_states_and_times(5, [(100.1, True)])


def test_inputs_start_at_their_pull_and_follow_the_driven_level(sim_pins):
    sim_pins.setup_input(22, "up")
    sim_pins.setup_input(23, "down")
    sim_pins.setup_input(24, None)
    assert [sim_pins.read(p) for p in (22, 23, 24)] == [True, False, False]
    sim_pins.drive_low(22)
    sim_pins.drive_high(23)
    assert [sim_pins.read(p) for p in (22, 23)] == [False, True]


def test_edge_callbacks_fire_on_changes_only(sim_pins):
    seen = []
    sim_pins.setup_input(27, "up")
    assert sim_pins.add_edge_callback(27, lambda pin, level: seen.append((pin, level))) is True
    sim_pins.drive_low(27)
    sim_pins.drive_low(27)
    sim_pins.drive_high(27)
    sim_pins.remove_edge_callback(27)
    sim_pins.drive_low(27)
    assert seen == [(27, False), (27, True)]


def test_driving_an_output_or_writing_an_input_is_a_wiring_bug(sim_pins):
    sim_pins.setup_output(6)
    sim_pins.setup_input(13)
    with pytest.raises(ValueError, match="GPIO 6 is not set up as an input"):
        sim_pins.drive_high(6)
    with pytest.raises(ValueError, match="GPIO 13 is not set up as an output"):
        sim_pins.write(13, True)
    with pytest.raises(ValueError, match="GPIO 9 is not set up"):
        sim_pins.read(9)


def test_close_releases_every_pin(sim_pins):
    sim_pins.setup_output(6)
    sim_pins.setup_input(13)
    sim_pins.close()
    assert sorted(sim_pins.released) == [6, 13]
    with pytest.raises(ValueError, match="closed"):
        sim_pins.setup_output(6)


def test_linebox_gpio_sim_selects_simulated_pins(monkeypatch):
    monkeypatch.setenv("LINEBOX_GPIO", "sim")
    assert isinstance(default_pins(), SimPins)


def test_a_bad_linebox_gpio_value_is_one_line_error(monkeypatch):
    monkeypatch.setenv("LINEBOX_GPIO", "bogus")
    with pytest.raises(LineboxError, match="LINEBOX_GPIO='bogus': must be 'sim' or 'rpi'"):
        default_pins()


def test_off_a_pi_the_pi_backend_is_a_one_line_error(monkeypatch):
    monkeypatch.delenv("LINEBOX_GPIO", raising=False)
    monkeypatch.setitem(sys.modules, "RPi", None)       # importing RPi raises ImportError
    monkeypatch.setitem(sys.modules, "RPi.GPIO", None)
    with pytest.raises(LineboxError) as err:
        default_pins()
    assert str(err.value) == "GPIO: RPi.GPIO is not available (not a Raspberry Pi?)"


class FakeGPIO(types.ModuleType):
    """Stands in for RPi.GPIO: records the calls the Pi backend makes."""

    BCM, OUT, IN, HIGH, LOW, BOTH = "BCM", "OUT", "IN", 1, 0, "BOTH"
    PUD_UP, PUD_DOWN, PUD_OFF = "PUD_UP", "PUD_DOWN", "PUD_OFF"

    def __init__(self):
        super().__init__("RPi.GPIO")
        self.calls = []
        self.levels = {}
        self.edge = {}

    def setwarnings(self, flag):
        self.calls.append(("setwarnings", flag))

    def setmode(self, mode):
        self.calls.append(("setmode", mode))

    def setup(self, pin, direction, **kw):
        if pin == 99:
            raise RuntimeError("Not running on a RPi!")
        self.calls.append(("setup", pin, direction, kw))

    def output(self, pin, level):
        self.calls.append(("output", pin, level))

    def input(self, pin):
        return self.levels.get(pin, 0)

    def add_event_detect(self, pin, edge, callback):
        self.calls.append(("add_event_detect", pin, edge))
        self.edge[pin] = callback

    def remove_event_detect(self, pin):
        self.calls.append(("remove_event_detect", pin))

    def cleanup(self, pin):
        self.calls.append(("cleanup", pin))


@pytest.fixture
def fake_gpio(monkeypatch):
    gpio = FakeGPIO()
    rpi = types.ModuleType("RPi")
    rpi.GPIO = gpio
    monkeypatch.setitem(sys.modules, "RPi", rpi)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", gpio)
    return gpio


def test_pi_backend_uses_bcm_numbers_pulls_and_both_edges(fake_gpio):
    pins = RpiGpioPins()
    pins.setup_output(17, True)
    pins.setup_input(27, "up")
    pins.write(17, False)
    seen = []
    assert pins.add_edge_callback(27, lambda pin, level: seen.append((pin, level)))
    fake_gpio.levels[27] = 0
    fake_gpio.edge[27](27)                    # RPi.GPIO calls back with the channel only
    pins.close()
    assert fake_gpio.calls == [
        ("setwarnings", False), ("setmode", "BCM"),
        ("setup", 17, "OUT", {"initial": 1}),
        ("setup", 27, "IN", {"pull_up_down": "PUD_UP"}),
        ("output", 17, 0),
        ("add_event_detect", 27, "BOTH"),
        ("remove_event_detect", 17), ("cleanup", 17),
        ("remove_event_detect", 27), ("cleanup", 27),
    ]
    assert seen == [(27, False)]


def test_pi_backend_errors_name_the_pin(fake_gpio):
    pins = RpiGpioPins()
    with pytest.raises(LineboxError, match=r"^GPIO 99: setup as output: Not running on a RPi!$"):
        pins.setup_output(99)


# -- lamps on GPIO -------------------------------------------------------------------------

def follow(backend, clock, until: float) -> None:
    """Tick the lamps at each change they ask for, up to ``until``."""
    while True:
        due = backend.tick()
        if due > until:
            return
        clock.t = due


@pytest.mark.parametrize("pattern, half", [("blink", 0.5), ("fast", 0.125)])
def test_blinking_lamps_toggle_every_half_period_starting_lit(sim_pins, clock, pattern, half):
    leds = GpioLedBackend(sim_pins, clock)
    leds.show(5, pattern)
    follow(leds, clock, 100.0 + 4 * half)
    expected = [(100.0, False)] + [(100.0 + k * half, k % 2 == 0) for k in range(5)]
    sim_pins.assert_states_and_times(5, expected)


def test_steady_patterns_and_a_pattern_change(sim_pins, clock):
    leds = GpioLedBackend(sim_pins, clock)
    leds.show(6, "on")
    assert leds.tick() == float("inf")        # nothing to do until told
    clock.advance(3.0)
    leds.show(6, "blink")                     # already lit: no change until 103.5
    follow(leds, clock, 104.0)
    clock.t = 104.2
    leds.show(6, "off")
    sim_pins.assert_states_and_times(6, [(100.0, False), (100.0, True), (103.5, False),
                                         (104.0, True), (104.2, False)])


def test_showing_the_same_pattern_again_keeps_its_phase(sim_pins, clock):
    leds = GpioLedBackend(sim_pins, clock)
    leds.show(5, "blink")
    clock.t = 100.3
    leds.show(5, "blink")
    assert leds.tick() == 100.5


def test_active_low_lamps_are_lit_by_a_low_pin(sim_pins, clock):
    leds = GpioLedBackend(sim_pins, clock, active_high=False)
    leds.show(5, "on")
    leds.close()
    sim_pins.assert_states(5, [True, False, True])
    assert sim_pins.released == [5]


def test_an_unknown_pattern_is_refused(sim_pins, clock):
    with pytest.raises(ValueError, match="unknown LED pattern 'disco'"):
        GpioLedBackend(sim_pins, clock).show(5, "disco")


def test_the_status_led_shows_ready_and_fault(sim_pins, clock):
    leds = GpioLedBackend(sim_pins, clock)
    status = StatusLed(leds, 4)
    status.set("ready")
    assert leds.pattern(4) == "on"
    status.set("fault")
    assert leds.pattern(4) == "fast"
    with pytest.raises(ValueError, match="unknown status 'sad'"):
        status.set("sad")


def test_the_lamp_thread_blinks_on_its_own_and_turns_off_on_close():
    pins = SimPins()                          # real monotonic clock
    leds = GpioLedBackend(pins)
    leds.start()
    leds.show(5, "fast")
    deadline = time.monotonic() + 5.0
    while len(pins.states(5)) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    leds.close()
    states = pins.states(5)
    assert len(states) >= 5
    assert all(a != b for a, b in zip(states, states[1:], strict=False))   # each a toggle
    assert pins.levels[5] is False and pins.released == [5]
