"""Resampling to the line rate (8 kHz), in pure Python.

A rational resampler: conceptually upsample by L, low-pass, keep every M-th sample.
Polyphase: only the outputs we keep are computed, each one a dot product of K input
samples with one of L precomputed coefficient phases.

The low-pass is a Kaiser-windowed sinc: flat through the telephone band (300-3400 Hz),
-6 dB at 3.7 kHz and at least 50 dB down from 4 kHz up, so nothing above the new
Nyquist frequency folds back into the band.
"""

import math
import operator
from array import array
from functools import lru_cache
from math import gcd

from linebox import RATE

SUPPORTED_RATES = (8000, 16000, 44100, 48000)

PASS_HZ = 3400.0        # telephone band edge: must stay flat
STOP_HZ = 4000.0        # new Nyquist frequency: must be gone
STOP_DB = 55.0          # design attenuation (the promise is 50 dB; a margin for rounding)


def _dot_fallback(a, b) -> float:
    return sum(map(operator.mul, a, b))


# math.sumprod (Python 3.12+, so Trixie) is several times faster than the fallback.
_dot = getattr(math, "sumprod", _dot_fallback)


def to_8k(samples: array, rate: int) -> array:
    """``samples`` (signed 16-bit) at ``rate`` Hz, resampled to 8000 Hz (a copy at 8000)."""
    if rate == RATE:
        return array("h", samples)
    if rate not in SUPPORTED_RATES:
        raise ValueError(f"cannot resample from {rate} Hz")
    return _resample(samples, rate, RATE)


ANY_RATES = (4000, 192000)      # what to_8k_any takes
MAX_PHASES = 400                # more filter phases than this: go through 48 kHz first


def to_8k_any(samples: array, rate: int) -> array:
    """Like :func:`to_8k`, for any rate in ANY_RATES. A rate whose ratio to 8 kHz needs
    more than MAX_PHASES filter phases (44123 Hz: 8000) is first brought to 48 kHz by
    linear interpolation: its images lie near multiples of 44 kHz, far above what the
    8 kHz low-pass keeps, so the telephone band is not touched."""
    if not ANY_RATES[0] <= rate <= ANY_RATES[1]:
        raise ValueError(f"cannot resample from {rate} Hz")
    if rate == RATE or rate in SUPPORTED_RATES:
        return to_8k(samples, rate)
    if RATE // gcd(rate, RATE) > MAX_PHASES:
        return to_8k(_linear(samples, rate, 48000), 48000)
    return _resample(samples, rate, RATE)


def _linear(samples, rate_in: int, rate_out: int) -> array:
    n_out = len(samples) * rate_out // rate_in
    step = rate_in / rate_out
    last = len(samples) - 1
    out = array("h", bytes(2 * n_out))
    for n in range(n_out):
        x = n * step
        i = int(x)
        f = x - i
        a = samples[i]
        b = samples[i + 1] if i < last else a
        out[n] = int(a + (b - a) * f)
    return out


def _resample(samples, rate_in: int, rate_out: int) -> array:
    g = gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    phases, taps = _phases(rate_in, rate_out)
    n_in = len(samples)
    n_out = (n_in * up + down - 1) // down
    # Zero padding on both sides so every dot product is one plain slice.
    # Floats: float * float is cheaper than int * float in the inner product.
    xp = [0.0] * taps + list(map(float, samples)) + [0.0] * taps
    centre = taps * up // 2          # filter delay in upsampled samples
    out = array("h", bytes(2 * n_out))
    j = centre
    for n in range(n_out):
        q, p = divmod(j, up)
        acc = _dot(xp[q + 1:q + 1 + taps], phases[p])
        v = int(acc + 0.5) if acc >= 0 else int(acc - 0.5)
        out[n] = 32767 if v > 32767 else -32768 if v < -32768 else v
        j += down
    return out


@lru_cache(maxsize=8)
def _phases(rate_in: int, rate_out: int) -> tuple[list[list[float]], int]:
    """The filter split into its ``up`` phases, each reversed to line up with a slice.

    Returns (phases, K): output n at upsampled position j = n*down + delay uses phase
    j % up against input samples j//up - K + 1 .. j//up.
    """
    g = gcd(rate_in, rate_out)
    up = rate_out // g
    fs = rate_in * up                                   # upsampled rate
    taps = _taps_per_phase(rate_in)
    length = taps * up
    centre = length // 2
    fc = (PASS_HZ + STOP_HZ) / 2.0 / fs                 # cutoff, cycles per sample
    beta = 0.1102 * (STOP_DB - 8.7)
    i0_beta = _bessel_i0(beta)
    h = [0.0] * length
    for i in range(1, length):                          # h[0] is the window's zero end
        x = i - centre
        r = x / centre
        w = _bessel_i0(beta * math.sqrt(max(0.0, 1.0 - r * r))) / i0_beta
        h[i] = w * (2 * fc if x == 0 else math.sin(2 * math.pi * fc * x) / (math.pi * x))
    phases = []
    for p in range(up):
        coeffs = [h[p + k * up] for k in range(taps)]
        total = sum(coeffs)
        # Each phase passes DC at exactly unity, so no phase-dependent gain ripple.
        phases.append([c / total for c in reversed(coeffs)])
    return phases, taps


def _taps_per_phase(rate_in: int) -> int:
    # Kaiser's estimate of the length for STOP_DB over the transition band, at the input rate.
    width = 2 * math.pi * (STOP_HZ - PASS_HZ) / rate_in
    return int(math.ceil((STOP_DB - 8.0) / (2.285 * width))) + 1


def _bessel_i0(x: float) -> float:
    """Modified Bessel function of the first kind, order 0 (power series)."""
    term = total = 1.0
    k = 0
    half = x / 2.0
    while term > 1e-12 * total:
        k += 1
        term *= (half / k) ** 2
        total += term
    return total
