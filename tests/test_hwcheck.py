"""`linebox hwcheck`: one report line per configured part, exit 1 when one fails; run on
simulated pins and on alsa-lib's file plugin as the sound card."""

import io
import os
import sys
import types
from array import array

import pytest

from conftest import run_linebox
from linebox import FRAME
from linebox.config import load_config
from linebox.dsp import gen
from linebox.hw.check import Report, run_checks
from linebox.hw.gpio import ManualClock, SimPins
from test_audio_alsa import alsa_file_pcm

# calibrate() plays 60 frames of tone (10 settling), then 35 of silence: the "line" sends
# a 1 kHz tone at -20 dBm0 while the tone plays, then silence.
LINE_AUDIO = gen.tone(1000.0, 60 * FRAME / 8000, -20.0)

CONFIG = """
[device]
id = "test"
data_dir = "{data}"
status_led_pin = 4

[[line]]
id = 1
driver = "fxo"
audio = "{audio}"
hook_pin = 17
ring_pin = 27
{loop}
route = "100"

[[line]]
id = 2
driver = "sim"
route = "100"
{extra}
[[box]]
number = "100"
pin_required = false
led_pin = 5
"""

MODEM_LINE = """
[[line]]
id = 3
driver = "modem"
port = "/dev/ttyACM0"
route = "100"
"""


def write_config(tmp_path, audio="linebox_test", loop_pin=22, extra=""):
    path = tmp_path / "linebox.toml"
    loop = f"loop_pin = {loop_pin}" if loop_pin is not None else ""
    path.write_text(CONFIG.format(data=tmp_path / "data", audio=audio, loop=loop, extra=extra))
    return path


def check(tmp_path, monkeypatch, prepare=lambda pins: None, **cfg):
    alsa_file_pcm(tmp_path / "alsa", LINE_AUDIO, monkeypatch=monkeypatch)
    clock = ManualClock(50.0)
    pins = SimPins(clock)
    prepare(pins)
    out = io.StringIO()
    report = run_checks(load_config(write_config(tmp_path, **cfg)), pins, Report(out),
                        sleep=clock.sleep)
    return out.getvalue().splitlines(), report, pins


def line_voltage_present(pins):
    pins.setup_input(22, "up")
    pins.drive_low(22)                      # the optocoupler is lit


OK_LEDS = [
    "OK    status LED (GPIO 4): lit for 0.5 s (did you see it?)",
    "OK    box 100 LED (GPIO 5): lit for 0.5 s (did you see it?)",
]


def test_every_part_checks_ok_on_a_working_box(tmp_path, monkeypatch):
    lines, report, pins = check(tmp_path, monkeypatch, line_voltage_present)
    assert lines == OK_LEDS + [
        "OK    line 1 ring input (GPIO 27): idle",
        "OK    line 1 line voltage (GPIO 22): present",
        "OK    line 1 sound card (linebox_test): open, 8000 Hz mono",
        "OK    line 1 hook relay (GPIO 17): off-hook, then on-hook again (listen for two clicks)",
        "OK    line 1 audio loopback: 1 kHz at -10.0 dBm0 out, -20.0 dBm0 back, noise digital "
        "silence; rx_gain_db = 10.0 would bring it back at the level sent",
        "SKIP  line 2: simulated line (driver sim)",
    ]
    assert not report.failed
    assert report.summary() == "hwcheck: 7 OK, 0 FAIL, 1 SKIP"
    pins.assert_states_and_times(4, [(50.0, False), (50.0, True), (50.5, False)])
    pins.assert_states_and_times(5, [(50.5, False), (50.5, True), (51.0, False)])
    pins.assert_states(17, [False, True, False])
    assert pins.levels[17] is False           # left on-hook


def test_the_tone_is_played_to_the_sound_card_while_off_hook(tmp_path, monkeypatch):
    _, _, pins = check(tmp_path, monkeypatch, line_voltage_present)
    played = array("h")
    played.frombytes((tmp_path / "alsa" / "played.raw").read_bytes())
    sent = gen.tone(1000.0, 60 * FRAME / 8000, -10.0)
    start = 2 * FRAME                         # after the sound card's head start of silence
    assert played[start:start + len(sent)] == sent
    assert set(played[start + len(sent):]) == {0}


def test_no_line_voltage_fails(tmp_path, monkeypatch):
    lines, report, _ = check(tmp_path, monkeypatch)
    assert "FAIL  line 1 line voltage (GPIO 22): no line voltage (line unplugged or dead? " \
           "check loop_active_low)" in lines
    assert report.failed


