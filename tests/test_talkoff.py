"""DTMF talk-off: speech and music must never be heard as a key press.

A false key ends a caller's recording by mistake, so the detector is run over all of the
shared recorded speech (four speakers, about 17 minutes) as recorded, 6 dB louder and
10 dB quieter, and over a minute of synthetic music (chords of notes with harmonics and
vibrato), and over text-to-speech voices of espeak-ng (robocalls and announcements are
callers too). Control tests splice real keys between the same speech, so a detector
that hears nothing at all cannot pass.
"""

import functools
import math
import operator
import random
import subprocess
import wave
from array import array
from itertools import repeat

import pytest

from linebox import RATE
from linebox.dsp import gen
from linebox.dsp.levels import amplitude, dbm0
from test_dtmf import detect


@functools.cache
def load(path) -> array:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (RATE, 2, 1)
        return array("h", w.readframes(w.getnframes()))


def with_gain(samples: array, gain_db: float) -> array:
    """``samples`` amplified by ``gain_db`` and clipped, through a 65,536-entry table."""
    g = 10.0 ** (gain_db / 20.0)
    table = [gen.clip(v * g) for v in range(32768)] + [gen.clip(v * g) for v in range(-32768, 0)]
    return array("h", map(table.__getitem__, samples))


@pytest.mark.parametrize("gain_db", [0.0, 6.0, -10.0])
def test_no_false_keys_in_recorded_speech(speech_files, gain_db):
    for path in speech_files:
        speech = load(path) if gain_db == 0.0 else with_gain(load(path), gain_db)
        assert detect(speech) == [], path.name


def test_keys_spliced_between_speech_are_all_heard(speech_files):
    # The control for the talk-off runs: same files, same feeding, real keys found.
    speech = load(speech_files[0])
    sig = array("h")
    for i, d in enumerate("0123456789*#ABCD"):
        sig += speech[i * 4000:(i + 1) * 4000] + gen.silence(0.05)
        sig += gen.dtmf(d, on=0.06, off=0.05, low_dbm0=-12.0, high_dbm0=-10.0)
    assert "".join(e["digit"] for e in detect(sig)) == "0123456789*#ABCD"


def note_hz(midi: int) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12.0)


def music(seconds: float, seed: int) -> array:
    """Chords of 3 or 4 equal-tempered notes, each with six harmonics falling off as 1/h
    and its own vibrato, a soft attack and decay, one chord after another."""
    rnd = random.Random(seed)
    out = []
    while len(out) < seconds * RATE:
        n = int(rnd.uniform(0.25, 0.8) * RATE)
        acc = [0.0] * n
        for midi in rnd.sample(range(55, 89), rnd.choice((3, 4))):   # G3 .. E6
            f0 = note_hz(midi)
            rate, depth = rnd.uniform(4.5, 6.5), rnd.uniform(0.004, 0.012)
            phase0 = rnd.uniform(0.0, 2.0 * math.pi)
            # Instantaneous phase of a note with sinusoidal vibrato.
            k = 2.0 * math.pi * f0 / RATE
            m = depth * f0 / rate
            wv = 2.0 * math.pi * rate / RATE
            phase = [k * i + m * math.sin(wv * i) + phase0 for i in range(n)]
            for h in range(1, 7):
                if f0 * h >= RATE / 2:
                    break
                a = 1.0 / h
                acc = list(map(operator.add, acc,
                               map(operator.mul, map(math.sin, map(operator.mul, phase, repeat(h))),
                                   repeat(a))))
        attack, release = int(0.03 * RATE), int(0.08 * RATE)
        env = [min(1.0, i / attack, (n - i) / release) for i in range(n)]
        out += map(operator.mul, acc, env)
    peak = max(map(abs, out))
    return array("h", (int(v / peak * 20000.0) for v in out[:int(seconds * RATE)]))


@pytest.fixture(scope="module")
def minute_of_music() -> array:
    return music(60.0, seed=7)


@pytest.mark.parametrize("gain_db", [0.0, -12.0, -22.0])
def test_no_false_keys_in_a_minute_of_music(minute_of_music, gain_db):
    sig = minute_of_music if gain_db == 0.0 else with_gain(minute_of_music, gain_db)
    assert dbm0(sig) > -36.0            # loud enough that every frame is analysed
    assert detect(sig) == []


def test_music_generator_makes_real_chords():
    # The music must be musical signal at a useful level, not silence or clipping.
    sig = music(2.0, seed=3)
    assert len(sig) == 2 * RATE
    assert -20.0 < dbm0(sig) < -3.0
    assert max(map(abs, sig)) <= amplitude(0.0)


