"""`linebox analyze`: the listener over a recording, through the real command line."""

import json
import subprocess

import pytest

from conftest import run_linebox
from linebox.dsp import gen
from linebox.dsp.fskmod import callerid_burst, encode_mdmf
from linebox.dsp.plans import tone_signal
from linebox.wavfile import read_wav, write_wav

BUSY_ONSET = None


def _line_recording(speech_file):
    """A line as an FXO port hears it: caller ID in the ring gap, keys, speech, busy tone."""
    global BUSY_ONSET
    speech = read_wav(speech_file)[8000:8000 * 4]
    sig = gen.silence(0.6)
    sig += callerid_burst("bell202", encode_mdmf("5551234567", "JOHN DOE", "11221030"))
    sig += gen.silence(1.0) + gen.dtmf_string("19#", on=0.08, off=0.1) + gen.silence(0.7)
    sig += speech + gen.silence(0.8)
    BUSY_ONSET = len(sig) / 8000
    sig += tone_signal("us", "busy", 6.0)
    return gen.mix(sig, gen.white_noise(len(sig) / 8000, -60.0))


@pytest.fixture(scope="module")
def line_wav(tmp_path_factory, speech_files):
    path = tmp_path_factory.mktemp("analyze") / "line.wav"
    write_wav(path, _line_recording(speech_files[0]))
    return path


def _events(path, *extra):
    res = run_linebox("analyze", path, "--json", *extra)
    assert res.returncode == 0, res.stderr.decode()
    return [json.loads(line) for line in res.stdout.decode().splitlines()]


def test_analyze_reports_callerid_keys_speech_and_busy_in_time_order(line_wav):
    events = _events(line_wav)
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    cid = [e for e in events if e["type"] == "callerid"]
    assert len(cid) == 1
    assert cid[0]["number"] == "5551234567" and cid[0]["name"] == "JOHN DOE"
    assert cid[0]["datetime"] == "11221030" and cid[0]["standard"] == "bell202"
    assert "".join(e["digit"] for e in events if e["type"] == "dtmf") == "19#"
    tones = [e for e in events if e["type"] == "tone"]
    assert [t["tone"] for t in tones] == ["busy"]
    assert abs(tones[0]["t"] - BUSY_ONSET) <= 0.5
    assert tones[0]["at"] - BUSY_ONSET <= 3.5
    speech = [e for e in events if e["type"] == "speech"]
    assert speech, "the spoken part is reported as speech"
    assert all(s["t"] + s["dur"] <= BUSY_ONSET + 0.5 for s in speech), "busy tone is not speech"


@pytest.mark.parametrize("sox_args", [
    ["-e", "mu-law", "-b", "8"],
    ["-e", "a-law", "-b", "8"],
    ["-e", "unsigned", "-b", "8"],
    ["-r", "16000"],
    ["-r", "44100"],
    ["-r", "48000"],
    ["-c", "2"],
], ids=["ulaw", "alaw", "pcm8", "16k", "44k1", "48k", "stereo"])
def test_analyze_reads_every_supported_wav_kind(line_wav, tmp_path, sox_args):
    out = tmp_path / "conv.wav"
    subprocess.run(["sox", str(line_wav), *sox_args, str(out)], check=True)
    events = _events(out)
    assert "".join(e["digit"] for e in events if e["type"] == "dtmf") == "19#"
    assert [e["tone"] for e in events if e["type"] == "tone"] == ["busy"]


def test_analyze_reads_standard_input(line_wav):
    res = run_linebox("analyze", "-", "--json", input=line_wav.read_bytes())
    assert res.returncode == 0
    assert any(json.loads(x)["type"] == "callerid" for x in res.stdout.decode().splitlines())


def test_analyze_table_output_is_aligned_text(line_wav):
    res = run_linebox("analyze", line_wav)
    lines = res.stdout.decode().splitlines()
    assert lines[0].split() == ["t", "(s)", "event", "what"]
    assert any("busy" in x for x in lines[1:]) and any("key 9" in x for x in lines[1:])


def _assert_one_line_error(res):
    assert res.returncode == 2
    err = res.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("linebox: error: "), err
    assert "Traceback" not in err
    assert res.stdout == b""


def test_analyze_rejects_a_file_that_is_not_a_wav(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio at all")
    _assert_one_line_error(run_linebox("analyze", bad))


def test_analyze_rejects_an_unsupported_rate(tmp_path, line_wav):
    out = tmp_path / "22k.wav"
    subprocess.run(["sox", str(line_wav), "-r", "22050", str(out)], check=True)
    res = run_linebox("analyze", out)
    _assert_one_line_error(res)
    assert "22050" in res.stderr.decode()


def test_analyze_rejects_float_samples(tmp_path, line_wav):
    out = tmp_path / "float.wav"
    subprocess.run(["sox", str(line_wav), "-e", "floating-point", "-b", "32", str(out)], check=True)
    _assert_one_line_error(run_linebox("analyze", out))


def test_analyze_rejects_a_missing_file_and_an_unknown_plan(tmp_path, line_wav):
    _assert_one_line_error(run_linebox("analyze", tmp_path / "nope.wav"))
    _assert_one_line_error(run_linebox("analyze", line_wav, "--plan", "mars"))


def test_analyze_rejects_an_empty_file(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    _assert_one_line_error(run_linebox("analyze", empty))
