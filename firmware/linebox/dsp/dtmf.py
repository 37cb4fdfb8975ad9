"""DTMF (touch-tone) key detector to ITU-T Q.24 (AT&T / Bell figures), in pure Python.

How it listens. A frame too quiet to hold two tones at ``MIN_TONE_DBM0`` costs one
comparison. A louder one must have the spectral slope of a key (its lag-1
autocorrelation over its energy, which ``levels.lag1`` gives exactly from one C-level
``math.dist``): voiced speech, mostly below 700 Hz, fails that and costs about 4 us.
The rest is cut into two 10 ms blocks of 80 samples, and one
``sum(map(operator.mul, block, TABLE))`` correlates a block with the cosine and sine of
all eight DTMF frequencies at once: every table entry is one big integer holding sixteen
64-bit lanes, so sixteen dot products cost about one.

The strongest tone of each group is then fitted by least squares (a precomputed 4x4
inverse Gram matrix per key), which removes the leakage of each tone and of its mirror
image into the other's correlation over so short a block. A block is a *hit* for a key when

- each fitted tone is above ``MIN_TONE_DBM0``,
- the twist is within Q.24's 8 dB reverse / 4 dB standard figures (plus a margin),
- the two tones carry at least ``MIN_TONE_FRACTION`` of the block's energy (speech and
  music spread their energy over many components; a key puts nearly all of it in two).

Two hit blocks in a row agree on frequency only if the phase of each tone advanced by
what its nominal frequency predicts over 10 ms: ``angle(X2 * conj(X1)) = 2*pi*df*80/8000``.
That separates the +-1.5 % accept band from the +-3.5 % reject band far better than
magnitudes over such short windows could. A key goes down after ``MIN_ON_BLOCKS`` such
blocks (a 40 ms tone always covers three whole blocks, a 22 ms tone never fills three
to ``MIN_TONE_FRACTION``), and comes up after ``RELEASE_BLOCKS`` blocks without it (a
10 ms drop-out spoils at most two blocks, a 40 ms pause always clears three).

A frame that both blocks find to be one key is also probed where a voice whose pitch
put two harmonics on the key's frequencies has the rest of its comb (see
``HARMONIC_DB``): a key has nothing there.

Onset and release times are refined inside the block from the tone's amplitude in the
partly filled blocks at each edge (amplitude grows with the number of tone samples).
"""

import functools
import math
import operator
import struct
from itertools import repeat

from linebox import FRAME, RATE
from linebox.dsp.gen import DTMF_HIGH, DTMF_KEYS, DTMF_LOW
from linebox.dsp.levels import amplitude
from linebox.dsp.levels import energy as _energy
from linebox.dsp.levels import lag1 as _lag1
from linebox.dsp.levels import lag2 as _lag2

BLOCK = FRAME // 2                   # 10 ms analysis block
FREQS = DTMF_LOW + DTMF_HIGH         # lanes 0-3 low group, 4-7 high group

# Q.24 (Bell/AT&T column): accept each tone within +-1.5 % of nominal, reject beyond +-3.5 %.
FREQ_ACCEPT = 0.015
FREQ_REJECT = 0.035
# Q.24 twist: the low group may be up to 8 dB louder ("reverse twist"), the high group up
# to 4 dB louder ("standard twist"). The margin absorbs what a tone 1.5 % off frequency
# loses in a 10 ms window (under 1 dB) and noise.
REVERSE_TWIST_DB = 8.0
STANDARD_TWIST_DB = 4.0
TWIST_MARGIN_DB = 2.0
# Keys must be heard down to -28 dBm0 per tone and never below -45 dBm0: the threshold
# sits between the two.
MIN_TONE_DBM0 = -36.0
# Share of a block's energy the two tones must carry. A tone filling 7 of a block's 10 ms
# has a share of 0.7, so a 22 ms burst can never fill three blocks (Q.24: reject < 23 ms).
MIN_TONE_FRACTION = 0.72
# Durations, counted in 10 ms blocks.
MIN_ON_BLOCKS = 3                    # 30 ms of steady tone: always inside a 40 ms key
RELEASE_BLOCKS = 3                   # a 40 ms pause always clears 3 blocks, a 10 ms gap at most 2

# Hits at most this many samples apart (two blocks missing between) belong to one key.
_BRIDGE = RELEASE_BLOCKS * BLOCK

