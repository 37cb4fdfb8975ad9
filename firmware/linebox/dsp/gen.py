"""Signal generators: tones, cadences, DTMF, noise. Used by the simulated exchange and tests."""

import math
import random
from array import array

from linebox import RATE
from linebox.dsp.levels import amplitude, mean_square

DTMF_LOW = (697.0, 770.0, 852.0, 941.0)
DTMF_HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")


def dtmf_freqs(digit: str) -> tuple[float, float]:
    """(low, high) frequencies of a DTMF key."""
    for r, row in enumerate(DTMF_KEYS):
        c = row.find(digit.upper())
        if c >= 0:
            return DTMF_LOW[r], DTMF_HIGH[c]
    raise ValueError(f"not a DTMF key: {digit!r}")


def clip(x: float) -> int:
    v = int(round(x))
    return 32767 if v > 32767 else -32768 if v < -32768 else v


def silence(seconds: float, rate: int = RATE) -> array:
    return array("h", bytes(2 * int(round(seconds * rate))))


def tone(freqs, seconds: float, level_dbm0=-13.0, rate: int = RATE, phase0: float = 0.0) -> array:
    """Sum of sines, each at ``level_dbm0`` (a number, or one per frequency)."""
    freqs = [freqs] if isinstance(freqs, (int, float)) else list(freqs)
    levels = level_dbm0 if isinstance(level_dbm0, (list, tuple)) else [level_dbm0] * len(freqs)
    n = int(round(seconds * rate))
    comps = [(amplitude(lv), 2 * math.pi * f / rate) for f, lv in zip(freqs, levels, strict=True)]
    out = array("h", bytes(2 * n))
    for i in range(n):
        out[i] = clip(sum(a * math.sin(w * i + phase0) for a, w in comps))
    return out


def dtmf(digit: str, on: float = 0.08, off: float = 0.08, low_dbm0: float = -7.0,
         high_dbm0: float = -5.0, freq_error: float = 0.0, rate: int = RATE) -> array:
    """One key press: ``on`` seconds of the key's two tones, then ``off`` seconds of silence.

    ``freq_error`` shifts both tones by that fraction (0.015 = +1.5 %).
    """
    lo, hi = dtmf_freqs(digit)
    k = 1.0 + freq_error
    sig = tone((lo * k, hi * k), on, (low_dbm0, high_dbm0), rate)
    return sig + silence(off, rate)


def dtmf_string(digits: str, on: float = 0.08, off: float = 0.08, **kw) -> array:
    out = array("h")
    for d in digits:
        out += dtmf(d, on, off, **kw)
    return out


def cadence(freqs, pattern, seconds: float, level_dbm0=-13.0, rate: int = RATE) -> array:
    """A tone switched on and off by ``pattern`` (on, off, on, off... seconds; () = steady)."""
    if not pattern:
        return tone(freqs, seconds, level_dbm0, rate)
    out = array("h")
    n_total = int(round(seconds * rate))
    i = 0
    while len(out) < n_total:
        dur = pattern[i % len(pattern)]
        if i % 2 == 0:
            out += tone(freqs, dur, level_dbm0, rate)
        else:
            out += silence(dur, rate)
        i += 1
    del out[n_total:]
    return out


def white_noise(seconds: float, level_dbm0: float, rate: int = RATE, seed: int = 1) -> array:
    """Gaussian white noise with total power ``level_dbm0``."""
    rnd = random.Random(seed)
    sigma = math.sqrt(mean_square(level_dbm0))
    return array("h", (clip(rnd.gauss(0.0, sigma)) for _ in range(int(round(seconds * rate)))))


def mix(*signals) -> array:
    """Sample-wise sum, as long as the longest input."""
    n = max(len(s) for s in signals)
    out = [0] * n
    for s in signals:
        for i, v in enumerate(s):
            out[i] += v
    return array("h", map(clip, out))


def scale(samples, gain_db: float) -> array:
    g = 10.0 ** (gain_db / 20.0)
    return array("h", (clip(v * g) for v in samples))
