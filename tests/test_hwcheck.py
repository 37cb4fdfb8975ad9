"""`linebox hwcheck`: one report line per configured part, exit 1 when one fails; run on
simulated pins and on alsa-lib's file plugin as the sound card."""

import grp
import io
import os
import shutil
import tempfile
from array import array
from pathlib import Path

import pytest

from conftest import run_linebox
from linebox import FRAME
from linebox.clock import ManualClock
from linebox.config import load_config
from linebox.dsp import gen
from linebox.hw.check import HALF_DUPLEX, Report, describe_modem, run_checks
from linebox.hw.gpio import SimPins
from modem_emulator import ModemEmulator
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
                        sleep=clock.sleep, serial_dir=tmp_path / "no-serial-devices")
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


def modem_config(tmp_path, port, extra_box="", duplex="auto"):
    path = tmp_path / "modem.toml"
    path.write_text(f"""
[device]
data_dir = "{tmp_path / 'data'}"
[[line]]
id = 3
driver = "modem"
port = "{port}"
duplex = "{duplex}"
flow_control = "none"        # a pty has no RTS/CTS
route = "100"
[[box]]
number = "100"
pin_required = false
{extra_box}
""")
    return path


def modem_check(tmp_path, port, by_id=(), duplex="auto"):
    """run_checks on a modem-only config: no GPIO at all (pins=None)."""
    serial_dir = tmp_path / "by-id"
    serial_dir.mkdir(exist_ok=True)
    for name, target in by_id:
        (serial_dir / name).symlink_to(target)
    out = io.StringIO()
    report = run_checks(load_config(modem_config(tmp_path, port, duplex=duplex)), None, Report(out),
                        serial_dir=serial_dir)
    return out.getvalue().splitlines(), report


CONEXANT_ID = "usb-Conexant_USB_Modem_24680246-if00"


def test_a_half_duplex_modem_is_described_in_words_and_half_duplex_explained(tmp_path):
    with ModemEmulator("conexant", tmp_path / "ttyACM0") as emu:
        pty = os.path.realpath(emu.path)
        # A Conexant answers AT+VTR=? with ERROR yet does full duplex: half is the
        # owner's choice here (duplex = "half"), which hwcheck then explains.
        lines, report = modem_check(tmp_path, emu.path, by_id=[(CONEXANT_ID, emu.path)],
                                    duplex="half")
    assert lines[0].startswith(f"OK    line 3 modem ({emu.path}): CX93001-EIS_V0.2002-V92 "
                               "(CONEXANT, chipset conexant), audio ")
    assert lines[0].endswith(", half duplex, caller ID on, country B5")
    assert "{" not in lines[0] and "'" not in lines[0]          # not a Python dict
    assert lines[1] == f"INFO  line 3 modem: {HALF_DUPLEX}"
    assert lines[2] == (f"INFO  serial device: {tmp_path / 'by-id' / CONEXANT_ID} "
                        f"(now {pty})")
    assert not report.failed and report.summary() == "hwcheck: 1 OK, 0 FAIL, 0 SKIP"
    assert "AT+FCLASS=8" in emu.commands


def test_a_full_duplex_modem_needs_no_explanation(tmp_path):
    with ModemEmulator("usr", tmp_path / "ttyACM0") as emu:
        lines, report = modem_check(tmp_path, emu.path)
    assert lines[0].startswith(f"OK    line 3 modem ({emu.path}): U.S. Robotics 56K FAX USB "
                               "(U.S. Robotics, chipset usr), audio ")
    assert ", full duplex, caller ID on" in lines[0]
    assert lines[1:] == [f"INFO  serial devices: none in {tmp_path / 'by-id'} (a USB modem "
                         "appears there when it is plugged in; is it? lsusb lists it)"]


def test_a_wrong_port_names_the_modems_found(tmp_path):
    with ModemEmulator("conexant", tmp_path / "ttyACM1") as emu:
        pty = os.path.realpath(emu.path)
        lines, report = modem_check(tmp_path, "/dev/linebox-nowhere",
                                    by_id=[(CONEXANT_ID, emu.path)])
    found = f"{tmp_path / 'by-id' / CONEXANT_ID} (now {pty})"
    assert lines[0] == ("FAIL  line 3 modem (/dev/linebox-nowhere): no such device; serial "
                        f"devices found: {found}: set port to the modem's")
    assert report.failed


