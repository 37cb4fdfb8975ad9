"""On-device tests for a real Raspberry Pi: skipped cleanly unless the environment names the
hardware (see hwtests/README.md).

Each fixture reads one variable; a test that needs a part the environment does not name,
or that runs off a Pi, is skipped with the reason.
"""

import os
from pathlib import Path

import pytest

MODEL = Path("/proc/device-tree/model")


def on_a_pi() -> bool:
    try:
        return "Raspberry Pi" in MODEL.read_text(errors="replace")
    except OSError:
        return False


def _env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.skip(f"{name} is not set")
    return value


def _pin(name: str) -> int:
    value = _env(name)
    if not value.isdigit() or not 0 <= int(value) <= 27:
        pytest.fail(f"{name}={value!r}: must be a BCM GPIO number from 0 to 27")
    return int(value)


@pytest.fixture
def pi():
    if not on_a_pi():
        pytest.skip("not a Raspberry Pi")


@pytest.fixture
def pins(pi):
    """The Pi's pins (RPi.GPIO API), released after the test."""
    from linebox.hw.gpio import RpiGpioPins

    p = RpiGpioPins()
    yield p
    p.close()


@pytest.fixture
def hook_pin(pi):
    return _pin("LINEBOX_HW_HOOK_PIN")


@pytest.fixture
def ring_pin(pi):
    return _pin("LINEBOX_HW_RING_PIN")


@pytest.fixture
def loop_pin(pi):
    return _pin("LINEBOX_HW_LOOP_PIN")


@pytest.fixture
def led_pin(pi):
    return _pin("LINEBOX_HW_LED_PIN")


@pytest.fixture
def audio_device(pi):
    return _env("LINEBOX_HW_AUDIO")


@pytest.fixture
def modem_port(pi):
    return _env("LINEBOX_HW_MODEM")


@pytest.fixture
def loopback_rig(audio_device):
    """The sound card's output is wired back to its input (see README: the loopback rig)."""
    if os.environ.get("LINEBOX_HW_LOOPBACK") != "1":
        pytest.skip("LINEBOX_HW_LOOPBACK=1 is not set (no loopback rig)")
    return audio_device


@pytest.fixture
def call_in():
    """Someone will call the line during the test (LINEBOX_HW_CALL_IN=1)."""
    if os.environ.get("LINEBOX_HW_CALL_IN") != "1":
        pytest.skip("LINEBOX_HW_CALL_IN=1 is not set (nobody calls the line)")