_LANE_BITS = 64
_LANE_BIAS = 1 << 62                 # makes every lane non-negative for the byte decode
_SCALE = 32767                       # table amplitude
_UNPACK = struct.Struct("<16q").unpack
_mul = operator.mul


def _packed_table() -> list[int]:
    table = []
    for n in range(BLOCK):
        v = 0
        for k, f in enumerate(FREQS):
            w = 2.0 * math.pi * f * n / RATE
            v += round(_SCALE * math.cos(w)) << (k * _LANE_BITS)
            v += round(_SCALE * math.sin(w)) << ((k + 8) * _LANE_BITS)
        table.append(v)
    return table


_TABLE = _packed_table()
# Adding then flipping every lane's top bit leaves two's complement lanes, which the
# signed unpack reads as they are (no per-lane subtraction).
_FLIP = sum((1 << (_LANE_BITS - 1)) << (k * _LANE_BITS) for k in range(16))
_add = operator.add
_NBYTES = 16 * _LANE_BITS // 8

# Squared fitted peak amplitude of a tone at MIN_TONE_DBM0.
_MIN_AMP2 = amplitude(MIN_TONE_DBM0) ** 2
# The raw-correlation screen: |X|^2 = (A N S / 2)^2, 3 dB below the minimum, and the
# twist limits widened by 4 dB, so that leakage never hides a real key from the fit.
_SCREEN_POWER = (amplitude(MIN_TONE_DBM0 - 3.0) * BLOCK * _SCALE / 2.0) ** 2
_SCREEN_DB = 4.0
# Frame energy below which no block of the frame can hold a key (two tones at the
# minimum over one block), with 1 dB to spare.
FRAME_GATE = int(2 * (amplitude(MIN_TONE_DBM0 - 1.0) ** 2 / 2.0) * BLOCK)
_REVERSE_LIMIT = 10.0 ** ((REVERSE_TWIST_DB + TWIST_MARGIN_DB) / 10.0)
_STANDARD_LIMIT = 10.0 ** ((STANDARD_TWIST_DB + TWIST_MARGIN_DB) / 10.0)
_SCREEN_REVERSE = _REVERSE_LIMIT * 10.0 ** (_SCREEN_DB / 10.0)
_SCREEN_STANDARD = _STANDARD_LIMIT * 10.0 ** (_SCREEN_DB / 10.0)
# The fit's captured energy comes out multiplied by the table scale S.
_FRACTION_FACTOR = MIN_TONE_FRACTION * _SCALE


def _fit_matrix(lo: float, hi: float) -> tuple[float, ...]:
    """Upper triangle of the inverse Gram matrix of the block's cos/sin at ``lo`` and
    ``hi``, scaled so that applied to correlations with the integer table (which carry a
    factor S) it gives the tones' true cos/sin amplitudes."""
    basis = []
    for f in (lo, hi):
        w = 2.0 * math.pi * f / RATE
        basis.append([round(_SCALE * math.cos(w * n)) for n in range(BLOCK)])
        basis.append([round(_SCALE * math.sin(w * n)) for n in range(BLOCK)])
    g = [[sum(map(_mul, u, v)) / _SCALE for v in basis] for u in basis]
    inv = _invert(g)
    return tuple(inv[i][j] for i in range(4) for j in range(i, 4))