def test_no_modem_plugged_in_says_to_check_the_cable(tmp_path):
    lines, report = modem_check(tmp_path, "/dev/linebox-nowhere")
    assert lines[0] == ("FAIL  line 3 modem (/dev/linebox-nowhere): no such device, and no USB "
                        f"serial device in {tmp_path / 'by-id'}: check the modem's USB cable "
                        "(lsusb should list it)")


def test_a_modem_that_does_not_answer_fails_with_what_to_check(tmp_path):
    with ModemEmulator("conexant", tmp_path / "ttyACM0") as emu:
        emu.responding = False
        lines, report = modem_check(tmp_path, emu.path)
    assert lines[0].startswith(f"FAIL  line 3 modem ({emu.path}): ")
    assert lines[0].endswith(
        f"; check: the USB cable and that {emu.path} is the modem (linebox hwcheck lists the "
        "serial devices); that no other program uses it (ModemManager: sudo systemctl "
        'disable --now ModemManager); baud = 115200, flow_control = "none" (try "none" for '
        "an adapter without RTS/CTS)")
    assert report.failed


def test_the_identity_of_another_driver_is_still_one_sentence():
    assert describe_modem({"model": "X", "duplex": "full", "callerid": False,
                           "country": "Germany", "formats": ["a", "b"]}) == \
        "X, full duplex, caller ID not supported (AT+VCID), country Germany"


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


def test_a_modem_only_box_is_checked_without_rpi_gpio(tmp_path, monkeypatch):
    """Off a Pi, with no GPIO pin configured: the modem is checked, RPi.GPIO never asked."""
    monkeypatch.delenv("LINEBOX_GPIO", raising=False)
    monkeypatch.setenv("LINEBOX_SERIAL_BY_ID", str(tmp_path / "by-id"))
    with ModemEmulator("usr", tmp_path / "ttyACM0") as emu:
        result = run_linebox("hwcheck", "--config", modem_config(tmp_path, emu.path))
    out = result.stdout.decode().splitlines()
    assert result.returncode == 0, result.stderr.decode()
    assert out[1].startswith(f"OK    line 3 modem ({emu.path}): U.S. Robotics 56K FAX USB")
    assert out[-1] == "hwcheck: 1 OK, 0 FAIL, 0 SKIP"


def test_a_lamp_on_a_modem_box_still_needs_gpio(tmp_path, monkeypatch):
    monkeypatch.delenv("LINEBOX_GPIO", raising=False)
    result = run_linebox("hwcheck", "--config",
                         modem_config(tmp_path, "/dev/null", extra_box="led_pin = 5"))
    assert result.returncode == 2
    assert result.stderr.decode() == \
        "linebox: error: GPIO: RPi.GPIO is not available (not a Raspberry Pi?)\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to be someone else)")
def test_a_modem_the_user_may_not_open_names_the_dialout_group(tmp_path):
    from test_admin import STRANGER, _linebox

    top = Path(tempfile.mkdtemp(prefix="linebox-hwcheck-"))
    try:
        top.chmod(0o755)
        port = top / "ttyACM0"
        port.write_bytes(b"")
        os.chown(port, 0, 20)                  # root:dialout (gid 20 on Debian)
        port.chmod(0o660)
        cfg = modem_config(top, port)
        cfg.chmod(0o644)
        res = _linebox("hwcheck", "--config", cfg, uid=STRANGER)
        group = grp.getgrgid(20).gr_name
        line = res.stdout.decode().splitlines()[1]
        assert line == (f"FAIL  line 3 modem ({port}): cannot open {port}: permission denied "
                        f"({port} is root:{group} -rw-rw----; you are {STRANGER}: add yourself "
                        f"to the group {group} (sudo adduser {STRANGER} {group}, then log in "
                        "again), or use sudo)")
        assert res.returncode == 1
    finally:
        shutil.rmtree(top)