# -- synthetic voices: text-to-speech callers (robocalls, announcements) ----------------

ROBOCALL = ("Hello, this is an important message about your account. Please call us back as soon "
            "as possible. Your call is important to us. Please stay on the line and the next "
            "available agent will answer. Press one for sales, press two for support, or stay on "
            "the line for the operator. The quick brown fox jumps over the lazy dog. We are "
            "closed for the holidays and will reopen on Monday, January the fourth, at nine in "
            "the morning. Thank you for calling. Congratulations, you have won a free cruise to "
            "the Bahamas. To claim your prize, press nine now. This is the county library calling "
            "to remind you that your books are due on Friday. Have a wonderful evening, and "
            "goodbye.")
# (voice, pitch 0-99, words per minute). en+f5 at pitch 70 and en+f2 at 99 put their
# 4th/5th and 3rd/4th harmonics on 941 + 1209 Hz ("Bahamas", "goodbye") and were heard
# as "*"; en+m7 at 99, 6 dB up, its 5th and 7th on 941 + 1336 Hz ("0"); fr+f2 reading
# English made the listener hear "*" in issue 14; en+klatt4 at 99, 6 dB up, "#" (5th and
# 8th harmonics on 941 + 1477 Hz). The others cover male, female,
# whispered and Klatt voices of four languages at low and high pitches.
VOICES = [("en+f3", 90, 140), ("en+f5", 70, 140), ("en+f5", 90, 175), ("en+f2", 99, 140),
          ("en+m7", 99, 140), ("fr+f2", 50, 175), ("fr+f2", 90, 140), ("en+f1", 99, 175),
          ("en+f4", 30, 140), ("en+m3", 10, 175), ("de+f4", 70, 160), ("es+f3", 80, 160),
          ("en+klatt4", 60, 150), ("en+klatt4", 99, 140), ("en+whisper", 50, 160)]


def espeak(text: str, voice: str, pitch: int, wpm: int) -> array:
    """espeak-ng's speech of ``text`` resampled to the line's 8 kHz by sox."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(wpm),
                          "--stdout", text], capture_output=True, check=True).stdout
    raw = subprocess.run(["sox", "-t", "wav", "-", "-t", "raw", "-r", str(RATE), "-e", "signed",
                          "-b", "16", "-c", "1", "-"], input=wav, capture_output=True,
                         check=True).stdout
    out = array("h")
    out.frombytes(raw)
    return out


@pytest.mark.parametrize("voice,pitch,wpm", VOICES)
def test_no_false_keys_from_synthetic_voices(voice, pitch, wpm):
    speech = espeak(ROBOCALL, voice, pitch, wpm)
    assert len(speech) > 25 * RATE        # the whole text was spoken
    assert detect(speech) == []
    assert detect(with_gain(speech, 6.0)) == []


def test_no_false_keys_from_synthetic_voices_through_the_listener():
    from linebox.dsp.listener import analyze
    speech = espeak(ROBOCALL, "fr+f2", 50, 175) + espeak(ROBOCALL, "en+f5", 70, 140)
    assert [e for e in analyze(speech) if e["type"] in ("dtmf", "callerid")] == []


def test_keys_spliced_into_a_synthetic_voice_are_all_heard():
    # The control: the voice that gave "*", with keys between its words, loses none.
    speech = espeak(ROBOCALL, "en+f5", 70, 140)
    sig = array("h")
    for i, d in enumerate("0123456789*#ABCD"):
        sig += speech[i * 12000:i * 12000 + 8000] + gen.silence(0.05)
        sig += gen.dtmf(d, on=0.045, off=0.05, low_dbm0=-20.0, high_dbm0=-18.0)
    assert "".join(e["digit"] for e in detect(sig)) == "0123456789*#ABCD"


# -- the UK alert tone (2130 + 2750 Hz) before caller ID: no voice or music may sound it --

def test_no_false_alert_tones_in_speech_music_or_synthetic_voices(speech_files, minute_of_music):
    from conftest import run_detector
    from linebox.dsp.alert import AlertToneDetector

    for path in speech_files:
        for gain_db in (0.0, 6.0):
            speech = load(path) if gain_db == 0.0 else with_gain(load(path), gain_db)
            assert run_detector(AlertToneDetector(), speech) == [], (path.name, gain_db)
    assert run_detector(AlertToneDetector(), minute_of_music) == []
    for voice, pitch, wpm in VOICES[::3]:
        speech = espeak(ROBOCALL, voice, pitch, wpm)
        assert run_detector(AlertToneDetector(), with_gain(speech, 6.0)) == [], voice
