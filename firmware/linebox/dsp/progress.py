"""Call-progress tone detector: dial, busy, reorder, ringback, SIT and the fax tones.

Each 20 ms frame is correlated with every frequency the plan uses, over its two 10 ms
halves, in big-int dot products (all lanes packed into one Python int per sample). The
even samples go first: most frames of speech are found to be no tone from them alone;
the others get their odd samples too and are judged on the exact correlations. A frame
is "on" for a tone signature (one frequency, or a pair sounding together) when:

- purity: the signature explains at least ``PURITY_MIN`` of the frame's energy (a sung
  or played note spreads its energy over harmonics; speech over formants);
- level: every frequency is at least ``MIN_LEVEL_DBM0``;
- frequency: each frequency, measured from its phase turn between the two halves, is
  near the plan's (a single note between the two tones of a pair turns both alike).

Consecutive "on" frames form a run. A run counts only if its frequency, refined from
the phase steps between frames, is within ``FREQ_TOL`` of the plan's and those steps
keep to a line (a vibrato, or a voice, wanders off it). Runs and the silences between
them are matched against the plan's cadences. Edges are placed to a few milliseconds
from the tone's amplitude in the partial frames, so cadences are timed finer than frames.
"""

import cmath
import math
import operator
from array import array
from dataclasses import dataclass

from linebox import FRAME, RATE
from linebox.dsp.levels import frame_energy
from linebox.dsp.plans import FAX_CED, FAX_CNG, Plan, get_plan

_mul = operator.mul
_add = operator.add
_FT = FRAME / RATE                     # seconds per frame
_HALF = FRAME // 2
_HZ_PER_RAD = RATE / (2 * math.pi * _HALF)   # phase turn between half frames -> Hz

# Frequency tolerance. Exchanges hold their tones to +-1 % (ITU-T Q.35, BT SIN 350,
# GR-506 precise tones hold better than +-0.5 %); 2.5 % sits midway between that and
# the +-5 % that is clearly some other tone.
FREQ_TOL = 0.025
# What a run's refined frequency may be off by at a band's edge (noise, mu-law).
FREQ_SLACK = 1.0
# Cadence tolerance: ITU-T E.180 lets cadences vary by +-10 %; a reorder at 0.25 s must
# still be told from 0.3 s (+20 %), so the accept band stops at 15 % (plus the few
# milliseconds the edge estimate may be off).
CADENCE_TOL = 0.15
CADENCE_SLACK = 0.006
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
# Phase stability: the phase step between frames may stray this far (radians, about
# 2 Hz of instantaneous frequency) from the run's mean in at most 1 step in 5.
STEP_TOL = 0.25
STABLE_SHARE = 0.8
# Runs are judged on their latest frames (a dial tone may last minutes).
JUDGE_STEPS = 100
# An off period is silence: every frame at least 10 dB below the tone.
QUIET_REL = 0.1
# Gaps between SIT segments (E.180 allows 30 ms of silence; the mixed frame adds 20 ms).
SIT_GAP_MAX = 0.07
# SIT repeats after its silence (1 s in E.180): the same occurrence if back within this.
SIT_REPEAT_GRACE = 2.0
# Shortest run of "on" frames that counts as a tone period (the shortest is 225 ms).
MIN_RUN_FRAMES = 3
# A run too unsteady for a steady tone is judged again this many frames later.
REJUDGE_FRAMES = 5
# A steady tone may drop out this long (a click, a glitch) and still be the same tone.
STEADY_DROPOUT = 0.3
# After the last segment of a cadence, the occurrence is over when nothing of it came
# back within the longest off time of the cadence plus this.
END_GRACE = 0.3
# Shortest steady tone taken as dial tone when no other tone of the plan shares it.
DIAL_MIN = 1.0
# ... and otherwise this much longer than the other tone's longest accepted on-period.
STEADY_MARGIN = 0.1
# CED (T.30: 2100 Hz for 2.6 to 4 s) is sure after half a second.
CED_MIN = 0.5

