"""The shipped prompt clips, the sentences made of them, and the script that makes them."""

import importlib.util
import json
import math
import operator
import subprocess
import sys
from array import array
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from linebox.calls.prompts import (
    LANGUAGES,
    PAUSE_SECONDS,
    PROMPT_DIR,
    REQUIRED,
    Prompts,
    UnknownPrompt,
    beep,
    clip_names,
)
from linebox.dsp.gen import tone
from linebox.dsp.levels import DBM0_MEAN_SQUARE, amplitude
from linebox.errors import LineboxError
from linebox.wavfile import read_wav, read_wav_info, write_wav

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "make_prompts.py"


def power_dbm0(samples) -> float:
    return 10 * math.log10(sum(map(operator.mul, samples, samples)) / len(samples) / DBM0_MEAN_SQUARE)


def active_level_dbm0(samples) -> float:
    """Mean power of the 20 ms frames within 30 dB of the loudest one."""
    frames = [samples[i:i + 160] for i in range(0, len(samples) - 159, 160)]
    powers = [sum(map(operator.mul, f, f)) / 160 for f in frames]
    active = [p for p in powers if p >= max(powers) / 1000]
    return 10 * math.log10(sum(active) / len(active) / DBM0_MEAN_SQUARE)


@pytest.fixture(scope="module")
def shipped() -> dict[str, dict]:
    """Every clip in the package, by language and name."""
    return {lang: {p.stem: read_wav(p) for p in (PROMPT_DIR / lang).glob("*.wav")}
            for lang in (*LANGUAGES, "common")}


# ------------------------------------------------------------------ the shipped clips

@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_language_ships_exactly_the_clips_the_flows_need(shipped, lang):
    assert sorted(shipped[lang]) == sorted(clip_names(lang))
    assert set(REQUIRED) <= set(shipped[lang])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_clips_are_8khz_mono_mulaw(lang):
    for name in clip_names(lang):
        info = read_wav_info(PROMPT_DIR / lang / f"{name}.wav")
        assert (info.rate, info.channels, info.encoding) == (8000, 1, "ulaw"), name


@pytest.mark.parametrize("lang", LANGUAGES)
def test_clips_are_speech_at_minus_16_dbm0_without_clipping(shipped, lang):
    for name, samples in shipped[lang].items():
        assert len(samples) >= 0.15 * 8000, name
        assert -17.5 <= active_level_dbm0(samples) <= -14.5, name
        assert max(map(abs, samples)) < 32000, name


@pytest.mark.parametrize("lang", LANGUAGES)
def test_clips_start_and_end_within_100_ms_of_speech(shipped, lang):
    floor = amplitude(-45.0)
    for name, samples in shipped[lang].items():
        loud = [i for i, v in enumerate(samples) if abs(v) > floor]
        assert loud[0] < 800, f"{name}: {loud[0] / 8} ms of leading silence"
        assert len(samples) - 1 - loud[-1] < 800, f"{name}: trailing silence"


def test_beep_is_1khz_for_half_a_second_at_minus_10_dbm0():
    b = beep()
    assert len(b) == 4000
    assert power_dbm0(b) == pytest.approx(-10.0, abs=0.2)
    rising = sum(1 for a, c in zip(b, b[1:], strict=False) if a < 0 <= c)
    assert rising in (499, 500)            # 1000 cycles a second


def test_beep_is_also_a_clip_of_every_language():
    assert Prompts("de").clip("beep") == beep()


# ------------------------------------------------------------------ loading

def test_clip_returns_a_copy_that_callers_may_change():
    p = Prompts("en")
    first = p.clip("goodbye")
    first[0:100] = first[0:0]
    assert len(Prompts("en").clip("goodbye")) == len(first) + 100


def test_unknown_clip_is_a_lineboxerror_and_a_keyerror():
    p = Prompts("fr")
    assert not p.has("no_such_prompt")
    with pytest.raises(UnknownPrompt) as e:
        p.clip("no_such_prompt")
    assert isinstance(e.value, LineboxError) and isinstance(e.value, KeyError)
    assert str(e.value) == "prompts: no clip 'no_such_prompt' for language 'fr'"


def test_clip_names_cannot_leave_the_prompt_folders():
    p = Prompts("en", extra_dirs=[PROMPT_DIR / "de"])
    assert not p.has("../en/goodbye")
    with pytest.raises(UnknownPrompt):
        p.clip("../en/goodbye")


