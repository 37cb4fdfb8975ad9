"""Correlation of 20 ms frames with the frequencies of a tone plan, for the call-progress
detector (``progress.py``).

Each frame is correlated with every frequency the plan uses, over its two 10 ms halves,
in big-int dot products (all lanes packed into one Python int per sample). The even
samples go first: most frames of speech are found to be no tone from them alone; the
others get their odd samples too and are judged on the exact correlations. A frame is
"on" for a tone signature (one frequency, or a pair sounding together) when:

- purity: the signature explains at least ``PURITY_MIN`` of the frame's energy (a sung
  or played note spreads its energy over harmonics; speech over formants);
- level: every frequency is at least ``MIN_LEVEL_DBM0``;
- frequency: each frequency, measured from its phase turn between the two halves, is
  near the plan's (a single note between the two tones of a pair turns both alike).
"""

import cmath
import math
import operator
import struct
from array import array
from dataclasses import dataclass

from linebox import FRAME, RATE
from linebox.dsp.levels import frame_energy

_mul = operator.mul
_add = operator.add
_hypot = math.hypot
HALF = FRAME // 2
_HZ_PER_RAD = RATE / (2 * math.pi * HALF)   # phase turn between half frames -> Hz

# Frequency tolerance. Exchanges hold their tones to +-1 % (ITU-T Q.35, BT SIN 350,
# GR-506 precise tones hold better than +-0.5 %); 2.5 % sits midway between that and
# the +-5 % that is clearly some other tone.
FREQ_TOL = 0.025
# Lowest level accepted per frequency. Q.35 / E.180 tones arrive between -10 and
# -30 dBm0 on any line worth answering; -40 dBm0 is line noise.
MIN_LEVEL_DBM0 = -35.0
# A tone frame is this pure: white noise 20 dB down costs 1 %, mu-law 0.1 %.
PURITY_MIN = 0.82
# The first look, on the even samples alone, only passes frames on to the exact test.
PURITY_FIRST_LOOK = 0.75
# Frames where no frequency of the plan holds this share of the energy (in a 100 Hz band)
# skip the per-signature tests.
GATE_SHARE = 0.35

# Correlation tables: coefficients scaled so that 80 samples of full-scale input fit a
# 32-bit lane (80 * 32768 * 800 < 2**31), read back through array('i').
_SCALE = 800
_LANE_BITS = 32
_BIAS = 1 << (_LANE_BITS - 1)


@dataclass
class Sig:
    """A tone signature: one frequency (correlated at one bin, accepted in a band, e.g.
    SIT's 900 to 1000 Hz) or a pair of frequencies sounding together."""

    key: str
    bins: tuple[float, ...]
    bands: tuple[tuple[float, float], ...]   # accepted frequencies (Hz), one per bin
    lanes: tuple[int, ...] = ()
    gram: complex = 0j                  # pairs: correlation of the two bins over a frame
    gram_even: complex = 0j             # the same over its even samples
    gram_h1: complex = 0j               # ... over the first half frame
    gram_h2: complex = 0j               # ... over the second half frame


def make_sig(freqs, bands=None, prefix="") -> Sig:
    """The signature of ``freqs`` sounding together, accepted within ``bands`` (by
    default FREQ_TOL around each)."""
    freqs = tuple(freqs)
    return Sig(prefix + "+".join(f"{f:g}" for f in freqs), freqs,
               bands or tuple((f * (1 - FREQ_TOL), f * (1 + FREQ_TOL)) for f in freqs))


