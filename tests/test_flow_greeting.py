"""Greetings (by command and by phone), the full-box lamp, and `linebox demo`."""

import os
import struct
import subprocess
import tomllib
from array import array

import pytest

from conftest import run_linebox
from linebox.calls.prompts import Prompts
from linebox.config import parse_config
from linebox.wavfile import read_wav, write_wav
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


# ------------------------------------------------------------------ the box's name, greeting kinds

def _named_sim(tmp_path, name: str = "Main office", language: str = "en", extra: str = "") -> Sim:
    """A Sim whose box 100 has this name and language."""
    sim = Sim(tmp_path)
    text = sim.config_path.read_text().replace(
        'name = "Box 100"', f'name = "{name}"\nlanguage = "{language}"\n{extra}')
    sim.config_path.write_text(text)
    sim.config = parse_config(tomllib.loads(text), str(sim.config_path))
    return sim


def _to_beep(ev) -> float:
    greeting, beep = of(ev, "prompt", name="greeting")[0], of(ev, "prompt", name="beep")[0]
    return beep["t"] - greeting["t"]


def _system_greeting_seconds(sim, language: str, voice: str = "auto") -> float:
    from linebox.calls.speech import name_cache_path
    p = Prompts(language, voice=voice)
    name = read_wav(name_cache_path(sim.data / "names", language, sim.config.boxes["100"].name))
    return len(p.with_name(name)) / 8000


@pytest.mark.parametrize("language", ("en", "de", "fr", "es", "it"))
def test_system_greeting_says_the_box_name_and_the_beep_comes_within_5_s(tmp_path, language):
    sim = _named_sim(tmp_path, "Praxis Dr. Weber", language)
    ev = sim.run(_call('{ wait = "beep" }, { hangup = "busy" }'))
    spoken = list((sim.data / "names").glob(f"{language}-*.wav"))
    assert len(spoken) == 1                        # spoken once at load, kept
    assert _to_beep(ev) < 5.0
    # What played is the name greeting (the number greeting has another length).
    assert abs(_to_beep(ev) - _system_greeting_seconds(sim, language)) < 0.1


def test_prompts_espeak_in_the_box_gives_the_robot_voice(tmp_path):
    sim = _named_sim(tmp_path, extra='prompts = "espeak"')
    ev = sim.run(_call('{ wait = "beep" }, { hangup = "busy" }'))
    assert abs(_to_beep(ev) - _system_greeting_seconds(sim, "en", "espeak")) < 0.1
    assert abs(_system_greeting_seconds(sim, "en", "espeak") - _system_greeting_seconds(sim, "en")) > 0.05


def _owner(steps: str) -> str:
    return _call('{ wait = "prompt:greeting" }, { dtmf = "*" }, { wait = "prompt:pin" }, '
                 f'{{ dtmf = "{PIN}#" }}, {{ wait = "prompt:menu" }}, {{ dtmf = "0" }}, '
                 f'{{ wait = "prompt:options" }}, {steps}, {{ hangup = "busy" }}', OWNER)


def test_temporary_greeting_by_phone_overrides_until_the_owner_removes_it(tmp_path, speech_files):
    sim = _named_sim(tmp_path)
    voice = speech_wav(tmp_path, speech_files[3], 3.0)
    ev = sim.run(_owner(f'{{ dtmf = "4" }}, {{ wait = "prompt:record_temporary" }}, {{ wait = "beep" }}, '
                        f'{{ say = "{voice}" }}, {{ dtmf = "#" }}, {{ wait = "prompt:greeting_saved" }}'))
    assert "greeting_saved" in names(ev)
    assert (sim.data / "greetings" / "100-temporary.wav").exists()
    caller = _call('{ wait = "beep" }, { hangup = "busy" }')
    assert 2.8 <= _to_beep(sim.run(caller)) <= 3.8          # the temporary greeting
    # The owner is reminded it is on, and removes it with 4, 2 (Asterisk's keys).
    ev = sim.run(_owner('{ dtmf = "4" }, { wait = "prompt:temporary_menu" }, { dtmf = "2" }, '
                        '{ wait = "prompt:temporary_removed" }'))
    assert names(ev).index("temporary_active") < names(ev).index("menu")
    assert not (sim.data / "greetings" / "100-temporary.wav").exists()
    assert abs(_to_beep(sim.run(caller)) - _system_greeting_seconds(sim, "en")) < 0.1


def test_temporary_greeting_comes_before_the_box_greeting(tmp_path, speech_files):
    sim = _named_sim(tmp_path)
    own = speech_wav(tmp_path, speech_files[2], 4.0, name="own.wav")
    temp = speech_wav(tmp_path, speech_files[1], 2.0, name="temp.wav")
    args = ("--config", sim.config_path, "--data", sim.data)
    assert run_linebox("greeting", "100", own, *args).returncode == 0
    assert run_linebox("greeting", "100", temp, "--kind", "temporary", *args).returncode == 0
    caller = _call('{ wait = "beep" }, { hangup = "busy" }')
    assert 1.5 <= _to_beep(sim.run(caller)) <= 2.3
    assert run_linebox("greeting", "100", "--clear", "--kind", "temporary", *args).returncode == 0
    assert 3.5 <= _to_beep(sim.run(caller)) <= 4.3


