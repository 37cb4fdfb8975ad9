"""The scenario loader: what a good file means, and one exact line for every bad one."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from linebox.dsp import gen
from linebox.errors import LineboxError
from linebox.sim.scenario import (
    CallerSpec,
    Dtmf,
    Hangup,
    Say,
    ScenarioError,
    Silence,
    Wait,
    load_scenario,
    parse_scenario,
)
from linebox.wavfile import write_wav

FULL = """
start = 2024-03-05T09:30:00+01:00
echo_return_loss_db = 30
line_noise_dbm0 = -65.5

[[call]]
line = 1
caller = { number = "5551234567", name = "JOHN DOE" }
give_up_after_rings = 6
steps = [
  { wait = "beep" },
  { say = "speech.wav" },
  { silence = 2.0 },
  { dtmf = "1#", on = 0.1, off = 0.05, level = -9 },
  { wait = "prompt:menu" },
  { wait = { seconds = 1.5 } },
  { wait = "answer" },
  { hangup = "busy" },
]

[[call]]
line = 2
at = 12.5
caller = { number_absent = "P", name_absent = "O" }

[[call]]
line = 1
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_wav(tmp_path / "speech.wav", gen.tone(440.0, 0.5, -20.0))
    return tmp_path


def load(folder: Path, text: str):
    path = folder / "scenario.toml"
    path.write_text(text)
    return load_scenario(path)


def error(folder: Path, text: str) -> str:
    with pytest.raises(ScenarioError) as e:
        load(folder, text)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_full_scenario_reads_every_key(folder):
    sc = load(folder, FULL)
    assert sc.start == datetime(2024, 3, 5, 9, 30, tzinfo=timezone(timedelta(hours=1)))
    assert sc.echo_return_loss_db == 30.0
    assert sc.line_noise_dbm0 == -65.5
    assert sc.lines() == {1, 2}
    one, two, three = sc.calls
    assert (one.index, one.line, one.after, one.at, one.give_up_after_rings) == (1, 1, 0.0, None, 6)
    assert one.caller == CallerSpec("5551234567", "JOHN DOE")
    assert one.steps == (
        Wait("beep"),
        Say((folder / "speech.wav").resolve()),
        Silence(2.0),
        Dtmf("1#", 0.1, 0.05, -9.0),
        Wait("prompt", prompt="menu"),
        Wait("seconds", seconds=1.5),
        Wait("answer"),
        Hangup("busy"),
    )
    assert one.steps[1].audio == gen.tone(440.0, 0.5, -20.0)
    assert (two.index, two.line, two.after, two.at) == (2, 2, None, 12.5)
    assert two.caller == CallerSpec(None, None, "P", "O")
    assert (three.after, three.caller, three.give_up_after_rings, three.steps) == (0.0, None, 10, ())


def test_defaults_are_24_db_echo_return_loss_and_minus_70_dbm0_noise(folder):
    sc = load(folder, "[[call]]\nline = 3\n")
    assert (sc.echo_return_loss_db, sc.line_noise_dbm0, sc.start) == (24.0, -70.0, None)


def test_false_turns_echo_and_noise_off(folder):
    sc = load(folder, "echo_return_loss_db = false\nline_noise_dbm0 = false\n[[call]]\nline = 1\n")
    assert (sc.echo_return_loss_db, sc.line_noise_dbm0) == (None, None)


def test_start_without_offset_is_local_time_with_the_same_wall_clock(folder):
    sc = load(folder, 'start = "2024-12-24T18:05:00"\n[[call]]\nline = 1\n')
    assert sc.start.tzinfo is not None
    assert (sc.start.month, sc.start.day, sc.start.hour, sc.start.minute) == (12, 24, 18, 5)


def test_say_path_is_relative_to_the_scenario_file_not_the_working_directory(folder, monkeypatch):
    sub = folder / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    sc = load(folder, '[[call]]\nline = 1\nsteps = [{ say = "speech.wav" }]\n')
    assert sc.calls[0].steps[0].path == (folder / "speech.wav").resolve()


def test_parse_scenario_takes_a_dict_and_a_base_directory(folder):
    sc = parse_scenario({"call": [{"line": 1, "steps": [{"say": "speech.wav"}]}]}, folder, "x")
    assert len(sc.calls[0].steps[0].audio) == 4000