# Correlation tables: coefficients scaled so that 80 samples of full-scale input fit a
# 32-bit lane (80 * 32768 * 800 < 2**31), read back through array('i').
_SCALE = 800
_LANE_BITS = 32
_BIAS = 1 << (_LANE_BITS - 1)


@dataclass
class _Sig:
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


@dataclass
class _Tone:
    name: str
    sig: str
    pattern: tuple[float, ...]          # on, off, ... ; () = steady
    need: int = 0                       # cadence elements to match before declaring
    steady_min: float = 0.0


@dataclass
class _Run:
    """Consecutive frames "on" for one signature."""

    sig: _Sig
    k0: int                             # first on-frame
    edge_before: float                  # tone amplitude in the frame before
    amps: list
    steps: list                         # per bin: phase steps between frames
    dfs: list                           # per bin: per-frame frequency offsets (Hz)
    energy: float = 0.0
    k1: int = 0                         # last on-frame
    edge_after: float = 0.0
    start: float = 0.0
    end: float = 0.0
    ok: bool = False
    clean_before: bool = False          # the gap before it was silence
    gap_before: float = 0.0
    freq: tuple = ()
    last: tuple = ()                    # the previous on-frame's phasors
    next_judge: int = 0                 # steady tones: judge again at this many frames
    miss: tuple | None = None           # (amplitude, energy) of a missed frame, pending
    amp0: float = 0.0                   # amplitude in the first on-frame


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _plan_sigs(plan: Plan) -> tuple[list[_Sig], list[_Tone]]:
    sigs: dict[str, _Sig] = {}
    tones: list[_Tone] = []

    def sig_for(freqs, bands=None, prefix="") -> str:
        freqs = tuple(freqs)
        key = prefix + "+".join(f"{f:g}" for f in freqs)
        if key not in sigs:
            sigs[key] = _Sig(key, freqs, bands or tuple(
                (f * (1 - FREQ_TOL), f * (1 + FREQ_TOL)) for f in freqs))
        return key

    specs = dict(plan.tones)
    specs["fax-cng"] = FAX_CNG
    specs["fax-ced"] = FAX_CED
    for name, spec in specs.items():
        tones.append(_Tone(name, sig_for(spec.freqs), tuple(spec.cadence)))
    for i, (lo, hi) in enumerate(plan.sit.bands):
        # One bin at the band's centre: E.180's +-50 Hz is the edge of what the phase turn
        # between half frames measures unambiguously; beyond it the tone aliases to the
        # other side of the bin, where the window's loss no longer matches, and the
        # frame fails the purity test.
        tones.append(_Tone(f"sit{i + 1}", sig_for(((lo + hi) / 2,), ((lo, hi),), "sit:"), ()))
    for t in tones:
        if t.name.startswith("sit"):
            continue
        if not t.pattern:
            # Declared once longer than any on-period of another tone of the same sound.
            longest = max((max(o.pattern[0::2]) for o in tones
                           if o.sig == t.sig and o.pattern), default=0.0)
            base = CED_MIN if t.name == "fax-ced" else DIAL_MIN
            t.steady_min = max(base, longest * (1 + CADENCE_TOL) + STEADY_MARGIN)
        else:
            t.need = _elements_needed(t, tones)
    return list(sigs.values()), [t for t in tones if not t.name.startswith("sit")]


def _elements_needed(t: _Tone, tones: list[_Tone]) -> int:
    """How many on/off periods to match: enough to be sure, soon enough for the latency
    each tone is allowed (busy 3.5 s, reorder 2 s, CNG 4 s)."""
    shared = any(o.sig == t.sig and o is not t for o in tones)
    if t.name == "busy":
        return 5              # on off on off on: 2.5 s
    if t.name == "reorder":
        # Three on/off pairs of an even cadence (1.5 s, declared as the 4th on begins);
        # one cycle of an uneven one (uk: 1.5 s), which no busy cadence matches.
        return 6 if len(t.pattern) == 2 else len(t.pattern)
    if t.name == "fax-cng":
        return 2              # on, off: declared as the second beep begins (3.5 s)
    if t.name == "ringback":
        # A sound of its own is sure after its first ring (2 s in us, 0.4+0.2+0.4 in uk);
        # one shared with dial/busy needs the silence after it too.
        return 2 if shared else len(t.pattern) - 1
    return min(len(t.pattern), 4)


