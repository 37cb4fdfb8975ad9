"""GPIO on a real Pi: outputs read back what they drive, lamps blink, inputs idle."""

import time

from linebox.hw.gpio_leds import GpioLedBackend


def test_an_output_reads_back_each_level_it_drives(pins, led_pin):
    pins.setup_output(led_pin, False)
    seen = []
    for level in (True, False, True, False):
        pins.write(led_pin, level)
        seen.append(pins.read(led_pin))
    assert seen == [True, False, True, False]


def test_the_lamp_blinks_then_goes_dark(pins, led_pin):
    leds = GpioLedBackend(pins)
    leds.start()
    leds.show(led_pin, "fast")
    seen = set()
    deadline = time.monotonic() + 3.0
    while seen != {True, False} and time.monotonic() < deadline:
        seen.add(pins.read(led_pin))
        time.sleep(0.01)
    leds.show(led_pin, "off")
    lit_after_off = pins.read(led_pin)
    leds.close()
    assert seen == {True, False}
    assert lit_after_off is False


def test_the_ring_input_idles_high_with_its_pull_up(pins, ring_pin):
    pins.setup_input(ring_pin, "up")
    assert pins.read(ring_pin) is True, "ring input active: line ringing, or wiring/polarity wrong"