def test_scenario_error_is_a_linebox_error():
    assert issubclass(ScenarioError, LineboxError)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ScenarioError) as e:
        load_scenario(tmp_path / "nope.toml")
    assert str(e.value) == f"scenario: {tmp_path / 'nope.toml'}: no such file"


def test_bad_toml_is_one_line(folder):
    msg = error(folder, "[[call]\nline = 1\n")
    assert msg.startswith(f"scenario: {folder / 'scenario.toml'}: not valid TOML: ")


BAD = [
    ("", "scenario: {path}: no [[call]]: nothing to simulate"),
    ("call = 3\n", "scenario: key 'call': must be an array of tables [[call]]"),
    ("colour = 1\n[[call]]\nline = 1\n",
     "scenario: unknown key 'colour' (known: call, callee, dial, echo_return_loss_db, line_noise_dbm0, phone, start)"),
    ("echo_return_loss_db = -3\n[[call]]\nline = 1\n",
     "scenario: key 'echo_return_loss_db': must be a number from 0 to 100, or false"),
    ("line_noise_dbm0 = true\n[[call]]\nline = 1\n",
     "scenario: key 'line_noise_dbm0': must be a number from -120 to -20, or false"),
    ('start = "tuesday"\n[[call]]\nline = 1\n',
     "scenario: key 'start': not an ISO 8601 date and time: 'tuesday'"),
    ("start = 2024-03-05\n[[call]]\nline = 1\n",
     "scenario: key 'start': must be a date and time, e.g. 2024-03-05T09:30:00"),
    ("[[call]]\nafter = 1\n", "scenario: [[call]] #1 key 'line': missing (which line is called)"),
    ("[[call]]\nline = 0\n", "scenario: [[call]] #1 key 'line': must be a positive integer"),
    ('[[call]]\nline = 1\n[[call]]\nline = "2"\n',
     "scenario: [[call]] #2 key 'line': must be a positive integer"),
    ("[[call]]\nline = true\n", "scenario: [[call]] #1 key 'line': must be a positive integer"),
    ("[[call]]\nline = 1\nlines = 2\n",
     "scenario: [[call]] #1 unknown key 'lines' (known: after, at, caller, give_up_after_rings, line, steps)"),
    ("[[call]]\nline = 1\nafter = 1\nat = 2\n",
     "scenario: [[call]] #1 keys 'after' and 'at': give one or the other"),
    ("[[call]]\nline = 1\nat = -1\n",
     "scenario: [[call]] #1 key 'at': must be a number of seconds >= 0 (at most 34560000)"),
    ('[[call]]\nline = 1\nafter = "soon"\n',
     "scenario: [[call]] #1 key 'after': must be a number of seconds >= 0 (at most 34560000)"),
    ("[[call]]\nline = 1\ngive_up_after_rings = 0\n",
     "scenario: [[call]] #1 key 'give_up_after_rings': must be an integer from 1 to 100"),
    ("[[call]]\nline = 1\ngive_up_after_rings = 2.5\n",
     "scenario: [[call]] #1 key 'give_up_after_rings': must be an integer from 1 to 100"),
    ('[[call]]\nline = 1\ncaller = "555"\n',
     "scenario: [[call]] #1 key 'caller': must be a table, e.g. { number = \"5551234567\" }"),
    ('[[call]]\nline = 1\ncaller = { numbr = "555" }\n',
     "scenario: [[call]] #1 caller: unknown key 'numbr' (known: name, name_absent, number, number_absent)"),
    ('[[call]]\nline = 1\ncaller = { number = "555-1234" }\n',
     "scenario: [[call]] #1 caller: key 'number': must be 1 to 20 characters of 0-9 + * #"),
    ('[[call]]\nline = 1\ncaller = { number = 5551234 }\n',
     "scenario: [[call]] #1 caller: key 'number': must be 1 to 20 characters of 0-9 + * #"),
    ('[[call]]\nline = 1\ncaller = { name = "JOSÉ" }\n',
     "scenario: [[call]] #1 caller: key 'name': must be 1 to 50 printable ASCII characters"),
    ('[[call]]\nline = 1\ncaller = { number_absent = "X" }\n',
     "scenario: [[call]] #1 caller: key 'number_absent': must be \"O\" (unavailable) or \"P\" (private)"),
    ('[[call]]\nline = 1\ncaller = { name = "A", name_absent = "P" }\n',
     "scenario: [[call]] #1 caller: key 'name_absent': not with a name"),
    ('[[call]]\nline = 1\nsteps = { wait = "beep" }\n',
     "scenario: [[call]] #1 key 'steps': must be an array of steps"),
    ('[[call]]\nline = 1\n[[call]]\nline = 1\nsteps = [{ wait = "beep" }, {silence = 1}, { sya = "a.wav" }]\n',
     "scenario: [[call]] #2 steps[3]: unknown step 'sya' (say, silence, dtmf, wait, hangup)"),
    ('[[call]]\nline = 1\nsteps = ["beep"]\n',
     "scenario: [[call]] #1 steps[1]: must be a table, e.g. { wait = \"beep\" }"),
    ('[[call]]\nline = 1\nsteps = [{ wait = "beep", silence = 1 }]\n',
     "scenario: [[call]] #1 steps[1]: one step per table, found 'wait' and 'silence'"),
    ('[[call]]\nline = 1\nsteps = [{ silence = 1, on = 0.1 }]\n',
     "scenario: [[call]] #1 steps[1]: unknown key 'on' (known: silence)"),
    ('[[call]]\nline = 1\nsteps = [{ wait = "bep" }]\n',
     "scenario: [[call]] #1 steps[1]: wait: must be \"beep\", \"answer\", \"prompt:NAME\" or { seconds = N }"),
    ('[[call]]\nline = 1\nsteps = [{ wait = "prompt:" }]\n',
     "scenario: [[call]] #1 steps[1]: wait: must be \"beep\", \"answer\", \"prompt:NAME\" or { seconds = N }"),
    ('[[call]]\nline = 1\nsteps = [{ wait = { secs = 3 } }]\n',
     "scenario: [[call]] #1 steps[1]: wait: unknown key 'secs' (known: seconds)"),
    ('[[call]]\nline = 1\nsteps = [{ wait = { seconds = -3 } }]\n',
     "scenario: [[call]] #1 steps[1]: wait: key 'seconds': must be a number of seconds >= 0 (at most 86400)"),
    ('[[call]]\nline = 1\nsteps = [{ silence = "2" }]\n',
     "scenario: [[call]] #1 steps[1]: silence: must be a number of seconds >= 0 (at most 86400)"),
    ('[[call]]\nline = 1\nsteps = [{ dtmf = "12x" }]\n',
     "scenario: [[call]] #1 steps[1]: dtmf: must be a string of keys 0-9 * # A-D"),
    ('[[call]]\nline = 1\nsteps = [{ dtmf = 5 }]\n',
     "scenario: [[call]] #1 steps[1]: dtmf: must be a string of keys 0-9 * # A-D"),
    ('[[call]]\nline = 1\nsteps = [{ dtmf = "5", on = 0 }]\n',
     "scenario: [[call]] #1 steps[1]: key 'on': must be a number of seconds > 0 (at most 86400)"),
    ('[[call]]\nline = 1\nsteps = [{ dtmf = "5", level = 3 }]\n',
     "scenario: [[call]] #1 steps[1]: key 'level': must be a number of dBm0 from -50 to 0"),
    ('[[call]]\nline = 1\nsteps = [{ dtmf = "5", of = 0.1 }]\n',
     "scenario: [[call]] #1 steps[1]: unknown key 'of' (known: dtmf, level, off, on)"),
    ('[[call]]\nline = 1\nsteps = [{ hangup = "slam" }]\n',
     "scenario: [[call]] #1 steps[1]: hangup: must be one of busy, reorder, dial, loop, silent"),
    ('[[call]]\nline = 1\nsteps = [{ say = "missing.wav" }]\n',
     "scenario: [[call]] #1 steps[1]: say: missing.wav: no such file"),
    ('[[call]]\nline = 1\nsteps = [{ say = "" }]\n',
     "scenario: [[call]] #1 steps[1]: say: must be the path of a WAV file"),
    ('[[call]]\nline = 1\nsteps = [{ say = "garbage.wav" }]\n',
     "scenario: [[call]] #1 steps[1]: say: garbage.wav: not a WAV file (no RIFF/WAVE header)"),
]


@pytest.mark.parametrize("text, expected", BAD, ids=[e for _, e in BAD])
def test_bad_scenario_is_one_exact_line(folder, text, expected):
    (folder / "garbage.wav").write_bytes(b"this is not a wav file at all")
    assert error(folder, text) == expected.replace("{path}", str(folder / "scenario.toml"))