def test_unknown_language_is_refused():
    with pytest.raises(LineboxError, match="unknown language 'ru'"):
        Prompts("ru")


def test_extra_dirs_replace_shipped_clips_and_fall_back_to_them(tmp_path):
    custom = tone(440.0, 0.3, -12.0)
    write_wav(tmp_path / "goodbye.wav", custom)
    p = Prompts("es", extra_dirs=[tmp_path], voice="espeak")
    assert p.clip("goodbye") == custom
    assert p.clip("invalid") == read_wav(PROMPT_DIR / "es" / "invalid.wav")


def test_samples_joins_clips_with_150_ms_pauses():
    p = Prompts("en")
    a, b, c = p.clip("you_have"), p.clip("n3"), p.clip("new_messages")
    gap = round(PAUSE_SECONDS * 8000)
    out = p.samples(["you_have", "n3", "new_messages"])
    assert gap == 1200
    pause = array("h", [0] * gap)
    assert out == a + pause + b + pause + c
    assert p.samples([]) == array("h")


# ------------------------------------------------------------------ sentences

@pytest.mark.parametrize("lang, n, names", [
    ("en", 0, ["n0"]),
    ("en", 21, ["n21"]),
    ("en", 100, ["h1"]),
    ("en", 115, ["h1", "n15"]),
    ("en", 2005, ["t2", "n5"]),
    ("en", 9999, ["t9", "h9", "n99"]),
    ("de", 21, ["n21"]),
    ("de", 121, ["h1", "n21"]),
    ("de", 1001, ["t1", "n1"]),
    ("fr", 71, ["n71"]),
    ("fr", 200, ["h2"]),
    ("fr", 201, ["h2", "n1"]),
    ("fr", 1000, ["t1"]),
    ("es", 100, ["n100"]),
    ("es", 101, ["h1", "n1"]),
    ("es", 1100, ["t1", "n100"]),
    ("es", 500, ["h5"]),
])
def test_number_names_the_clips_of_each_language(lang, n, names):
    assert Prompts(lang).number(n) == names


@pytest.mark.parametrize("n", [-1, 10000])
def test_number_out_of_range_is_refused(n):
    with pytest.raises(ValueError):
        Prompts("en").number(n)


def test_digits_say_each_key_and_skip_punctuation():
    assert Prompts("en").digits("+1 (555) 0*#") == ["n1", "n5", "n5", "n5", "n0", "star", "pound"]


@pytest.mark.parametrize("lang, new, saved, names", [
    ("en", 0, 0, ["no_messages"]),
    ("en", 1, 0, ["you_have", "n1", "new_message"]),
    ("en", 3, 1, ["you_have", "n3", "new_messages", "and", "n1", "saved_message"]),
    ("en", 0, 2, ["you_have", "n2", "saved_messages"]),
    ("de", 1, 21, ["you_have", "c1", "new_message", "and", "n21", "saved_messages"]),
    ("fr", 1, 2, ["you_have", "n1", "new_message", "and", "n2", "saved_messages"]),
    ("es", 1, 0, ["you_have", "c1", "new_message"]),
    ("es", 21, 31, ["you_have", "c21", "new_messages", "and", "c31", "saved_messages"]),
    ("es", 101, 0, ["you_have", "h1", "c1", "new_messages"]),
    ("es", 100, 0, ["you_have", "n100", "new_messages"]),
])
def test_counts_use_singular_plural_and_counting_forms(lang, new, saved, names):
    assert Prompts(lang).counts(new, saved) == names


def test_greeting_names_the_box_digit_by_digit():
    assert Prompts("de").greeting("104") == ["greeting_pre", "n1", "n0", "n4", "greeting_post"]


def test_message_intro_says_message_and_its_number():
    assert Prompts("fr").message_intro(21) == ["message_number", "n21"]


TUESDAY = datetime(2026, 12, 1)         # Tuesday, December 1st
CALLER = ["envelope_from", "n5", "n5", "n5", "n1", "n2"]
RECEIVED = ["envelope_received", "tue"]