def test_without_a_loop_pin_line_voltage_is_skipped(tmp_path, monkeypatch):
    lines, report, _ = check(tmp_path, monkeypatch, loop_pin=None)
    assert "SKIP  line 1 line voltage: no loop_pin configured" in lines
    assert not report.failed


def test_a_missing_sound_card_fails_and_the_relay_is_still_checked(tmp_path, monkeypatch):
    lines, report, pins = check(tmp_path, monkeypatch, line_voltage_present,
                                audio="linebox_nowhere")
    assert lines[4:7] == [
        "FAIL  line 1 sound card (linebox_nowhere): sound card: audio linebox_nowhere: "
        "No such file or directory",
        "OK    line 1 hook relay (GPIO 17): off-hook, then on-hook again (listen for two clicks)",
        "SKIP  line 1 audio loopback: no sound card",
    ]
    assert report.failed
    pins.assert_states(17, [False, True, False])


def test_a_ringing_line_is_not_taken_off_hook(tmp_path, monkeypatch):
    def ringing(pins):
        line_voltage_present(pins)
        pins.setup_input(27, "up")
        pins.drive_low(27)

    lines, report, pins = check(tmp_path, monkeypatch, ringing)
    assert lines[2] == ("FAIL  line 1 ring input (GPIO 27): active, as if ringing (if the line "
                        "is not ringing: check ring_active_low and the wiring)")
    assert "SKIP  line 1 hook relay (GPIO 17): not taken off-hook while the ring input is active" \
        in lines
    pins.assert_states(17, [False])


def test_a_modem_line_reports_its_identity(tmp_path, monkeypatch):
    modem = types.ModuleType("linebox.hw.modem")

    class ModemLine:
        def __init__(self, line_id, port, plan="us", *, baud=115200):   # as hw/modem.py
            self.port = port

        def identify(self):
            return {"manufacturer": "Conexant", "model": "93010", "voice": "yes"}

        def close(self):
            pass

    modem.ModemLine = ModemLine
    monkeypatch.setitem(sys.modules, "linebox.hw.modem", modem)
    lines, _, _ = check(tmp_path, monkeypatch, line_voltage_present, extra=MODEM_LINE)
    assert lines[-1] == ("OK    line 3 modem (/dev/ttyACM0): manufacturer: Conexant, "
                         "model: 93010, voice: yes")


def test_a_modem_that_does_not_answer_fails(tmp_path, monkeypatch):
    modem = types.ModuleType("linebox.hw.modem")

    class ModemLine:
        def __init__(self, *a, **kw):
            raise OSError("could not open port /dev/ttyACM0")

    modem.ModemLine = ModemLine
    monkeypatch.setitem(sys.modules, "linebox.hw.modem", modem)
    lines, report, _ = check(tmp_path, monkeypatch, line_voltage_present, extra=MODEM_LINE)
    assert lines[-1] == "FAIL  line 3 modem (/dev/ttyACM0): could not open port /dev/ttyACM0"
    assert report.failed


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    alsa_file_pcm(tmp_path / "alsa", LINE_AUDIO, monkeypatch=monkeypatch)
    monkeypatch.setenv("LINEBOX_GPIO", "sim")
    return os.environ


def test_hwcheck_command_prints_the_report_and_exits_1_on_a_failure(tmp_path, cli_env):
    config = write_config(tmp_path)          # loop pin idle on simulated pins: no voltage
    result = run_linebox("hwcheck", "--config", config)
    out = result.stdout.decode().splitlines()
    assert result.returncode == 1
    assert out[0] == f"linebox hwcheck: {config}"
    assert out[1:3] == OK_LEDS
    assert out[4] == ("FAIL  line 1 line voltage (GPIO 22): no line voltage (line unplugged "
                      "or dead? check loop_active_low)")
    assert out[-1] == "hwcheck: 6 OK, 1 FAIL, 1 SKIP"


def test_hwcheck_command_exits_0_when_all_is_well(tmp_path, cli_env):
    result = run_linebox("hwcheck", "--config", write_config(tmp_path, loop_pin=None))
    assert result.stdout.decode().splitlines()[-1] == "hwcheck: 6 OK, 0 FAIL, 2 SKIP"
    assert result.returncode == 0


def test_hwcheck_off_a_pi_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LINEBOX_GPIO", raising=False)
    result = run_linebox("hwcheck", "--config", write_config(tmp_path))
    assert result.returncode == 2
    assert result.stderr.decode() == \
        "linebox: error: GPIO: RPi.GPIO is not available (not a Raspberry Pi?)\n"