def test_owner_records_the_name_by_phone_and_the_system_greeting_says_it(tmp_path, speech_files):
    sim = _named_sim(tmp_path)
    voice = speech_wav(tmp_path, speech_files[0], 1.6)
    ev = sim.run(_owner(f'{{ dtmf = "5" }}, {{ wait = "prompt:record_name" }}, {{ wait = "beep" }}, '
                        f'{{ say = "{voice}" }}, {{ silence = 2.0 }}, {{ wait = "prompt:greeting_saved" }}'))
    assert "greeting_saved" in names(ev)
    name = read_wav(sim.data / "greetings" / "100-name.wav")
    assert 0.5 <= len(name) / 8000 <= 2.5
    ev = sim.run(_call('{ wait = "beep" }, { hangup = "busy" }'))
    assert abs(_to_beep(ev) - len(Prompts("en").with_name(name)) / 8000) < 0.1
    assert _to_beep(ev) < 5.0


def test_a_name_recording_stops_at_2_5_s(tmp_path, speech_files):
    sim = _named_sim(tmp_path)
    voice = speech_wav(tmp_path, speech_files[0], 6.0)
    sim.run(_owner(f'{{ dtmf = "5" }}, {{ wait = "beep" }}, {{ say = "{voice}" }}'))
    assert len(read_wav(sim.data / "greetings" / "100-name.wav")) / 8000 <= 2.5


# ------------------------------------------------------------------ linebox greeting

def test_greeting_command_resamples_any_rate(tmp_path, speech_files):
    sim = _named_sim(tmp_path)
    wav = speech_wav(tmp_path, speech_files[2], 2.5, name="hello.wav")
    for rate in ("22050", "11025", "32000"):
        odd = tmp_path / f"hello{rate}.wav"
        subprocess.run(["sox", str(wav), "-r", rate, str(odd)], check=True)
        res = run_linebox("greeting", "100", odd, "--config", sim.config_path, "--data", sim.data)
        assert res.returncode == 0, res.stderr.decode()
        kept = read_wav(sim.data / "greetings" / "100.wav")
        assert 2.3 <= len(kept) / 8000 <= 2.6


def _sparse_wav(path, seconds: float, rate: int = 8000):
    """A WAV header for ``seconds`` of audio, the data a hole in the file (no disk used)."""
    n = int(seconds * rate) * 2
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt "
                + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16) + b"data" + struct.pack("<I", n))
        f.truncate(44 + n)
    return path


def test_greeting_command_applies_the_phones_limits_in_one_line(tmp_path, speech_files):
    sim = _named_sim(tmp_path)
    args = ("--config", sim.config_path, "--data", sim.data)
    empty = tmp_path / "empty.wav"
    write_wav(empty, array("h"))
    long_name = speech_wav(tmp_path, speech_files[2], 4.0, name="long.wav")
    cases = [((empty,), "silent"),
             ((_sparse_wav(tmp_path / "18h.wav", 18 * 3600, 22050),), "too long: 64800.0 s (at most 60 s)"),
             ((long_name, "--kind", "name"), "at most 2.5 s"),
             ((long_name, "--kind", "holiday"), "invalid choice")]
    for extra, says in cases:
        res = run_linebox("greeting", "100", *extra, *args)
        err = res.stderr.decode()
        assert res.returncode == 2, extra
        assert says in err and (err.count("\n") == 1 or "usage" in err), err
    assert not (sim.data / "greetings" / "100-name.wav").exists()


def test_greeting_command_with_a_bad_data_folder_says_one_line(tmp_path, speech_files):
    sim = _named_sim(tmp_path)
    wav = speech_wav(tmp_path, speech_files[2], 2.0, name="hello.wav")
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    res = run_linebox("greeting", "100", wav, "--config", sim.config_path, "--data", afile)
    err = res.stderr.decode()
    assert res.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    if os.geteuid() == 0:
        return                                    # root writes into read-only folders
    ro = tmp_path / "ro"
    ro.mkdir()
    assert run_linebox("greeting", "100", wav, "--config", sim.config_path, "--data", ro).returncode == 0
    for p in (ro, ro / "greetings"):
        p.chmod(0o555)
    try:
        res = run_linebox("greeting", "100", wav, "--config", sim.config_path, "--data", ro)
        err = res.stderr.decode()
        assert res.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    finally:
        for p in (ro, ro / "greetings"):
            p.chmod(0o755)


# ------------------------------------------------------------------ the envelope

def test_envelope_is_read_in_the_devices_time_zone(tmp_path):
    from dataclasses import replace

    from linebox.calls.flows import Services, _local
    sim = _named_sim(tmp_path)
    cfg = replace(sim.config, device=replace(sim.config.device, timezone="America/New_York"))
    when = _local(Services(cfg, None, None, None), "2026-12-01T19:05:00+00:00")
    said = Prompts("en").envelope("5551234", when)
    assert said[-5:] == ["at", "n2", "oh", "n5", "pm"] and "tue" in said
    cfg = replace(cfg, device=replace(cfg.device, timezone="Asia/Tokyo"))
    when = _local(Services(cfg, None, None, None), "2026-12-01T19:05:00+00:00")
    said = Prompts("en").envelope("5551234", when)
    assert said[-6:] == ["o2", "at", "n4", "oh", "n5", "am"] and "wed" in said


def test_without_espeak_ng_the_system_greeting_says_the_box_number(tmp_path, monkeypatch, caplog):
    import logging
    caplog.set_level(logging.INFO, logger="linebox")
    sim = _named_sim(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))      # no espeak-ng on this machine
    ev = sim.run(_call('{ wait = "beep" }, { hangup = "busy" }'))
    p = Prompts("en")
    assert abs(_to_beep(ev) - len(p.samples(p.greeting("100"))) / 8000) < 0.1
    assert _to_beep(ev) < 5.0
    assert any("espeak-ng is not installed" in r.getMessage() for r in caplog.records)