class ToneCorrelator:
    """Correlates frames with the bins of a set of signatures and says which signature
    a frame is "on" for.

    Correlations of a frame are a list ``[H1 of each bin, H2 of each bin]`` (the two
    half frames); ``first_look`` gives the even samples' share of them, ``correlate``
    the exact ones.
    """

    def __init__(self, sigs: list[Sig]) -> None:
        bins = sorted({f for s in sigs for f in s.bins})
        self.bins = bins
        self.nb = len(bins)
        for s in sigs:
            s.lanes = tuple(bins.index(f) for f in s.bins)
            if len(s.bins) == 2:
                dw = 2 * math.pi * (s.bins[1] - s.bins[0]) / RATE
                s.gram = sum(cmath.exp(1j * dw * n) for n in range(FRAME))
                s.gram_even = sum(cmath.exp(1j * dw * n) for n in range(0, FRAME, 2))
                s.gram_h1 = sum(cmath.exp(1j * dw * n) for n in range(HALF))
                s.gram_h2 = sum(cmath.exp(1j * dw * n) for n in range(HALF, FRAME))
        self._by_bin = [[s for s in sigs if i in s.lanes] for i in range(self.nb)]
        self._by_bins = {(i, j): [s for s in sigs if i in s.lanes or j in s.lanes]
                         for i in range(self.nb) for j in range(self.nb) if i != j}
        self._tables = _make_tables(bins)
        self._shift = 2 * self.nb * _LANE_BITS
        self._bias = sum(_BIAS << (_LANE_BITS * k) for k in range(4 * self.nb))
        self._nbytes = 4 * self.nb * _LANE_BITS // 8
        self._min_comp_e = frame_energy(MIN_LEVEL_DBM0)
        self._unpack = struct.Struct(f"<{4 * self.nb}i").unpack
        # classify()'s gate for the first look (m = HALF // 2 even samples a half, half the
        # frame's energy), less a hair for the float rounding of its |H|^2.
        self._gate_even = GATE_SHARE * (HALF // 2) * _SCALE * _SCALE / 2.0 * 0.5 * (1.0 - 1e-9)

    # -- correlations -------------------------------------------------------------------

    def first_look_tables(self) -> tuple[list, list]:
        """The tables ``first_look`` multiplies the even samples of each half by."""
        return self._tables[0], self._tables[1]

    def first_look(self, frame) -> tuple[int, int]:
        """The even samples' packed sums of both halves (4 kHz: no tone is missed, but
        tones alias); ``correlate`` completes them."""
        te1, te2, _, _ = self._tables
        return sum(map(_mul, frame[0:HALF:2], te1)), sum(map(_mul, frame[HALF::2], te2))

    def correlate(self, frame, even: tuple[int, int]) -> list:
        """The frame's exact correlations, from its first look."""
        _, _, to1, to2 = self._tables
        return self.decode(even[0] + sum(map(_mul, frame[1:HALF:2], to1)),
                           even[1] + sum(map(_mul, frame[HALF + 1::2], to2)))

    def decode(self, acc1: int, acc2: int) -> list:
        """The two halves' packed sums to complex correlations [H1 of each bin, H2 ...].

        Adding 2**31 to every lane makes them all non-negative (no borrows between lanes);
        flipping that bit back in each 32-bit word leaves two's complement lanes that
        array('i') reads as they are.
        """
        acc = (acc1 + (acc2 << self._shift) + self._bias) ^ self._bias
        out = array("i")
        out.frombytes(acc.to_bytes(self._nbytes, "little"))
        return list(map(complex, out[0::2], out[1::2]))

    def vals(self, prev):
        """Correlations of a kept frame (its samples if not correlated yet, or None)."""
        if prev is None or type(prev[0]) is complex:
            return prev
        return self.correlate(prev, self.first_look(prev))

    def first_look_quiet(self, even: tuple[int, int], energy) -> bool:
        """The first look's gate, in exact integers: no bin of the even samples holds
        GATE_SHARE of the energy, so ``classify`` of the first look returns (None, None).
        Costs a sixth of decoding the correlations and classifying them; a frame within
        rounding of the gate is left to ``classify`` (the gate's margin, 1e-9, is far
        wider than the rounding of math.hypot, which gives each bin's |H1|^2 + |H2|^2
        from its four lanes in one C call)."""
        return self.first_look_vals(even, energy) is None

    def first_look_vals(self, even: tuple[int, int], energy):
        """None where ``first_look_quiet``, else the first look's correlations (those of
        ``decode(*even)``, made from the lanes the gate has unpacked already)."""
        acc = (even[0] + (even[1] << self._shift) + self._bias) ^ self._bias
        lanes = self._unpack(acc.to_bytes(self._nbytes, "little"))
        n2 = 2 * self.nb
        best = max(map(_hypot, lanes[0:n2:2], lanes[1:n2:2], lanes[n2::2], lanes[n2 + 1::2]))
        if best * best < self._gate_even * energy:
            return None
        return list(map(complex, lanes[0::2], lanes[1::2]))

    # -- judging a frame ----------------------------------------------------------------

    def classify(self, vals, energy, even: bool):
        """The signature this frame is "on" for, or None; and its measurements. With
        ``even``, vals come from the even samples alone and ``energy`` is half the
        frame's: a lenient first look that lets through whatever may be a tone."""
        nb = self.nb
        m = HALF // 2 if even else HALF
        gate = GATE_SHARE * m * _SCALE * _SCALE / 2.0 * energy
        mags = list(map(abs, vals))
        sq = list(map(_mul, mags, mags))
        powers = list(map(_add, sq[:nb], sq[nb:]))
        best_p = max(powers)
        if best_p < gate:
            return None, None
        # The signatures of the two strongest bins: a pair's tone leaks into a bin near it
        # (440 Hz into 480 Hz over 10 ms), which may come out on top.
        best_i = powers.index(best_p)
        powers[best_i] = -1.0
        second = powers.index(max(powers)) if nb > 1 else best_i
        sigs = self._by_bins.get((best_i, second)) or self._by_bin[best_i]
        best = None
        for sig in sigs:
            info = self.measure(sig, vals, energy, even)
            if info is not None and (best is None or info[0] > best[1][0]):
                best = (sig, info)
        return best if best is not None else (None, None)

    def measure(self, sig: Sig, vals, energy, even: bool):
        """(purity, amplitude, phasors, frequency offsets) if the frame is on for sig."""
        nb = self.nb
        m = HALF // 2 if even else HALF
        min_e = self._min_comp_e * (0.25 if even else 1.0)
        purity_min = PURITY_FIRST_LOOK if even else PURITY_MIN
        scale2 = _SCALE * _SCALE
        if len(sig.lanes) == 1:
            i = sig.lanes[0]
            h1, h2 = vals[i], vals[i + nb]
            a1, a2 = abs(h1), abs(h2)
            if a1 == 0 or a2 == 0:
                return None
            # Phase turn between the halves (80 samples apart): frequency offset, +-50 Hz.
            z = h2 * h1.conjugate()
            d = cmath.phase(z)
            df = d * _HZ_PER_RAD
            f = sig.bins[0] + df
            lo, hi = sig.bands[0]
            slack = FREQ_TOL * sig.bins[0]
            if not lo - slack <= f <= hi + slack:
                return None
            # Correct for the window's loss away from the bin centre (Dirichlet kernel).
            g = _dirichlet(d / m, m)
            explained = 2 * (a1 * a1 + a2 * a2) / (m * scale2 * g * g)
            if explained < min_e:
                return None
            purity = explained / energy
            if purity < purity_min:
                return None
            # The frame's phasor: the second half turned back onto the first, so that a
            # tone 50 Hz off the bin (a 20 ms window's null) keeps its phase from frame
            # to frame.
            return purity, (a1 + a2) / g, (h1 + h2 * z.conjugate() / abs(z),), (df,)
        i, j = sig.lanes
        c1 = vals[i] + vals[i + nb]
        c2 = vals[j] + vals[j + nb]
        n = 2 * m
        b1, b2 = solve_pair(sig.gram_even if even else sig.gram, c1, c2, n)
        e1 = 2 * n * abs(b1) ** 2 / scale2
        e2 = 2 * n * abs(b2) ** 2 / scale2
        if e1 < min_e or e2 < min_e:
            return None
        explained = 2 * ((b1.conjugate() * c1).real + (b2.conjugate() * c2).real) / scale2
        purity = explained / energy
        if purity < purity_min:
            return None
        if even:
            return purity, abs(b1) + abs(b2), (b1, b2), None
        # Each tone's frequency within the frame, from the phase turn of its amplitude
        # between the halves: a single note between the two bins (which the pair fits
        # fairly well) turns both at its own frequency, and is no pair.
        g1, g2 = sig.gram_h1, sig.gram_h2
        p1, q1 = solve_pair(g1, vals[i], vals[j], HALF)
        p2, q2 = solve_pair(g2, vals[i + nb], vals[j + nb], HALF)
        if not (p1 and q1 and p2 and q2):
            return None
        dfs = (cmath.phase(p2 * p1.conjugate()) * _HZ_PER_RAD,
               cmath.phase(q2 * q1.conjugate()) * _HZ_PER_RAD)
        for f, df in zip(sig.bins, dfs, strict=True):
            if abs(df) > 2 * FREQ_TOL * f:
                return None
        return purity, abs(b1) + abs(b2), (b1, b2), dfs

    def amp(self, sig: Sig, vals) -> float:
        """The tone's amplitude in a frame that need not be on (edges of a run)."""
        if vals is None:
            return 0.0
        nb = self.nb
        if len(sig.lanes) == 1:
            i = sig.lanes[0]
            return abs(vals[i]) + abs(vals[i + nb])
        i, j = sig.lanes
        b1, b2 = solve_pair(sig.gram, vals[i] + vals[i + nb], vals[j] + vals[j + nb], FRAME)
        return abs(b1) + abs(b2)


def _make_tables(bins):
    """Packed tables (cos and -sin of every bin in 32-bit lanes) for the even and odd
    samples of each half frame; phases count from the frame's first sample."""
    t = []
    for n in range(FRAME):
        v = 0
        for i, f in enumerate(bins):
            w = 2 * math.pi * f * n / RATE
            c = int(round(_SCALE * math.cos(w)))
            s = int(round(-_SCALE * math.sin(w)))
            v += (c << (_LANE_BITS * 2 * i)) + (s << (_LANE_BITS * (2 * i + 1)))
        t.append(v)
    return t[0:HALF:2], t[HALF::2], t[1:HALF:2], t[HALF + 1::2]


def _dirichlet(dw: float, n: int) -> float:
    """Gain of an n-sample rectangular window dw radians/sample away from its centre."""
    half = dw / 2
    s = math.sin(half)
    if abs(s) < 1e-9:
        return 1.0
    return abs(math.sin(n * half) / (n * s))


def solve_pair(g: complex, c1: complex, c2: complex, n: int):
    """Amplitudes of two tones from their correlations over n samples, undoing each one's
    leak into the other's bin (2x2 least squares; the Gram matrix is [[n, g], [g*, n]])."""
    det = n * n - (g * g.conjugate()).real
    return (n * c1 - g * c2) / det, (n * c2 - g.conjugate() * c1) / det
