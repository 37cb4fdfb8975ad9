"""Signal levels in dBm0 (contract §2: 0 dBm0 is a sine of peak amplitude 22,600)."""

import math
import operator

DBM0_PEAK = 22600.0
# Mean square of a 0 dBm0 sine, per sample.
DBM0_MEAN_SQUARE = DBM0_PEAK * DBM0_PEAK / 2.0


def amplitude(dbm0: float) -> float:
    """Peak amplitude of a sine at ``dbm0``."""
    return DBM0_PEAK * 10.0 ** (dbm0 / 20.0)


def mean_square(dbm0: float) -> float:
    """Mean square per sample of a signal whose power is ``dbm0``."""
    return DBM0_MEAN_SQUARE * 10.0 ** (dbm0 / 10.0)


def frame_energy(dbm0: float, n: int = 160) -> float:
    """Sum of squares over ``n`` samples of a signal whose power is ``dbm0``."""
    return mean_square(dbm0) * n


def dbm0(samples) -> float:
    """Power of ``samples`` in dBm0 (-inf for digital silence)."""
    n = len(samples)
    if n == 0:
        return -math.inf
    ms = sum(s * s for s in samples) / n
    if ms <= 0:
        return -math.inf
    return 10.0 * math.log10(ms / DBM0_MEAN_SQUARE)


# Up to this many 16-bit samples, a sum of squares is below 2**43 and math.hypot's
# result squared is within 0.01 of it: rounding gives the exact integer.
_EXACT_N = 4096
_hypot = math.hypot
_dist = math.dist
_mul = operator.mul


def energy(samples) -> int:
    """Sum of squares of 16-bit ``samples`` (a list of ints in range, or an array('h')).

    Exact: one C-level ``math.hypot`` (correctly rounded in practice, and within an ulp
    always) squared and rounded, a third of the cost of ``sum(map(mul, s, s))``; longer
    inputs than ``_EXACT_N`` take the plain sum."""
    if len(samples) > _EXACT_N:
        return sum(map(_mul, samples, samples))
    return round(_hypot(*samples) ** 2)


def lag1(samples, energy: int) -> int:
    """``sum(samples[i] * samples[i + 1])`` of 16-bit ``samples`` whose sum of squares is
    ``energy``, exact: the squared distance of the samples from themselves shifted by one
    (one ``math.dist``) is 2 energy - first^2 - last^2 - 2 lag1."""
    n = len(samples)
    if n < 2:
        return 0
    if n > _EXACT_N:
        return sum(map(_mul, samples, samples[1:]))
    a = samples[0]
    b = samples[-1]
    return (2 * energy - a * a - b * b - round(_dist(samples[1:], samples[:-1]) ** 2)) >> 1


def lag2(samples, energy: int) -> int:
    """``sum(samples[i] * samples[i + 2])``, exact, as ``lag1`` does it."""
    n = len(samples)
    if n < 3:
        return 0
    if n > _EXACT_N:
        return sum(map(_mul, samples, samples[2:]))
    a, b = samples[0], samples[1]
    c, d = samples[-2], samples[-1]
    return (2 * energy - a * a - b * b - c * c - d * d
            - round(_dist(samples[2:], samples[:-2]) ** 2)) >> 1