@pytest.mark.parametrize("lang, number, day, hour, minute, names", [
    # US English: "received on Tuesday, December first, at two oh five PM"
    ("en", "555-12", 1, 14, 5, CALLER + RECEIVED + ["month12", "o1", "at", "n2", "oh", "n5", "pm"]),
    ("en", None, 1, 9, 0, ["unknown_caller"] + RECEIVED + ["month12", "o1", "at", "n9", "am"]),
    ("en", "", 1, 0, 45, ["unknown_caller"] + RECEIVED + ["month12", "o1", "at", "n12", "n45", "am"]),
    ("en", None, 1, 12, 10, ["unknown_caller"] + RECEIVED + ["month12", "o1", "at", "n12", "n10", "pm"]),
    ("de", "555-12", 1, 1, 30, CALLER + RECEIVED + ["o1", "month12", "at", "hour1", "oclock", "n30"]),
    ("fr", None, 1, 21, 0, ["unknown_caller"] + RECEIVED + ["o1", "month12", "at", "hour21", "oclock"]),
    ("fr", None, 1, 0, 15, ["unknown_caller"] + RECEIVED + ["o1", "month12", "at", "n0", "oclock_one", "n15"]),
    ("es", None, 1, 1, 0, ["unknown_caller"] + RECEIVED + ["n1", "month12", "at_one", "hour1", "oclock"]),
    ("es", None, 1, 14, 30, ["unknown_caller"] + RECEIVED + ["n1", "month12", "at", "n14", "and", "n30"]),
    ("it", None, 1, 1, 5, ["unknown_caller"] + RECEIVED + ["o1", "month12", "at_one", "and", "n5"]),
    ("it", None, 1, 14, 0, ["unknown_caller"] + RECEIVED + ["o1", "month12", "at", "n14"]),
])
def test_envelope_says_caller_date_and_time_as_the_language_reads_them(lang, number, day, hour, minute, names):
    received = TUESDAY.replace(day=day, hour=hour, minute=minute)
    assert Prompts(lang).envelope(number, received) == names


@pytest.mark.parametrize("lang, names", [
    ("en", ["wed", "month12", "o2"]), ("de", ["wed", "o2", "month12"]),
    ("fr", ["wed", "n2", "month12"]), ("es", ["wed", "n2", "month12"]), ("it", ["wed", "n2", "month12"]),
])
def test_envelope_says_other_days_of_the_month_as_each_language_does(lang, names):
    said = Prompts(lang).envelope(None, datetime(2026, 12, 2, 10, 10))
    assert said[2:5] == names


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_sentence_uses_only_shipped_clips(lang):
    p = Prompts(lang)
    used = set()
    for n in range(10000):
        used.update(p.number(n))
    for new in range(0, 130):
        used.update(p.counts(new, 130 - new))
    for day in range(1, 8):
        for hour in range(24):
            for minute in range(60):
                used.update(p.envelope("0123456789*#", datetime(2024, 1, day, hour, minute)))
    for offset in range(366):                  # every day of a leap year
        used.update(p.envelope(None, datetime(2024, 1, 1, 12, 0) + timedelta(days=offset)))
    used.update(p.greeting("100"))
    assert used <= set(clip_names(lang))


# ------------------------------------------------------------------ the script

def run_script(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True, timeout=60, check=True)


def test_script_makes_the_same_bytes_twice(tmp_path):
    for out in ("a", "b"):
        run_script("--lang", "de", "--only", "goodbye", "--only", "n21", "--out", tmp_path / out)
    made = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.wav"))
    assert made == [Path("de/goodbye.wav"), Path("de/n21.wav")]
    for rel in made:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
        assert read_wav_info(tmp_path / "a" / rel).encoding == "ulaw"


def test_script_remakes_only_what_changed(tmp_path):
    first = run_script("--lang", "en", "--only", "goodbye", "--out", tmp_path)
    wav = tmp_path / "en" / "goodbye.wav"
    stamp = wav.stat().st_mtime_ns
    again = run_script("--lang", "en", "--only", "goodbye", "--out", tmp_path)
    assert first.stdout == "make_prompts: 1 made, 0 unchanged, 0 removed\n"
    assert again.stdout == "make_prompts: 0 made, 1 unchanged, 0 removed\n"
    assert wav.stat().st_mtime_ns == stamp


def test_script_refuses_an_unknown_clip_name(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--only", "nope", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == "make_prompts: error: no clip named nope\n"


def test_shipped_clips_were_made_from_the_current_texts():
    """A text edited without `make prompts` shows up here as a stale hash."""
    spec = importlib.util.spec_from_file_location("make_prompts", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    jobs = script.plan(script.load_texts(), LANGUAGES, None)
    manifest = json.loads((PROMPT_DIR / "manifest.json").read_text())["clips"]
    assert manifest == {j["id"]: j["hash"] for j in jobs}