class ProgressDetector:
    """Detects the call-progress tones of a tone plan (dial, busy, reorder, ringback, SIT)
    and the fax tones (CNG, CED) in 20 ms frames.

    ``feed(frame, energy)`` takes every frame of the line (160 samples and their sum of
    squares) and returns events ``{"type": "tone", "tone": T, "t": onset, "at": declared}``,
    one per continuous occurrence of a tone; ``flush()`` ends the stream. ``current`` is
    the tone declared and still sounding.
    """

    def __init__(self, plan: str = "us") -> None:
        self.plan = get_plan(plan)
        sigs, self._tones = _plan_sigs(self.plan)
        self._sit_keys = [sig.key for sig in sigs if sig.key.startswith("sit:")]
        self._sit = self.plan.sit
        bins = sorted({f for s in sigs for f in s.bins})
        self._nb = len(bins)
        for s in sigs:
            s.lanes = tuple(bins.index(f) for f in s.bins)
            if len(s.bins) == 2:
                dw = 2 * math.pi * (s.bins[1] - s.bins[0]) / RATE
                s.gram = sum(cmath.exp(1j * dw * n) for n in range(FRAME))
                s.gram_even = sum(cmath.exp(1j * dw * n) for n in range(0, FRAME, 2))
                s.gram_h1 = sum(cmath.exp(1j * dw * n) for n in range(_HALF))
                s.gram_h2 = sum(cmath.exp(1j * dw * n) for n in range(_HALF, FRAME))
        self._sigs = {s.key: s for s in sigs}
        self._steady_keys = {t.sig for t in self._tones if not t.pattern}
        self._by_bin = [[s for s in sigs if i in s.lanes] for i in range(self._nb)]
        self._by_bins = {(i, j): [s for s in sigs if i in s.lanes or j in s.lanes]
                         for i in range(self._nb) for j in range(self._nb) if i != j}
        self._tables = self._make_tables(bins)
        self._shift = 2 * self._nb * _LANE_BITS
        self._bias = sum(_BIAS << (_LANE_BITS * k) for k in range(4 * self._nb))
        self._nbytes = 4 * self._nb * _LANE_BITS // 8
        # Per-bin phase turn over one frame, to take out of frame-to-frame steps.
        self._turn = [cmath.exp(-2j * math.pi * f * FRAME / RATE) for f in bins]
        self._quiet_e = frame_energy(MIN_LEVEL_DBM0)
        self._min_comp_e = frame_energy(MIN_LEVEL_DBM0)
        self._k = 0                      # frames fed
        # The previous frame: its correlations, its samples if not correlated, or None.
        self._prev = None
        self._run: _Run | None = None
        self._runs: list[_Run] = []
        self._gap_dirty = 0              # noisy frames in the gap after the last run
        self._gap_last_dirty = False
        self._gap_frames = 0
        self._current: str | None = None
        self._cur_tone: _Tone | None = None
        self._cur_deadline = 1 << 62
        self._min_run = 0                # runs before this index belong to a past occurrence
        # The chain of runs of one sound that may become a tone (see ``pending``), and the
        # longest silence that may part two of its runs.
        self._chain_sig: str | None = None
        self._chain_start: float | None = None
        self._chain_end = math.inf
        self._chain_gap = {sig.key: STEADY_DROPOUT for sig in sigs}
        for t in self._tones:
            if t.pattern:
                gap = max(t.pattern[1::2]) * (1 + CADENCE_TOL) + END_GRACE
                self._chain_gap[t.sig] = max(self._chain_gap[t.sig], gap)
        for key in self._sit_keys:
            self._chain_gap[key] = SIT_GAP_MAX + self._sit.gap_after * (1 + CADENCE_TOL)
        # The on-periods a run of each sound may be.
        self._chain_ons: dict[str, list[float]] = {sig.key: [] for sig in sigs}
        for t in self._tones:
            self._chain_ons[t.sig] += list(t.pattern[0::2])
        for key in self._sit_keys:
            self._chain_ons[key] += list(self._sit.durations)

    # -- public -----------------------------------------------------------------------

    @property
    def current(self) -> str | None:
        """The tone declared and still sounding, or None."""
        return self._current

    @property
    def pending(self) -> float | None:
        """Onset (seconds) of what sounds like a plan tone under way but not declared yet
        (pure, steady runs of one of the plan's sounds, in a cadence-like chain), or None.
        A listener can hold back voice activity from then on until the tone is declared
        (the stretch was the tone) or this falls back to None (it was not)."""
        if self._current is not None or self._chain_start is None:
            return None
        if self._run is None and (self._k * _FT - self._chain_end
                                  > self._chain_gap[self._chain_sig]):
            return None
        return round(self._chain_start, 4)

    def feed(self, frame, energy: int) -> list[dict]:
        """Process one 160-sample frame (``energy`` = its sum of squares)."""
        k = self._k
        self._k = k + 1
        if energy < self._quiet_e:
            if self._run is None:
                self._gap_frames += 1
                self._gap_last_dirty = False
                self._prev = None
                if k < self._cur_deadline:
                    return []
                return self._end_current()
            return self._quiet_after_run(k, energy)
        te1, te2, to1, to2 = self._tables
        # Even samples first (4 kHz, both 10 ms halves): enough to see that a frame is no
        # tone, which is most frames of speech. A frame that may be one gets its odd
        # samples too, and is judged on the exact 8 kHz correlations (no alias).
        ev1 = sum(map(_mul, frame[0:_HALF:2], te1))
        ev2 = sum(map(_mul, frame[_HALF::2], te2))
        if self._run is None:
            evals = self._decode(ev1, ev2)
            if self._classify(evals, energy * 0.5, True)[0] is None:
                self._prev = frame
                events = self._track(k, None, None, None, energy)
                if k >= self._cur_deadline:
                    events += self._end_current()
                return events
        vals = self._decode(ev1 + sum(map(_mul, frame[1:_HALF:2], to1)),
                            ev2 + sum(map(_mul, frame[_HALF + 1::2], to2)))
        run = self._run
        info = self._measure(run.sig, vals, energy, False) if run is not None else None
        if info is not None:
            # Still the tone of the run: no need to try the others.
            sig = run.sig
        else:
            sig, info = self._classify(vals, energy, False)
        events = self._track(k, sig, info, vals, energy)
        self._prev = vals
        if k >= self._cur_deadline:
            events += self._end_current()
        return events

    def flush(self) -> list[dict]:
        """End of the input: close what is open and report what that completes."""
        events: list[dict] = []
        if self._run is not None:
            events = self._end_run(self._k, None)
        return events

    # -- per frame --------------------------------------------------------------------

    @staticmethod
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
        return t[0:_HALF:2], t[_HALF::2], t[1:_HALF:2], t[_HALF + 1::2]

    def _decode(self, acc1: int, acc2: int) -> list:
        """The two halves' packed sums to complex correlations [H1 of each bin, H2 ...].

        Adding 2**31 to every lane makes them all non-negative (no borrows between lanes);
        flipping that bit back in each 32-bit word leaves two's complement lanes that
        array('i') reads as they are.
        """
        acc = (acc1 + (acc2 << self._shift) + self._bias) ^ self._bias
        out = array("i")
        out.frombytes(acc.to_bytes(self._nbytes, "little"))
        return list(map(complex, out[0::2], out[1::2]))

    def _vals(self, prev):
        """Correlations of a kept frame (its samples if not correlated yet, or None)."""
        if prev is None or isinstance(prev, list):
            return prev
        te1, te2, to1, to2 = self._tables
        return self._decode(sum(map(_mul, prev[0:_HALF:2], te1))
                            + sum(map(_mul, prev[1:_HALF:2], to1)),
                            sum(map(_mul, prev[_HALF::2], te2))
                            + sum(map(_mul, prev[_HALF + 1::2], to2)))

    def _classify(self, vals, energy, even: bool):
        """The signature this frame is "on" for, or None; and its measurements. With
        ``even``, vals come from the even samples alone and ``energy`` is half the
        frame's: a lenient first look that lets through whatever may be a tone."""
        nb = self._nb
        m = _HALF // 2 if even else _HALF
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
            info = self._measure(sig, vals, energy, even)
            if info is not None and (best is None or info[0] > best[1][0]):
                best = (sig, info)
        return best if best is not None else (None, None)

    def _measure(self, sig: _Sig, vals, energy, even: bool):
        """(purity, amplitude, phasors, frequency offset) if the frame is on for sig."""
        nb = self._nb
        m = _HALF // 2 if even else _HALF
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
        b1, b2 = _solve_pair(sig.gram_even if even else sig.gram, c1, c2, n)
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
        p1, q1 = _solve_pair(g1, vals[i], vals[j], _HALF)
        p2, q2 = _solve_pair(g2, vals[i + nb], vals[j + nb], _HALF)
        if not (p1 and q1 and p2 and q2):
            return None
        dfs = (cmath.phase(p2 * p1.conjugate()) * _HZ_PER_RAD,
               cmath.phase(q2 * q1.conjugate()) * _HZ_PER_RAD)
        for f, df in zip(sig.bins, dfs, strict=True):
            if abs(df) > 2 * FREQ_TOL * f:
                return None
        return purity, abs(b1) + abs(b2), (b1, b2), dfs

    def _amp(self, sig: _Sig, vals) -> float:
        """The tone's amplitude in a frame that need not be on (edges of a run)."""
        if vals is None:
            return 0.0
        nb = self._nb
        if len(sig.lanes) == 1:
            i = sig.lanes[0]
            return abs(vals[i]) + abs(vals[i + nb])
        i, j = sig.lanes
        b1, b2 = _solve_pair(sig.gram, vals[i] + vals[i + nb], vals[j] + vals[j + nb], FRAME)
        return abs(b1) + abs(b2)

    # -- runs -------------------------------------------------------------------------

    def _track(self, k, sig, info, vals, energy) -> list[dict]:
        run = self._run
        events: list[dict] = []
        if run is not None:
            if sig is run.sig:
                if run.miss is not None:
                    run.miss = None
                    run.last = ()           # no phase step across the missed frame
                return self._continue(run, k, info, energy)
            if run.miss is None and sig is None:
                # One frame off is a dropout or a phase reversal (V.25 answer tone),
                # unless the next frame is off too.
                run.miss = (self._amp(run.sig, vals), energy)
                return events
            events = self._end_run(k, vals)
        if sig is None:
            self._gap_frame(energy)
            return events
        # A new run: the gap before it ends; its last frame held this run's head.
        if self._gap_last_dirty:
            self._gap_dirty -= 1
        run = _Run(sig, k, self._amp(sig, self._vals(self._prev)), [],
                   [[] for _ in sig.bins], [[] for _ in sig.bins])
        run.clean_before = self._gap_dirty == 0
        self._run = run
        return events + self._continue(run, k, info, energy)

    def _continue(self, run: _Run, k, info, energy) -> list[dict]:
        self._extend(run, info, energy)
        run.k1 = k
        if len(run.amps) == MIN_RUN_FRAMES:
            self._chain_add(run)
        if len(run.amps) == MIN_RUN_FRAMES and run.k0 < k:
            # The gap before this run is over: cadences ending in an off-period.
            events = self._match(pending=run)
            if events:
                return events
        if run.sig.key in self._steady_keys:
            return self._check_steady(run, k)
        return []

    def _chain_add(self, run: _Run):
        """A run is long enough to count: it continues the chain of its sound, or starts
        a new one."""
        key = run.sig.key
        head = min(1.0, run.edge_before / max(run.amps))
        start = (run.k0 - head) * _FT
        if not (self._chain_start is not None and self._chain_sig == key
                and run.clean_before
                and start - self._chain_end <= self._chain_gap[key]):
            self._chain_sig, self._chain_start = key, start
        self._chain_end = math.inf

    def _end_run(self, k, vals) -> list[dict]:
        """Close the run before frame k (or before a missed frame k - 1)."""
        run = self._run
        if run.miss is None:
            return self._close_run(k, self._amp(run.sig, vals))
        amp, energy = run.miss
        events = self._close_run(k - 1, amp)
        self._gap_frame(energy)
        return events

    def _gap_frame(self, energy):
        """A frame between runs: silence, or something else (then the gap is no cadence's
        off-period). The frame right after a run holds its tail and is not held against
        the gap; nor is the last, which holds the next run's head."""
        self._gap_frames += 1
        dirty = energy > self._quiet_e and (
            not self._runs or energy > QUIET_REL * self._runs[-1].energy)
        counted = dirty and self._gap_frames > 1
        if counted:
            self._gap_dirty += 1
        self._gap_last_dirty = counted

    def _quiet_after_run(self, k, energy) -> list[dict]:
        run = self._run
        if run.miss is None:
            run.miss = (0.0, energy)
            events: list[dict] = []
        else:
            events = self._end_run(k, None)
            self._gap_frame(energy)
        self._prev = None
        if k >= self._cur_deadline:
            events += self._end_current()
        return events

    def _extend(self, run: _Run, info, energy):
        purity, amp, phasors, df = info
        if run.last:
            for b, (p, q) in enumerate(zip(phasors, run.last, strict=True)):
                z = p * q.conjugate() * self._turn[run.sig.lanes[b]]
                run.steps[b].append(cmath.phase(z) if z else 0.0)
        run.last = phasors
        run.amps.append(amp)
        if df is not None:
            for b, d in enumerate(df):
                run.dfs[b].append(d)
        n = len(run.amps)
        run.energy += (energy - run.energy) / min(n, JUDGE_STEPS)
        if n == 1:
            run.amp0 = amp
        elif n > 2 * JUDGE_STEPS:
            # A steady tone may last minutes: keep what judging it needs.
            del run.amps[:JUDGE_STEPS]
            for lst in run.steps + run.dfs:
                del lst[:-JUDGE_STEPS]
        if self._current is not None and run.sig.key == self._cur_tone.sig:
            self._cur_deadline = 1 << 62

    def _close_run(self, k, edge_amp) -> list[dict]:
        """The run ended with frame k - 1; place its edges, judge it, match cadences."""
        run = self._run
        self._run = None
        run.k1 = k - 1
        run.edge_after = edge_amp
        short = len(run.amps) < MIN_RUN_FRAMES
        events: list[dict] = []
        if self._current is not None and self._cur_tone.sig == run.sig.key:
            self._cur_deadline = k + self._cur_grace
        if short:
            # A frame or two "on" is a tone's ragged edge or a chance in speech, never a
            # tone's period: it belongs to the gap around it.
            self._gap_frames += len(run.amps)
            self._gap_last_dirty = False
            return events
        self._finish(run)
        if run.sig.key == self._chain_sig:
            self._chain_end = run.end
            if not run.ok or not _fits(run.end - run.start, self._chain_ons[run.sig.key],
                                       CADENCE_TOL):
                self._chain_start = None
        self._gap_frames = 0
        self._gap_dirty = 0
        self._gap_last_dirty = False
        run.gap_before = run.start - self._runs[-1].end if self._runs else math.inf
        self._runs.append(run)
        if len(self._runs) > 12:
            del self._runs[0]
            self._min_run = max(0, self._min_run - 1)
        events = self._match()
        t = self._cur_tone
        if (t is not None and t.sig == run.sig.key and t.pattern
                and not _fits(run.end - run.start, t.pattern[0::2], CADENCE_TOL)):
            events += self._end_current()
        return events

    def _finish(self, run: _Run):
        """Place the run's edges inside its first and last frames (and the frames around
        them) from the tone's amplitude there, against its amplitude in between."""
        amps = run.amps                  # at least MIN_RUN_FRAMES
        ref = sum(amps[1:-1]) / (len(amps) - 2) or 1.0
        head = min(1.0, run.edge_before / ref) + min(1.0, run.amp0 / ref) - 1
        tail = min(1.0, run.edge_after / ref) + min(1.0, amps[-1] / ref) - 1
        run.start = (run.k0 - head) * _FT
        run.end = (run.k1 + 1 + tail) * _FT
        run.ok, run.freq = self._judge(run)

    def _judge(self, run: _Run):
        """Frequency and phase stability of a run: the frequency measured within frames
        (coarse, unambiguous), refined by the phase steps between frames, which must
        also keep to a straight line (a vibrato or a voice wanders off it)."""
        sig = run.sig
        freqs = []
        for b, steps in enumerate(run.steps):
            steps = steps[-JUDGE_STEPS:]
            dfs = run.dfs[b][-JUDGE_STEPS:]
            if len(steps) < 2:
                return False, ()
            # The steps between frames (20 ms) measure finely but only modulo 50 Hz; the
            # frames' own estimate picks the right 50 Hz.
            mean = cmath.phase(sum(cmath.exp(1j * x) for x in steps))
            devs = [_wrap(x - mean) for x in steps]
            good = [d for d in devs if -STEP_TOL <= d <= STEP_TOL]
            if not good or len(good) < STABLE_SHARE * len(steps):
                return False, ()
            fine = (mean + sum(good) / len(good)) / (2 * math.pi * _FT)
            coarse = sum(dfs) / len(dfs)
            df = fine + round((coarse - fine) * _FT) / _FT
            f = sig.bins[b] + df
            lo, hi = sig.bands[b]
            if not lo - FREQ_SLACK <= f <= hi + FREQ_SLACK:
                return False, ()
            freqs.append(f)
        return True, tuple(freqs)

    # -- matching ---------------------------------------------------------------------

    def _check_steady(self, run: _Run, k) -> list[dict]:
        if self._current is not None and self._cur_tone.sig == run.sig.key:
            return []
        n = k - run.k0 + 1
        for t in self._tones:
            if t.pattern or t.sig != run.sig.key:
                continue
            head = min(1.0, run.edge_before / max(run.amps)) if run.amps else 0.0
            dur = (n + head) * _FT
            if dur < t.steady_min:
                return []
            if n < run.next_judge:
                return []
            ok, _ = self._judge(run)
            if not ok:
                # Not (yet) steady enough: look again a little later, not every frame.
                run.next_judge = n + REJUDGE_FRAMES
                return []
            start = (run.k0 - head) * _FT
            return self._declare(t, start, STEADY_DROPOUT)
        return []

    def _match(self, pending: _Run | None = None) -> list[dict]:
        """A run just closed (or, with ``pending``, one just began): does the tail of the
        history match a cadence or SIT?"""
        runs = self._runs[self._min_run:]
        if pending is None:
            events = self._match_sit(runs)
            if events:
                return events
        last = pending or runs[-1]
        for t in self._tones:
            if not t.pattern or t.sig != last.sig.key or self._current == t.name:
                continue
            if (t.need % 2 == 0) != (pending is not None):
                continue
            onset = self._match_cadence(t, runs, pending)
            if onset is not None:
                grace = max(t.pattern[1::2]) * (1 + CADENCE_TOL) + END_GRACE
                return self._declare(t, onset, grace)
        return []

    def _match_cadence(self, t: _Tone, runs, pending):
        """Onset of the cadence if the last runs and gaps match t's pattern; with a run
        pending, the last element is the gap that its start closed."""
        pat = t.pattern
        n_on = (t.need + 1) // 2
        if len(runs) < n_on:
            return None
        tail = runs[-n_on:]
        if any(r.sig.key != t.sig or not r.ok for r in tail):
            return None
        elems = []
        for i, r in enumerate(tail):
            if i:
                if not r.clean_before:
                    return None
                elems.append(r.gap_before)
            elems.append(r.end - r.start)
        if pending is not None:
            if not pending.clean_before or not runs:
                return None
            head = min(1.0, pending.edge_before / max(pending.amps))
            elems.append((pending.k0 - head) * _FT - runs[-1].end)
        for rot in range(0, len(pat), 2):
            if all(_near(d, pat[(rot + e) % len(pat)]) for e, d in enumerate(elems)):
                return self._lookback(t, runs, len(runs) - n_on, rot)
        return None

    def _lookback(self, t: _Tone, runs, first, rot):
        """The onset, moved back to a cut-short first on-period just before the match."""
        r0 = runs[first]
        if first == 0:
            return r0.start
        prev = runs[first - 1]
        pat = t.pattern
        off = pat[(rot - 1) % len(pat)]
        on = pat[(rot - 2) % len(pat)]
        if (prev.sig is r0.sig and prev.ok and r0.clean_before and _near(r0.gap_before, off)
                and prev.end - prev.start <= on * (1 + CADENCE_TOL) + CADENCE_SLACK):
            return prev.start
        return r0.start

    def _match_sit(self, runs) -> list[dict]:
        if len(runs) < 3 or self._current == "sit":
            return []
        tail = runs[-3:]
        if [r.sig.key for r in tail] != self._sit_keys:
            return []
        lo = self._sit.lengths[0] - CADENCE_SLACK
        hi = self._sit.lengths[1] + CADENCE_SLACK
        for i, r in enumerate(tail):
            if not r.ok or not lo <= r.end - r.start <= hi:
                return []
            if i and r.gap_before > SIT_GAP_MAX:
                return []
        t = _Tone("sit", tail[0].sig.key, ())
        return self._declare(t, tail[0].start, SIT_REPEAT_GRACE)

    # -- occurrences ------------------------------------------------------------------

    def _declare(self, t: _Tone, onset: float, grace: float) -> list[dict]:
        """Tone t is sure now: one event; it stays ``current`` until nothing of it has
        sounded for ``grace`` seconds."""
        events: list[dict] = []
        if self._current is not None:
            events = self._end_current()
        self._current = t.name
        self._cur_tone = t
        self._cur_grace = int(round(grace / _FT))
        self._cur_deadline = 1 << 62 if self._run is not None else self._k + self._cur_grace
        events.append({"type": "tone", "tone": t.name, "t": round(max(onset, 0.0), 4),
                       "at": round(self._k * _FT, 4)})
        return events

    def _end_current(self) -> list[dict]:
        self._current = None
        self._cur_tone = None
        self._cur_deadline = 1 << 62
        self._min_run = len(self._runs)
        return []


def _near(d: float, nominal: float) -> bool:
    return abs(d - nominal) <= nominal * CADENCE_TOL + CADENCE_SLACK


def _fits(d: float, choices, tol) -> bool:
    return any(abs(d - c) <= c * tol + CADENCE_SLACK for c in choices)


def _dirichlet(dw: float, n: int) -> float:
    """Gain of an n-sample rectangular window dw radians/sample away from its centre."""
    half = dw / 2
    s = math.sin(half)
    if abs(s) < 1e-9:
        return 1.0
    return abs(math.sin(n * half) / (n * s))


def _solve_pair(g: complex, c1: complex, c2: complex, n: int):
    """Amplitudes of two tones from their correlations over n samples, undoing each one's
    leak into the other's bin (2x2 least squares; the Gram matrix is [[n, g], [g*, n]])."""
    det = n * n - (g * g.conjugate()).real
    return (n * c1 - g * c2) / det, (n * c2 - g.conjugate() * c1) / det
