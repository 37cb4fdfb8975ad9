"""1200 baud FSK reception for on-hook caller ID: Bell 202 and ITU-T V.23 (mode 2 forward).

Two layers, both free of per-sample Python loops:

* ``Discriminator`` turns samples into one soft decision per sample, the magnitude of the
  signal's correlation with the mark tone minus that with the space tone, over a sliding
  window about one bit long. The correlations are complex running sums built with
  ``map``/``accumulate``, so a 20 ms frame costs a handful of C-level passes.
* ``AsyncReceiver`` frames those decisions as asynchronous 8N1 characters (start bit
  space, eight data bits LSB first, stop bit mark). It finds start edges with
  ``bytes.find`` on the sign of the decisions and reads each bit at its centre, so the
  Python work is per character, not per sample. Stop bits longer than one bit (mark
  between characters) are accepted up to ``MAX_GAP_BITS``.

``BandCheck`` is the cheap per-frame test the caller-ID detector runs before any of this:
packed big-int correlations give the power at the mark and space frequencies in eight
2.5 ms slices of the frame.
"""

import functools
import operator
import struct
from array import array
from cmath import exp
from dataclasses import dataclass
from itertools import accumulate
from math import cos, pi, sin

from linebox import FRAME, RATE

BAUD = 1200  # Bell 202 and V.23 mode 2 (ETSI EN 300 659-1 §6.1: 1200 baud +-1 %)


@dataclass(frozen=True)
class FskStandard:
    """Mark (binary 1) and space (binary 0) frequencies of a caller-ID FSK standard."""

    name: str
    mark: float
    space: float
    baud: int = BAUD


STANDARDS: dict[str, FskStandard] = {
    # Telcordia GR-30-CORE / Bell 202: mark 1200 Hz, space 2200 Hz.
    "bell202": FskStandard("bell202", 1200.0, 2200.0),
    # ITU-T V.23 mode 2 as used by ETSI EN 300 659-2: mark 1300 Hz, space 2100 Hz.
    "v23": FskStandard("v23", 1300.0, 2100.0),
}


def get_standard(name: str) -> FskStandard:
    try:
        return STANDARDS[name]
    except KeyError:
        raise ValueError(f"unknown caller-ID FSK standard {name!r} "
                         f"(one of {', '.join(STANDARDS)})") from None


class Discriminator:
    """Soft mark/space decisions, one per input sample (positive = mark).

    Sample ``i``'s decision compares the magnitudes of the last ``window`` samples'
    correlation with each tone. An 8-sample window (1.2 bits) puts the space tone of
    Bell 202 exactly on a null of the mark filter (1000 Hz apart = 8000 / 8) and keeps
    V.23's 800 Hz shift well separated; the sign flips about ``window / 2`` samples after
    a bit edge. Magnitudes, not phases, are compared, so the carrier's phase and a
    frequency error of a few per cent do not matter.
    """

    def __init__(self, mark: float, space: float, window: int = 8, rate: int = RATE) -> None:
        self.window = window
        self._rate = rate
        self._mark = mark
        self._space = space
        self._tail = [0] * (window - 1)

    def _table(self, n: int) -> tuple[list[complex], list[complex]]:
        return _phasors(self._mark, self._rate, n), _phasors(self._space, self._rate, n)

    def process(self, samples) -> list[float]:
        """Decisions for ``samples`` (continuing the previous call's stream)."""
        x = self._tail + list(samples)
        w = self.window
        self._tail = x[len(x) - (w - 1):]
        em, es = self._table(len(x))
        # Running complex sums; a window's correlation is the difference of two of them.
        # The phase reference restarts with every block, which magnitudes do not see.
        cm = [0j, *accumulate(map(operator.mul, x, em))]
        cs = [0j, *accumulate(map(operator.mul, x, es))]
        am = map(abs, map(operator.sub, cm[w:], cm))
        as_ = map(abs, map(operator.sub, cs[w:], cs))
        return list(map(operator.sub, am, as_))


@functools.cache
def _phasors(freq: float, rate: int, n: int) -> list[complex]:
    """exp(-j 2 pi freq i / rate) for i < n, shared by every discriminator."""
    w = -2j * pi * freq / rate
    return [exp(w * i) for i in range(n)]


# Character framing limits.
MIN_MARK_BITS = 30      # mark before the first character; GR-30 sends 180, EN 300 659-1 80 +- 25
MAX_GAP_BITS = 16       # mark between characters; EN 300 659-1 §6.2 allows up to 10


