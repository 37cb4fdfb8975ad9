"""Greetings (by command and by phone), the full-box lamp, and `linebox demo`."""

from conftest import run_linebox
from simkit import PIN, Sim, names, of, speech_wav

OWNER = 'caller = { number = "5550000001" }'


def _call(steps: str, caller: str = "", when: str = "at = 1") -> str:
    return f"[[call]]\nline = 1\n{when}\n{caller}\nsteps = [\n{steps}\n]\n"


def test_greeting_command_sets_the_box_greeting_that_callers_then_hear(tmp_path, speech_files):
    sim = Sim(tmp_path)
    wav = speech_wav(tmp_path, speech_files[2], 2.5, name="hello.wav")
    res = run_linebox("greeting", "100", wav, "--config", sim.config_path, "--data", sim.data)
    assert res.returncode == 0, res.stderr.decode()
    assert (sim.data / "greetings" / "100.wav").exists()
    ev = sim.run(_call('{ wait = "prompt:greeting" }, { wait = "beep" }, { hangup = "busy" }'))
    greeting, beep = of(ev, "prompt", name="greeting")[0], of(ev, "prompt", name="beep")[0]
    # The own greeting (2.5 s) plays, not the system one naming the box (over 6 s).
    assert 2.4 <= beep["t"] - greeting["t"] <= 2.8
    res = run_linebox("greeting", "100", "--clear", "--config", sim.config_path, "--data", sim.data)
    assert res.returncode == 0 and not (sim.data / "greetings" / "100.wav").exists()


def test_greeting_command_rejects_an_unknown_box_and_a_bad_wav(tmp_path):
    sim = Sim(tmp_path)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....nope")
    for args in (("999", bad), ("100", bad), ("100",)):
        res = run_linebox("greeting", *args, "--config", sim.config_path, "--data", sim.data)
        assert res.returncode == 2
        assert res.stderr.decode().count("\n") == 1


def test_owner_records_a_greeting_by_phone(tmp_path, speech_files):
    sim = Sim(tmp_path)
    voice = speech_wav(tmp_path, speech_files[3], 3.0)
    ev = sim.run(_call('{ wait = "prompt:greeting" }, { dtmf = "*" }, { wait = "prompt:pin" }, '
                       f'{{ dtmf = "{PIN}#" }}, {{ wait = "prompt:menu" }}, {{ dtmf = "0" }}, '
                       '{ wait = "prompt:options" }, { dtmf = "1" }, { wait = "beep" }, '
                       f'{{ say = "{voice}" }}, {{ dtmf = "#" }}, {{ wait = "prompt:greeting_saved" }}, '
                       '{ hangup = "busy" }', OWNER))
    assert "greeting_saved" in names(ev)
    ev2 = sim.run(_call('{ wait = "beep" }, { hangup = "busy" }'))
    greeting, beep = of(ev2, "prompt", name="greeting")[0], of(ev2, "prompt", name="beep")[0]
    assert 2.8 <= beep["t"] - greeting["t"] <= 3.8


def test_the_lamp_blinks_fast_when_the_box_is_full(tmp_path, speech_files):
    sim = Sim(tmp_path, max_messages=2)
    voice = speech_wav(tmp_path, speech_files[0], 3.0)
    leave = _call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }}', when="after = 5")
    ev = sim.run(leave + leave)
    assert [e["pattern"] for e in of(ev, "led", box="100")] == ["blink", "fast"]


def test_demo_tells_the_whole_story():
    res = run_linebox("demo", timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    out = res.stdout.decode()
    for line in ("Caller ID heard between the rings: 5551234567 JOHN DOE", "Linebox hears busy tone",
                 "lamp of box 100 is now BLINK", "Login to box 100: accepted", "is now saved",
                 "lamp of box 100 is now OFF"):
        assert line in out, line
    assert out.count("the caller presses \u2022") == 4, "the PIN is not shown while it is typed"
    assert out.index("BLINK") < out.index("accepted") < out.index("OFF")
