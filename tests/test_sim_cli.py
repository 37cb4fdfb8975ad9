"""`linebox sim` and `linebox messages` as a user runs them: errors, crashes, retention."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_linebox
from simkit import Sim, of, speech_wav

CALL = """
[[call]]
line = 1
at = 1.0
caller = {{ number = "5551234567", name = "JOHN DOE" }}
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]
"""


def _sim(sim: Sim, scenario_path, *extra):
    return run_linebox("sim", scenario_path, "--config", sim.config_path, "--data", sim.data, "--json", *extra,
                       timeout=300)


def _assert_one_line_error(res, *needles):
    assert res.returncode == 2, res.stderr.decode()
    err = res.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("linebox: error: "), err
    for n in needles:
        assert n in err, err


def test_sim_cli_prints_the_transcript_as_json_lines(tmp_path, speech_files):
    sim = Sim(tmp_path)
    voice = speech_wav(tmp_path, speech_files[0], 3.0)
    res = _sim(sim, sim.write_scenario(CALL.format(voice=voice)))
    assert res.returncode == 0, res.stderr.decode()
    events = [json.loads(x) for x in res.stdout.decode().splitlines()]
    assert all({"t", "call", "line", "event"} <= set(e) for e in events)
    assert of(events, "message_saved", call=1, line=1)
    listing = run_linebox("messages", "--config", sim.config_path, "--data", sim.data, "--json")
    (msg,) = [json.loads(x) for x in listing.stdout.decode().splitlines()]
    assert msg["box"] == "100" and msg["state"] == "new" and msg["caller_number"] == "5551234567"
    assert os.path.isabs(msg["file"]) and os.path.exists(msg["file"])
    assert msg["received"][-6] in "+-"    # ISO 8601 with an offset


@pytest.mark.parametrize("text, needle", [
    ("[[call]]\nline = 1\nsteps = [ { sya = 'x' } ]\n", "sya"),
    ("[[call]]\nline = 'one'\nsteps = []\n", "'line'"),
    ("[[call]\nline = 1\n", "scenario"),
    ("[[call]]\nline = 7\nsteps = [ { hangup = 'busy' } ]\n", "line 7"),
])
def test_bad_scenarios_get_one_line_errors(tmp_path, text, needle):
    sim = Sim(tmp_path)
    _assert_one_line_error(_sim(sim, sim.write_scenario(text)), needle)


def test_bad_config_gets_a_one_line_error(tmp_path):
    sim = Sim(tmp_path)
    sim.config_path.write_text(sim.config_path.read_text().replace("max_messages = 100", "max_messages = -3"))
    res = _sim(sim, sim.write_scenario("[[call]]\nline = 1\nsteps = [ { hangup = 'busy' } ]\n"))
    _assert_one_line_error(res, "max_messages")


def test_a_recording_survives_sigkill_and_comes_back_as_a_recovered_message(tmp_path, speech_files):
    sim = Sim(tmp_path, max_seconds=180)
    voice = speech_wav(tmp_path, speech_files[0], 170.0, offset=1.0)
    scen = sim.write_scenario(CALL.format(voice=voice))
    proc = subprocess.Popen([sys.executable, "-m", "linebox", "sim", str(scen), "--config", str(sim.config_path),
                             "--data", str(sim.data), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for line in proc.stdout:
            if json.loads(line)["event"] == "record_start":
                break
        else:
            pytest.fail("the recording never started: " + proc.stderr.read().decode())
        # Let a few seconds of (virtual) audio reach the disk, then pull the plug.
        part = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            parts = list(sim.data.rglob("*.part"))
            if parts and parts[0].stat().st_size > 8000 * 2 * 5:
                part = parts[0]
                break
            time.sleep(0.01)
        assert part is not None, "the recording is streamed to disk as it goes"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The next start repairs it into a message flagged recovered.
    again = sim.write_scenario("[[call]]\nline = 1\nat = 1\ngive_up_after_rings = 1\nsteps = []\n")
    res = _sim(sim, again)
    assert res.returncode == 0, res.stderr.decode()
    listing = run_linebox("messages", "--config", sim.config_path, "--data", sim.data, "--json")
    msgs = [json.loads(x) for x in listing.stdout.decode().splitlines()]
    assert len(msgs) == 1
    assert msgs[0]["recovered"] is True and msgs[0]["seconds"] >= 4.0
    assert msgs[0]["caller_number"] == "5551234567" and msgs[0]["state"] == "new"


def test_a_corrupt_database_is_recovered_with_a_warning(tmp_path, speech_files):
    sim = Sim(tmp_path)
    voice = speech_wav(tmp_path, speech_files[0], 3.0)
    assert _sim(sim, sim.write_scenario(CALL.format(voice=voice))).returncode == 0
    assert _sim(sim, sim.write_scenario(CALL.format(voice=voice).replace("5551234567", "5552222222"))).returncode == 0
    db = sim.data / "db.json"
    db.write_bytes(db.read_bytes()[: len(db.read_bytes()) // 2])
    res = _sim(sim, sim.write_scenario("[[call]]\nline = 1\nat = 1\ngive_up_after_rings = 1\nsteps = []\n"))
    assert res.returncode == 0
    assert "warning" in res.stderr.decode().lower() or "<4>" in res.stderr.decode()
    listing = run_linebox("messages", "--config", sim.config_path, "--data", sim.data, "--json")
    assert listing.returncode == 0
    numbers = [json.loads(x)["caller_number"] for x in listing.stdout.decode().splitlines()]
    assert "5551234567" in numbers


def test_retention_moves_heard_to_trash_then_purges_by_virtual_time(tmp_path, speech_files):
    sim = Sim(tmp_path)
    voice = speech_wav(tmp_path, speech_files[0], 3.0)
    listen = ('[[call]]\nline = 1\nafter = 10\ncaller = { number = "5550000001" }\nsteps = [ '
              '{ wait = "prompt:greeting" }, { dtmf = "*" }, { wait = "prompt:pin" }, { dtmf = "4321#" }, '
              '{ wait = "prompt:menu" }, { dtmf = "1" }, { wait = "prompt:message" }, { wait = { seconds = 1 } }, '
              '{ hangup = "busy" } ]\n')
    idle = "[[call]]\nline = 1\nafter = {days}\ngive_up_after_rings = 1\nsteps = []\n"
    events = sim.run(CALL.format(voice=voice) + listen + idle.format(days=29 * 86400)
                     + idle.format(days=2 * 86400) + idle.format(days=8 * 86400))
    (saved,) = of(events, "message_saved")
    states = [(e["state"], e["t"]) for e in of(events, "message_state", id=saved["id"])]
    assert [s for s, _ in states] == ["heard", "trash", "deleted"]
    heard_t, trash_t, gone_t = (t for _, t in states)
    assert 30 * 86400 <= trash_t - heard_t <= 30 * 86400 + 3700
    assert 7 * 86400 <= gone_t - trash_t <= 7 * 86400 + 3700
    assert sim.messages() == []