class AsyncReceiver:
    """8N1 characters out of a stream of soft decisions.

    ``feed(decisions)`` returns ``[(byte, index, first), ...]``: ``index`` is the sample
    index (from the first decision fed) of the character's start edge, and ``first`` is
    True for a character that follows at least ``MIN_MARK_BITS`` of steady mark (a
    message can start there) and False for one that follows the previous character
    within ``MAX_GAP_BITS``. A framing error (stop bit not mark) drops back to waiting
    for a run of mark, so the channel seizure's alternating bits never frame characters.
    """

    def __init__(self, baud: float = BAUD, rate: int = RATE) -> None:
        self.bit = rate / baud
        self._soft: list[float] = []
        self._space = bytearray()   # 1 where the decision is space
        # Offset from a detected edge to the first bit's reading point: the decision
        # turns when the window is half over the edge, and reads best when the window
        # covers the bit, i.e. half a window after the bit's centre.
        self._offsets = [int(round((k + 0.5) * self.bit - 0.5)) for k in range(10)]
        self._min_run = int(MIN_MARK_BITS * self.bit)
        self._max_gap = int(MAX_GAP_BITS * self.bit)
        self._hunting = True
        self._need_mark = True  # waiting for steady mark before looking for an edge
        self._run_start = 0   # start of the current mark run while hunting
        self._pos = 0         # where to look for the next start edge
        self._gap_from = 0    # centre of the last stop bit while in a message

    def feed(self, decisions: list[float]) -> list[tuple[int, int, bool]]:
        self._soft.extend(decisions)
        self._space.extend(map((0.0).__gt__, decisions))
        out: list[tuple[int, int, bool]] = []
        while self._step(out):
            pass
        return out

    def _step(self, out: list) -> bool:
        """One edge search or one character; False when more decisions are needed."""
        space, n = self._space, len(self._space)
        if self._need_mark:
            m = space.find(b"\x00\x00\x00", self._pos)
            if m < 0:
                self._pos = max(self._pos, n - 2)
                return False
            self._need_mark = False
            self._run_start = self._pos = m
        # Two space decisions in a row: a single one is noise.
        e = space.find(b"\x01\x01", self._pos)
        if not self._hunting:
            limit = self._gap_from + self._max_gap
            if e > limit or (e < 0 and n > limit):
                # Too long a gap ends the message; the mark since the last stop bit
                # counts towards the run a new message needs.
                self._hunting = True
                self._run_start = self._gap_from
        if e < 0:
            self._pos = max(self._pos, n - 1)
            return False
        if self._hunting and e - self._run_start < self._min_run:
            self._need_mark = True      # not enough mark before this edge
            self._pos = e
            return True
        off = self._offsets
        if e + off[9] >= n:
            self._pos = e
            return False
        soft = self._soft
        if soft[e + off[0]] >= 0.0:
            self._pos = e + 1           # a glitch, not a start bit
            return True
        if soft[e + off[9]] <= 0.0:
            # Framing error: wait for a fresh run of mark.
            self._hunting = self._need_mark = True
            self._pos = e + off[9]
            return True
        value = 0
        for k in range(8):
            if soft[e + off[k + 1]] > 0.0:
                value |= 1 << k
        out.append((value, e, self._hunting))
        self._hunting = False
        self._gap_from = self._pos = e + off[9]
        return True


class BandCheck:
    """Share of a frame's energy in the FSK band (the cheap pre-check before demodulating).

    The frame is cut into eight 20-sample (2.5 ms) slices; in each, the power at the mark
    frequency, the space frequency and half-way between is measured. The middle one is
    needed for the channel seizure: alternating bits put most of their power at the mean
    of the two tones (V.23's +-400 Hz shift swings the phase by only +-60 degrees), and a
    slice's +-400 Hz main lobe makes the three filters cover the band without a gap. All
    48 correlations (8 slices x 3 tones x cos/sin) come from eight
    ``sum(map(mul, slice, table))``, shifted into place: each table entry packs one
    sample's six coefficients into one int, lane k at bit 32k. ``ratio(frame, energy)`` is about 1.0 for a mark or
    space tone and for caller-ID FSK, about 0.3 for white noise and lower for most speech.
    """

    SLICE = 20
    TONES = 3
    LANES = 2 * TONES * (FRAME // 20)
    BITS = 32
    Q = 2048   # coefficient scale: 20 x 32768 x 2048 < 2**31, so a lane never overflows

    def __init__(self, mark: float, space: float, rate: int = RATE) -> None:
        bits, q = self.BITS, self.Q
        freqs = (mark, (mark + space) / 2, space)
        # Every slice has the same coefficients (the phase restarts per slice): one table
        # of SLICE entries, six lanes each, serves all eight. A slice's sum lands in its
        # own six lanes once shifted, so the frame's packed sum is that of a table of 160
        # entries with the slice's lanes only, made of eight short sums of small ints
        # (each product costs about half as much as one with all 48 lanes).
        table = []
        for j in range(self.SLICE):
            packed = 0
            lane = 0
            for f in freqs:
                w = 2 * pi * f * j / rate
                packed += int(round(cos(w) * q)) << (bits * lane)
                packed += int(round(sin(w) * q)) << (bits * (lane + 1))
                lane += 2
            table.append(packed)
        self._table = tuple(table)
        self._slices = tuple((a, a + self.SLICE, bits * 2 * self.TONES * (a // self.SLICE))
                             for a in range(0, FRAME, self.SLICE))
        # Each lane biased by 2**31 so that negative lanes do not borrow from their
        # neighbours; flipping that bit back leaves two's complement lanes.
        self._bias = sum(1 << (bits * k + bits - 1) for k in range(self.LANES))
        self._unpack = struct.Struct(f"<{self.LANES}i").unpack
        self._nbytes = self.LANES * bits // 8
        # A tone of energy E in a slice, on a filter's frequency, gives |X|^2 = E Q^2 SLICE/2;
        # a tone half-way between two filters reaches each at 0.4 of that, so the sum over
        # the three filters is close to E whatever the frequency in the band.
        self._norm = q * q * self.SLICE / 2.0

    def ratio(self, frame, energy: int) -> float:
        if energy <= 0:
            return 0.0
        table = self._table
        total = 0
        for a, b, shift in self._slices:
            total += sum(map(operator.mul, frame[a:b], table)) << shift
        bias = self._bias
        v = self._unpack(((total + bias) ^ bias).to_bytes(self._nbytes, "little"))
        return sum(map(operator.mul, v, v)) / (self._norm * energy)


def slice_energies(samples, size: int = 20) -> list[int]:
    """Energy of each ``size``-sample slice of ``samples`` (the last one may be shorter)."""
    a = samples if isinstance(samples, array) else array("h", samples)
    return [sum(map(operator.mul, a[i:i + size], a[i:i + size])) for i in range(0, len(a), size)]