def _invert(m: list[list[float]]) -> list[list[float]]:
    """Gauss-Jordan inverse of a small well-conditioned matrix."""
    n = len(m)
    a = [row[:] + [float(i == j) for j in range(n)] for i, row in enumerate(m)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[piv] = a[piv], a[col]
        d = a[col][col]
        a[col] = [v / d for v in a[col]]
        for r in range(n):
            if r != col and a[r][col]:
                f = a[r][col]
                a[r] = [v - f * w for v, w in zip(a[r], a[col], strict=True)]
    return [row[n:] for row in a]


def _phase_limit(f: float) -> float:
    """Largest phase error (rad per block) accepted for a tone of nominal ``f``.

    Halfway between the advance of a tone FREQ_ACCEPT off and one FREQ_REJECT off; beyond
    50 Hz the reject advance wraps round (only for the high group), so the halfway point
    is taken with the wrapped value.
    """
    acc = 2.0 * math.pi * FREQ_ACCEPT * f * BLOCK / RATE
    rej = 2.0 * math.pi * FREQ_REJECT * f * BLOCK / RATE
    if rej > math.pi:
        rej = 2.0 * math.pi - rej
    return (acc + rej) / 2.0


# Per lane: the rotation that undoes the nominal advance over one block, and the limit.
_DEROTATE = tuple(complex(math.cos(-2.0 * math.pi * f * BLOCK / RATE),
                          math.sin(-2.0 * math.pi * f * BLOCK / RATE)) for f in FREQS)
_PHASE_LIMIT = tuple(_phase_limit(f) for f in FREQS)
_KEYS = tuple(tuple(row) for row in DTMF_KEYS)
_QUIET = (None, None, None, None)
def _slope(f: float) -> float:
    """Energy of a sine's first difference over its own energy: 2 (1 - cos w)."""
    return 2.0 * (1.0 - math.cos(2.0 * math.pi * f / RATE))


def _lag1_bounds() -> tuple[float, float]:
    """Bounds on (lag-1 autocorrelation / energy) of a frame that may hold a key.

    Over a frame, 1 - lag1/energy is half the energy-weighted mean of _slope over the
    frame's components. For a key it lies between the lowest pair at the largest reverse
    twist and the highest pair at the largest standard twist (frequencies at the reject
    edge); white noise at 15 dB S/N moves it by under 0.05. Voiced speech, mostly below
    700 Hz, falls far outside: one 160-sample product skips about 60 % of speech frames.
    """
    lo = min(DTMF_LOW) * (1 - FREQ_REJECT)
    lo_hi = min(DTMF_HIGH) * (1 - FREQ_REJECT)
    hi_lo = max(DTMF_LOW) * (1 + FREQ_REJECT)
    hi = max(DTMF_HIGH) * (1 + FREQ_REJECT)
    rev, std = _REVERSE_LIMIT, _STANDARD_LIMIT
    smin = (rev * _slope(lo) + _slope(lo_hi)) / (rev + 1.0) - _SLOPE_ALLOWANCE
    smax = (_slope(hi_lo) + std * _slope(hi)) / (std + 1.0) + _SLOPE_ALLOWANCE
    return 1.0 - smax / 2.0, 1.0 - smin / 2.0


# Room in the slope bounds for noise, quantisation and frame edges.
_SLOPE_ALLOWANCE = 0.08
_LAG1_LOW, _LAG1_HIGH = _lag1_bounds()


def _lag2_bounds() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per 0.01-wide bin of (lag-1 autocorrelation / energy), the bounds of (lag-2 / energy)
    a frame holding a key may have.

    For tones of energy shares a and 1 - a at w1 and w2, lag k over energy is
    a cos(k w1) + (1 - a) cos(k w2): every key, each tone up to FREQ_REJECT off, at every
    twist up to the limits, mapped out on a grid; white noise down to 10 dB S/N shrinks
    both towards 0, and the bounds keep _SLOPE_ALLOWANCE of room on each side. A frame of
    speech or music that passes the lag-1 test seldom has a lag 2 that fits: one more
    160-sample product spares most of them the two block correlations.
    """
    nbins = len(_LAG2_BINS)
    lo, hi = [math.inf] * nbins, [-math.inf] * nbins
    a_min, a_max = 1.0 / (1.0 + _STANDARD_LIMIT), _REVERSE_LIMIT / (1.0 + _REVERSE_LIMIT)
    errs = [FREQ_REJECT * (2 * i / 6 - 1) for i in range(7)]
    shares = [a_min + (a_max - a_min) * i / 20 for i in range(21)]
    for fl in DTMF_LOW:
        for fh in DTMF_HIGH:
            for el in errs:
                wl = 2.0 * math.pi * fl * (1 + el) / RATE
                for eh in errs:
                    wh = 2.0 * math.pi * fh * (1 + eh) / RATE
                    for a in shares:
                        r1 = a * math.cos(wl) + (1 - a) * math.cos(wh)
                        r2 = a * math.cos(2 * wl) + (1 - a) * math.cos(2 * wh)
                        for snr in (1.0, 0.95, 0.9):
                            k = _lag2_bin(r1 * snr)
                            lo[k] = min(lo[k], r2 * snr)
                            hi[k] = max(hi[k], r2 * snr)
    # A bin's bounds hold for its neighbours too (estimates over 160 samples wander).
    spread = 3
    out_lo = [min(lo[max(0, k - spread):k + spread + 1]) - _SLOPE_ALLOWANCE for k in range(nbins)]
    out_hi = [max(hi[max(0, k - spread):k + spread + 1]) + _SLOPE_ALLOWANCE for k in range(nbins)]
    return tuple(out_lo), tuple(out_hi)


_LAG2_BINS = range(201)


def _lag2_bin(r1: float) -> int:
    return min(200, max(0, int((r1 + 1.0) * 100.0)))


_LAG2_LOW, _LAG2_HIGH = _lag2_bounds()
_FIT = tuple(tuple(_fit_matrix(lo, hi) for hi in DTMF_HIGH) for lo in DTMF_LOW)

# Talk-off by a voice: a pitch whose harmonics fall on both of a key's frequencies (a
# woman's 240 Hz puts its 4th and 5th near 941 and 1209 Hz, "*"; a man's 134 Hz its 7th
# and 9th) passes every test above, two tones carrying 0.75 of the energy. But a voice
# has the rest of its comb too. A frame the key fills is probed through a 20 ms Hann
# window: below the key's lowest tone (150 to 550 Hz: a voice's fundamental and first
# harmonics) and on the comb through the two tones (one step below the low tone, one above
# the high tone and every step between, the step being (high - low) / m, from the two
# tones' frequencies as measured over the frame). Probes lie at least 150 Hz from
# both tones, where the window leaks under -35 dB of them, and a key leaves only noise
# there: -32 dB of the frame at Q.24's 15 dB signal to noise. Voices put -7 to -18 dB
# there (espeak-ng voices that gave "*", "0", "7" and "#").
HARMONIC_DB = -20.0
# Combs whose step is the tones' distance over 1 to this (harmonics k and k + m).
_COMB_MAX = 4
LOW_PROBES = (150.0, 250.0, 350.0, 450.0, 550.0)
# Probes are placed on a 25 Hz grid (at most 12.5 Hz off: under 0.4 dB of loss in the
# window's +-100 Hz main lobe), so that the tables of the 131 places between 550 and
# 3800 Hz, built when first needed, serve every frame.
_PROBE_STEP = 25.0
_PROBE_GAP = 150.0
_HANN = tuple(0.5 - 0.5 * math.cos(2.0 * math.pi * (n + 0.5) / FRAME) for n in range(FRAME))
# |correlation|^2 of a probe over energy for a sine holding HARMONIC_DB of the frame:
# a sine of amplitude A correlates to A/2 * S * sum(w), sum(w) = FRAME / 2.
_PROBE_FACTOR = 10.0 ** (HARMONIC_DB / 10.0) * (_SCALE * FRAME / 2.0) ** 2 / (2.0 * FRAME)
_RAD_PER_HZ = 2.0 * math.pi * BLOCK / RATE


def _probe_table(freqs) -> tuple[int, ...]:
    """Packed Hann-windowed cos and sin (two 64-bit lanes per frequency)."""
    out = []
    for n, h in enumerate(_HANN):
        v = 0
        for i, f in enumerate(freqs):
            w = 2.0 * math.pi * f * n / RATE
            v += (round(_SCALE * h * math.cos(w)) << (2 * i * _LANE_BITS))
            v += (round(_SCALE * h * math.sin(w)) << ((2 * i + 1) * _LANE_BITS))
        out.append(v)
    return tuple(out)


_LOW_TABLE = _probe_table(LOW_PROBES)


@functools.lru_cache(maxsize=160)
def _probe(step: int) -> tuple[int, ...]:
    """The probe table of one frequency, ``step * _PROBE_STEP`` Hz."""
    return _probe_table((step * _PROBE_STEP,))


@functools.lru_cache(maxsize=16)
def _probes(steps: tuple[int, ...]):
    """One packed table for the low probes and the comb probes at ``steps`` (made of the
    single tables, shifted into lanes of their own: every lane's sum is the one its own
    table gives), with its unpacker, lane bias and size in bytes.

    A key's comb falls on the same places press after press (its tones are as steady as
    the phone's oscillator), so one 160-sample product serves all of its probes where one
    per probe was needed: about 25 us instead of 120 us a press here. Sixteen tables of at
    most 16 probes (47 KB each) are kept, one per key of a keypad."""
    table = _LOW_TABLE
    lane = 2 * len(LOW_PROBES)
    for step in steps:
        shift = lane * _LANE_BITS
        table = tuple(map(_add, table, map(operator.lshift, _probe(step), repeat(shift))))
        lane += 2
    return (table, struct.Struct(f"<{lane}q").unpack,
            sum(_LANE_BIAS << (k * _LANE_BITS) for k in range(lane)), lane * _LANE_BITS // 8)


def _voiced(frame, energy: int, b1: "_Block", b2: "_Block") -> bool:
    """The frame holds a voice's harmonics beside the key's two tones (b1, b2: its two
    blocks, both hits for one key)."""
    d = b2.xlo * b1.xlo.conjugate() * _DEROTATE[b1.lo]
    flo = FREQS[b1.lo] + math.atan2(d.imag, d.real) / _RAD_PER_HZ
    d = b2.xhi * b1.xhi.conjugate() * _DEROTATE[b1.hi]
    fhi = FREQS[b1.hi] + math.atan2(d.imag, d.real) / _RAD_PER_HZ
    steps = []
    for m in range(1, _COMB_MAX + 1):
        # The two tones as the k-th and (k + m)-th harmonic: the comb's step is 1/m of
        # their distance; probed one step outside each and at every step between.
        step = (fhi - flo) / m
        if step < _PROBE_GAP:
            break
        for j in range(-1, m + 2):
            if j != 0 and j != m:
                f = flo + j * step
                if LOW_PROBES[-1] < f <= 3800.0:
                    steps.append(round(f / _PROBE_STEP))
    table, unpack, bias, nbytes = _probes(tuple(steps))
    c = unpack((sum(map(_mul, frame, table)) + bias).to_bytes(nbytes, "little"))
    limit = energy * _PROBE_FACTOR
    for k in range(0, len(c), 2):
        x, y = c[k] - _LANE_BIAS, c[k + 1] - _LANE_BIAS
        if x * x + y * y > limit:
            return True
    return False


def _fits_lag2(lag2: int, lag1: int, energy: int) -> bool:
    # _lag2_bin(lag1 / energy) without its clamp: |lag1| <= energy (Cauchy-Schwarz), so
    # the bin is already within 0..200 (and Python 3.11's min/max cost a microsecond).
    k = int((lag1 / energy + 1.0) * 100.0)
    return _LAG2_LOW[k] * energy <= lag2 <= _LAG2_HIGH[k] * energy


class _Block:
    """What one 10 ms block showed: lane powers, and the key it is a hit for (or None)."""

    __slots__ = ("pos", "power", "key", "lo", "hi", "fit", "xlo", "xhi")

    def __init__(self, pos, power):
        self.pos = pos
        self.power = power
        self.key = None
        self.lo = self.hi = 0
        self.fit = 0.0                 # block energy the two fitted tones account for (x S)
        self.xlo = self.xhi = 0j       # fitted tones as complex amplitudes

    def amp(self, lo: int, hi: int) -> float:
        """Amplitude of the lanes ``lo`` and ``hi`` (proportional to tone samples held)."""
        p = self.power
        return math.sqrt(p[lo] + p[hi]) if p is not None else 0.0


class DtmfDetector:
    """Turns a stream of 20 ms frames into DTMF key presses (Q.24 figures).

    Call ``feed(frame, energy)`` for every frame, silent ones included, and ``flush()`` at
    the end. A key is reported when released, as
    ``{"type": "dtmf", "t": onset_s, "digit": "5", "dur": held_s}``; ``pressed`` tells the
    key held right now, so a prompt can stop the moment a key goes down.
    """

    def __init__(self) -> None:
        self._n = 0                    # samples fed so far: the detector's clock
        self._hist = _QUIET            # the last four blocks, oldest first (None: quiet)
        self._run = 0                  # consecutive frequency-consistent hits of _run_key
        self._run_key = None
        self._first = self._before = None  # the run's first block and the one before it
        self._broken = None            # (key, first, before, last hit) of the run last broken
        self._pressed = None
        self._onset = 0.0              # sample position where the pressed key began
        self._last = None              # last hit block of the pressed key
        self._ref = None               # the hit block before it (a whole one, for scale)
        self._after = None             # first block after _last without the key
        self._misses = 0
        # The last frame's lag-2 autocorrelation if its lag-1 screen passed (else None),
        # for the listener to hand on to caller ID's screen.
        self.lag2: int | None = None

    @property
    def pressed(self) -> str | None:
        """The key confirmed as held down right now, or None."""
        return self._pressed

    @property
    def keying(self) -> bool:
        """A key is down, or the last block began or continued a run of hits for one
        (a 10 ms block with 72 % of its energy in a low-group and a high-group tone)."""
        return self._pressed is not None or self._run > 0

    def feed(self, frame, energy: int, lag1: int | None = None) -> list[dict]:
        """Take one 160-sample frame and its energy (sum of squares), and if the caller has
        it, its lag-1 autocorrelation ``sum(frame[i] * frame[i + 1])``; return ended keys."""
        pos = self._n
        self._n = pos + FRAME
        if energy >= FRAME_GATE and lag1 is None:
            lag1 = _lag1(frame, energy)
        lag2 = None
        skip = energy < FRAME_GATE or not energy * _LAG1_LOW <= lag1 <= energy * _LAG1_HIGH or (
            not _fits_lag2(lag2 := _lag2(frame, energy), lag1, energy))
        self.lag2 = lag2
        if skip:
            if self._pressed is None and not self._run and self._broken is None:
                self._hist = _QUIET    # nothing pending: a quiet frame costs only this
                return []
            out = []
            self._step(_Block(pos, None), out)
            self._step(_Block(pos + BLOCK, None), out)
            return out
        first = frame[:BLOCK]
        e1 = -1
        b1 = self._analyse(first, pos)
        if b1.key is not None:
            e1 = _energy(first)
            if not self._enough(b1, e1):
                b1.key = None
        b2 = self._analyse(frame[BLOCK:], pos + BLOCK)
        if b2.key is not None:
            if e1 < 0:
                e1 = _energy(first)
            if not self._enough(b2, energy - e1):
                b2.key = None
        if (b1.key is not None and b1.key == b2.key and b1.key != self._pressed
                and self._same_tones(b1, b2) and _voiced(frame, energy, b1, b2)):
            # Only a frame the key fills, steadily, is probed: a tone's edge inside the
            # window splatters into the probes. Every press has such a frame among its
            # MIN_ON_BLOCKS blocks (three in a row hold a whole frame), so none is missed;
            # a key already down needs no probing.
            b1.key = b2.key = None
        out = []
        if (b1.key is None and b2.key is None and self._pressed is None and not self._run
                and self._broken is None):
            self._hist = (self._hist[2], self._hist[3], b1, b2)
            return out
        self._step(b1, out)
        self._step(b2, out)
        return out

    def flush(self) -> list[dict]:
        """End of input: report a key still held, and start afresh."""
        out = []
        if self._pressed is not None:
            self._release(out)
        self._hist = _QUIET
        self._run = 0
        self._run_key = None
        self._broken = None
        return out

    # -- per block -----------------------------------------------------------------

    @staticmethod
    def _analyse(block, pos: int) -> _Block:
        """Correlate one block with all eight tones; mark it a candidate hit if the two
        strongest tones pass the level and twist tests (the energy test comes later)."""
        c = _UNPACK(((sum(map(_mul, block, _TABLE)) + _FLIP) ^ _FLIP).to_bytes(_NBYTES, "little"))
        cos, sin = c[:8], c[8:]
        p = list(map(_add, map(_mul, cos, cos), map(_mul, sin, sin)))
        # max() of each group, as comparisons (Python 3.11's max parses keywords per call).
        p0, p1, p2, p3, p4, p5, p6, p7 = p
        plo = p0 if p0 >= p1 else p1
        if p2 > plo:
            plo = p2
        if p3 > plo:
            plo = p3
        phi = p4 if p4 >= p5 else p5
        if p6 > phi:
            phi = p6
        if p7 > phi:
            phi = p7
        b = _Block(pos, p)
        # Cheap screen on the raw correlations, loose enough for their leakage errors.
        if plo < _SCREEN_POWER or phi < _SCREEN_POWER:
            return b
        if plo > phi * _SCREEN_REVERSE or phi > plo * _SCREEN_STANDARD:
            return b
        lo = p.index(plo, 0, 4)
        hi = p.index(phi, 4, 8)
        # Least-squares fit of the two nominal tones: removes the leakage of each tone
        # (and of its negative-frequency image) into the other's correlation, so levels,
        # twist, phases and the captured energy are those of the tones themselves.
        y0, y1, y2, y3 = c[lo], c[lo + 8], c[hi], c[hi + 8]
        g = _FIT[lo][hi - 4]
        a0 = g[0] * y0 + g[1] * y1 + g[2] * y2 + g[3] * y3
        a1 = g[1] * y0 + g[4] * y1 + g[5] * y2 + g[6] * y3
        a2 = g[2] * y0 + g[5] * y1 + g[7] * y2 + g[8] * y3
        a3 = g[3] * y0 + g[6] * y1 + g[8] * y2 + g[9] * y3
        alo = a0 * a0 + a1 * a1
        ahi = a2 * a2 + a3 * a3
        if alo < _MIN_AMP2 or ahi < _MIN_AMP2:
            return b
        if alo > ahi * _REVERSE_LIMIT or ahi > alo * _STANDARD_LIMIT:
            return b
        b.key = _KEYS[lo][hi - 4]
        b.lo = lo
        b.hi = hi
        b.fit = a0 * y0 + a1 * y1 + a2 * y2 + a3 * y3
        b.xlo = complex(a0, -a1)
        b.xhi = complex(a2, -a3)
        return b

    @staticmethod
    def _enough(b: _Block, block_energy: int) -> bool:
        """The two tones carry at least MIN_TONE_FRACTION of the block's energy."""
        return b.fit >= block_energy * _FRACTION_FACTOR

    @staticmethod
    def _same_tones(a: _Block, b: _Block) -> bool:
        """Both tones kept their nominal phase advance from block ``a`` to block ``b``."""
        d = b.xlo * a.xlo.conjugate() * _DEROTATE[b.lo]
        if abs(math.atan2(d.imag, d.real)) > _PHASE_LIMIT[b.lo]:
            return False
        d = b.xhi * a.xhi.conjugate() * _DEROTATE[b.hi]
        return abs(math.atan2(d.imag, d.real)) <= _PHASE_LIMIT[b.hi]

    def _step(self, b: _Block, out: list) -> None:
        hist = self._hist
        prev = hist[3]
        self._hist = (hist[1], hist[2], hist[3], b)
        key = b.key
        if key is not None and key == self._run_key and self._same_tones(prev, b):
            self._run += 1
        else:
            if self._run:
                # Remember the run just broken: if the same key resumes after a drop-out
                # of at most two blocks, the key began where this run began.
                self._broken = (self._run_key, self._first, self._before, prev)
            elif self._broken is not None and b.pos - self._broken[3].pos > _BRIDGE:
                self._broken = None
            self._run_key = key
            self._run = 0 if key is None else 1
            self._first = b
            self._before = prev

        pressed = self._pressed
        if pressed is not None:
            if key == pressed:
                self._misses = 0
                self._ref = self._last
                self._last = b
                self._after = None
            else:
                self._misses += 1
                if self._after is None:
                    self._after = b
                if self._misses >= RELEASE_BLOCKS:
                    self._release(out)
        if self._run == MIN_ON_BLOCKS and key != self._pressed:
            if self._pressed is not None:
                self._release(out)
            self._press(key)

    def _press(self, key: str) -> None:
        first, before = self._first, self._before
        broken = self._broken
        if broken is not None and broken[0] == key and first.pos - broken[3].pos <= _BRIDGE:
            first, before = broken[1], broken[2]
        self._broken = None
        second, third = self._hist[2], self._hist[3]
        lo, hi = third.lo, third.hi
        ref = max(second.amp(lo, hi), third.amp(lo, hi))
        # The first hit block may be only partly filled, and the block before it may hold
        # the first few milliseconds: move the onset by their share of a full block.
        head = min(1.0, first.amp(lo, hi) / ref)
        lead = min(1.0, before.amp(lo, hi) / ref) if before is not None else 0.0
        self._onset = first.pos + BLOCK * (1.0 - head - lead)
        self._pressed = key
        self._ref = second
        self._last = third
        self._after = None
        self._misses = 0

    def _release(self, out: list) -> None:
        last, ref, after = self._last, self._ref, self._after
        lo, hi = last.lo, last.hi
        full = max(ref.amp(lo, hi), last.amp(lo, hi))
        end = last.pos + BLOCK * min(1.0, last.amp(lo, hi) / full)
        if after is not None and after.pos == last.pos + BLOCK:
            end += BLOCK * min(1.0, after.amp(lo, hi) / full)
        out.append({"type": "dtmf", "t": round(self._onset / RATE, 4), "digit": self._pressed,
                    "dur": round((end - self._onset) / RATE, 4)})
        self._pressed = None
        self._last = self._ref = self._after = None
        self._misses = 0
