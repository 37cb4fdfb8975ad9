"""The dual-tone alerting signal (DT-AS) that comes before on-hook caller ID in the UK.

BT lines (SIN 227) and ETSI EN 300 659-1 §6.1.1 lines that send caller ID before the
first ring reverse the line's polarity, send the DT-AS, then the V.23 burst, and only
then ring. The DT-AS is 2130 Hz and 2750 Hz together for 100 +- 10 ms (EN 300 659-1:
each frequency +-0.5 %; spandsp's adsi.c sends it at -13 dBm0 a tone).

How it listens, in 5 ms blocks of 40 samples (four per frame):

- a frame too quiet for two tones at ``MIN_TONE_DBM0``, or whose spectral slope (its
  lag-1 autocorrelation over its energy, which the listener has) is not that of two
  tones between 2000 and 2900 Hz, costs a comparison or two: speech and the line's
  own tones, all below 2 kHz, never get further;
- otherwise one packed big-int correlation per block gives both tones' cos and sin
  (the two tones are 620 Hz apart, three times a block's bin width: each leaks about
  1 % of its power into the other's, which is ignored; a tone 1.5 % off keeps 87 % of
  its power in a 5 ms block), and a block is a *hit* when both tones
  carry ``MIN_SHARE`` of its energy, each at least ``MIN_TONE_DBM0``, within
  ``MAX_TWIST_DB`` of each other;
- consecutive hits must keep each tone's phase advancing as its frequency says
  (``FREQ_ACCEPT``, ``FREQ_REJECT``), as the DTMF detector checks its keys;
- the tone's length, measured from the hits and the tone's amplitude in the partial
  blocks at each end (as the DTMF detector places a key's edges), must be within
  ``LENGTHS``: a steady tone or a chirp of those frequencies is no alert.

``feed(frame, energy, lag1)`` returns ``[{"type": "alert", "t": onset, "dur": seconds}]``
when an alert has ended.
"""

import cmath
import math
import operator

from linebox import FRAME, RATE
from linebox.dsp.levels import amplitude
from linebox.dsp.levels import energy as _energy
from linebox.dsp.levels import lag1 as _lag1

BLOCK = FRAME // 4
FREQS = (2130.0, 2750.0)
# EN 300 659-1 gives +-0.5 % for the sender; +-1.5 % is accepted and 3.5 % off rejected
# (DTMF's figures): a block's phase advance may stray by what 2.5 % off gives, midway.
FREQ_ACCEPT = 0.015
FREQ_REJECT = 0.035
# 100 +- 10 ms sent (EN 300 659-1 §6.1.1, BT SIN 227); the edges are placed to a few
# milliseconds, and 80 to 120 ms is accepted (ASSUMED: the receiver's margin is ours).
LENGTHS = (0.08, 0.12)
# Levels: EN 300 659-1 sends -2 to -40 dBV; a tone below -40 dBm0 is not taken.
MIN_TONE_DBM0 = -40.0
MAX_TWIST_DB = 6.0         # ASSUMED: the two tones are sent at one level
# Share of a block's energy the two tones carry (a block the tone fills; the partial
# blocks at the edges are not hits, they only place the edges). Both tones 1.5 % off
# score 0.87 to 0.9, with noise 20 dB down 0.86.
MIN_SHARE = 0.7

_SCALE = 16384                           # 40 * 32768 * 16384 < 2**39: 40-bit lanes
_LANE = 40
_OFFSET = 1 << (_LANE - 1)
_LANES = 2 * len(FREQS)
_BIAS = sum(_OFFSET << (_LANE * k) for k in range(_LANES))
_NBYTES = _LANE * _LANES // 8
_mul = operator.mul


def _table() -> list[int]:
    out = []
    for n in range(BLOCK):
        v = 0
        for i, f in enumerate(FREQS):
            w = 2.0 * math.pi * f * n / RATE
            v += round(_SCALE * math.cos(w)) << (_LANE * 2 * i)
            v += round(-_SCALE * math.sin(w)) << (_LANE * (2 * i + 1))
        out.append(v)
    return out


