"""The benchmark's line audio: a deterministic 10-minute mix of speech, silence, music,
key presses and call-progress tones, cached in .bench/ (not committed)."""

import math
import random
import sys
from array import array
from pathlib import Path

from linebox.dsp import gen
from linebox.dsp.plans import tone_signal
from linebox.wavfile import read_wav, write_wav

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench"
sys.path.insert(0, str(ROOT / "tests"))
from speechdata import speech_dir  # noqa: E402 - the tests' own speech, decoded once

SPEECH_DIR = speech_dir()
RATE = 8000


def music(seconds: float, seed: int = 7) -> array:
    """Chords of notes with harmonics, vibrato and a beat: music-on-hold-like audio."""
    rnd = random.Random(seed)
    out = array("h")
    note_len = 0.25
    scale = [220.0 * 2 ** (k / 12) for k in (0, 2, 3, 5, 7, 8, 10, 12, 14, 15, 17, 19)]
    while len(out) < seconds * RATE:
        chord = [rnd.choice(scale) for _ in range(3)]
        n = int(note_len * RATE * rnd.choice((1, 2, 4)))
        amp = 2500.0 / len(chord)
        vib = rnd.uniform(4.0, 6.0)
        seg = array("h", bytes(2 * n))
        for i in range(n):
            t = i / RATE
            env = min(1.0, t * 40) * math.exp(-2.0 * t)
            v = 0.0
            for f in chord:
                ph = 2 * math.pi * f * t + 0.02 * f / vib * math.sin(2 * math.pi * vib * t)
                v += math.sin(ph) + 0.5 * math.sin(2 * ph) + 0.25 * math.sin(3 * ph)
            seg[i] = gen.clip(amp * env * v)
        out += seg
    del out[int(seconds * RATE):]
    return out


def _speech(seconds: float, offset: float) -> array:
    files = sorted(SPEECH_DIR.glob("*.wav"))
    out = array("h")
    for i, f in enumerate(files):
        s = read_wav(f)
        start = int((offset + 13 * i) * RATE) % max(1, len(s) - int(seconds * RATE))
        out += s[start:start + int(seconds * RATE / len(files))]
    return out


def build_mix() -> array:
    """10 minutes, in 10-second chunks cycling through the kinds of line audio."""
    path = CACHE / "mix10.wav"
    if path.exists():
        return read_wav(path)
    CACHE.mkdir(exist_ok=True)
    chunks = []
    mus = music(120.0)
    noise = gen.white_noise(10.0, -65.0)
    for k in range(60):
        kind = k % 10
        if kind in (0, 3, 6):
            chunks.append(gen.mix(_speech(10.0, 10.0 * k), noise))
        elif kind in (1, 7):
            chunks.append(noise)
        elif kind in (2, 5):
            j = (k // 10) * 20 + (10 if kind == 5 else 0)
            chunks.append(mus[j * RATE:(j + 10) * RATE])
        elif kind == 4:
            keys = gen.dtmf_string("0123456789*#ABCD" * 2, on=0.1, off=0.15, low_dbm0=-12, high_dbm0=-10)
            chunks.append(gen.mix(keys + gen.silence(10.0 - len(keys) / RATE), noise))
        elif kind == 8:
            chunks.append(gen.mix(tone_signal("us", "busy", 5.0) + tone_signal("us", "ringback", 5.0), noise))
        else:
            chunks.append(gen.mix(_speech(10.0, 7.0 * k), gen.white_noise(10.0, -45.0, seed=k)))
    out = array("h")
    for c in chunks:
        out += c
    write_wav(path, out)
    return out
