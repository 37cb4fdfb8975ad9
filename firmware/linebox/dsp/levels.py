"""Signal levels in dBm0 (contract §2: 0 dBm0 is a sine of peak amplitude 22,600)."""

import math

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


def _squares() -> list[int]:
    # One int object per magnitude, shared by +x and -x: about 1 MiB for the table.
    pos = [x * x for x in range(32769)]
    return pos[:32768] + pos[32768:0:-1]


# The square of every 16-bit sample, indexed by the sample itself: a negative sample
# indexes from the end of the list, where its square is. Looking squares up costs about
# 60 % of multiplying (the squares are ready-made ints, nothing is allocated per sample).
SQUARES = _squares()
_square = SQUARES.__getitem__


def energy(samples) -> int:
    """Sum of squares of 16-bit ``samples`` (an array('h') or a list of ints in range)."""
    return sum(map(_square, samples))