_TABLE = _table()
# |X|^2 of a tone of amplitude A over a block: (A * BLOCK * SCALE / 2)^2.
_AMP_FACTOR = BLOCK * _SCALE / 2.0
_MIN_X2 = (amplitude(MIN_TONE_DBM0) * _AMP_FACTOR) ** 2
_TWIST = 10.0 ** (MAX_TWIST_DB / 10.0)
# A tone of amplitude A has BLOCK * A^2 / 2 of energy in a block: |X|^2 * _ENERGY_OF.
_ENERGY_OF = BLOCK / 2.0 / _AMP_FACTOR ** 2
# Phase advance per block of each tone, and the most a hit may stray from it.
_ADVANCE = tuple(cmath.exp(-2j * math.pi * f * BLOCK / RATE) for f in FREQS)
_PHASE_TOL = tuple(math.pi * (FREQ_ACCEPT + FREQ_REJECT) * f * BLOCK / RATE for f in FREQS)
# Lag-1 autocorrelation over energy of two tones is the energy-weighted mean of cos(w):
# between cos(2 pi 2750 / 8000) = -0.56 and cos(2 pi 2130 / 8000) = -0.10 for any
# twist, widened for noise, the tolerance and the frame's edges.
_LAG1_LOW = math.cos(2.0 * math.pi * FREQS[1] * 1.05 / RATE) - 0.15
_LAG1_HIGH = math.cos(2.0 * math.pi * FREQS[0] * 0.95 / RATE) + 0.15
# Quietest frame that may hold a block of both tones at the minimum.
_FRAME_GATE = 2 * BLOCK * amplitude(MIN_TONE_DBM0 - 1.0) ** 2 / 2.0


def _lanes(acc: int) -> list[int]:
    b = (acc + _BIAS).to_bytes(_NBYTES, "little")
    return [int.from_bytes(b[k:k + 5], "little") - _OFFSET for k in range(0, _NBYTES, 5)]


class AlertToneDetector:
    """Finds the dual-tone alerting signal (2130 + 2750 Hz, about 100 ms) in 20 ms frames."""

    def __init__(self) -> None:
        self._n = 0                  # samples fed: the detector's clock
        self._run = []               # consecutive hit blocks: (pos, x1, x2)
        self._before = 0.0           # amplitude of both tones in the block before the run
        self._last_amp = 0.0         # ... in the last block looked at (for the run's head)

    def feed(self, frame, energy: int, lag1: int | None = None) -> list[dict]:
        """One 160-sample frame, its energy and (if the caller has it) its lag-1
        autocorrelation; returns the alerts that ended."""
        pos = self._n
        self._n = pos + FRAME
        if energy < _FRAME_GATE:
            return self._miss(pos, 0.0) if self._run else self._quiet()
        if lag1 is None:
            lag1 = _lag1(frame, energy)
        if not energy * _LAG1_LOW <= lag1 <= energy * _LAG1_HIGH and not self._run:
            return self._quiet()
        out: list[dict] = []
        for at in range(0, FRAME, BLOCK):
            out += self._block(pos + at, frame[at:at + BLOCK])
        return out

    def flush(self) -> list[dict]:
        out = self._miss(self._n, 0.0) if self._run else []
        self._run = []
        return out

    # -- inside ---------------------------------------------------------------------

    def _quiet(self) -> list:
        self._last_amp = 0.0
        return []

    def _block(self, pos: int, block) -> list[dict]:
        c = _lanes(sum(map(_mul, block, _TABLE)))
        x1, x2 = complex(c[0], c[1]), complex(c[2], c[3])
        p1, p2 = abs(x1) ** 2, abs(x2) ** 2
        amp = (math.sqrt(p1) + math.sqrt(p2)) / _AMP_FACTOR
        e = _energy(block)
        hit = (p1 >= _MIN_X2 and p2 >= _MIN_X2 and p1 <= p2 * _TWIST and p2 <= p1 * _TWIST
               and (p1 + p2) * _ENERGY_OF >= MIN_SHARE * e)
        if hit and self._run:
            _, q1, q2 = self._run[-1]
            if not (_steady(q1, x1, 0) and _steady(q2, x2, 1)):
                out = self._miss(pos, amp)
                self._run = [(pos, x1, x2)]
                self._before = 0.0
                return out
        if hit:
            if not self._run:
                self._before = self._last_amp
            self._run.append((pos, x1, x2))
            self._last_amp = amp
            return []
        out = self._miss(pos, amp) if self._run else []
        self._last_amp = amp
        return out

    def _miss(self, pos: int, amp_after: float) -> list[dict]:
        """The run of hits ended before the block at ``pos`` (whose amplitude is
        ``amp_after``): report it if it was an alert's length."""
        run, self._run = self._run, []
        if len(run) < 2:
            return []
        full = max(abs(x1) + abs(x2) for _, x1, x2 in run) / _AMP_FACTOR
        head = min(1.0, self._before / full)
        tail = min(1.0, amp_after / full) if run[-1][0] + BLOCK == pos else 0.0
        start = run[0][0] - head * BLOCK
        end = run[-1][0] + BLOCK + tail * BLOCK
        dur = (end - start) / RATE
        if not LENGTHS[0] <= dur <= LENGTHS[1]:
            return []
        return [{"type": "alert", "t": round(start / RATE, 4), "dur": round(dur, 4)}]


def _steady(a: complex, b: complex, i: int) -> bool:
    """Tone i advanced by its nominal phase from block correlation a to b."""
    d = b * a.conjugate() * _ADVANCE[i]
    return d != 0 and abs(cmath.phase(d)) <= _PHASE_TOL[i]
