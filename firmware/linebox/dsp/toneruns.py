"""Runs of tone frames, for the call-progress detector (``progress.py``).

Consecutive frames "on" for one signature form a run. A run counts only if its
frequency, refined from the phase steps between frames, is in the signature's band and
those steps keep to a line (a vibrato, or a voice, wanders off it). Edges are placed to
a few milliseconds from the tone's amplitude in the partial frames, so cadences are
timed finer than frames. The gaps between runs are watched too: a cadence's off-period
is silence.
"""

import cmath
import math
from dataclasses import dataclass

from linebox import FRAME, RATE
from linebox.dsp.tonecorr import Sig, ToneCorrelator

FT = FRAME / RATE                      # seconds per frame

# What a run's refined frequency may be off by at a band's edge (noise, mu-law).
FREQ_SLACK = 1.0
# Phase stability: the phase step between frames may stray this far (radians, about
# 2 Hz of instantaneous frequency) from the run's mean in at most 1 step in 5.
STEP_TOL = 0.25
STABLE_SHARE = 0.8
# Runs are judged on their latest frames (a dial tone may last minutes).
JUDGE_STEPS = 100
# An off period is silence: every frame at least 10 dB below the tone.
QUIET_REL = 0.1
# Shortest run of "on" frames that counts as a tone period (the shortest is 225 ms).
MIN_RUN_FRAMES = 3
# Runs kept in the history, for cadences to be matched against.
HISTORY = 12


@dataclass
class Run:
    """Consecutive frames "on" for one signature."""

    sig: Sig
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

    @property
    def onset(self) -> float:
        """Where the run began, from its first frame and the tone's head before it."""
        head = min(1.0, self.edge_before / max(self.amps)) if self.amps else 0.0
        return (self.k0 - head) * FT


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class RunTracker:
    """Turns the frames' verdicts (which signature each is on for) into runs and the
    gaps between them, and tells its owner when a run counts, goes on, and ends.

    The owner has ``run_counts(run, k)`` (a run is MIN_RUN_FRAMES long: the gap before
    it is over), ``run_on(run, k)`` (a counted run goes on), ``run_sounding(run)`` (any
    frame on), ``run_stopped(run, k)`` (it stopped before frame k) and
    ``run_closed(run)`` (a counted run is judged and in the history); those returning
    events return lists.
    """

    def __init__(self, corr: ToneCorrelator, owner, quiet_e: float) -> None:
        self._corr = corr
        self._owner = owner
        self._quiet_e = quiet_e
        # Per-bin phase turn over one frame, to take out of frame-to-frame steps.
        self._turn = [cmath.exp(-2j * math.pi * f * FRAME / RATE) for f in corr.bins]
        self.run: Run | None = None
        self.runs: list[Run] = []
        self.first = 0                   # runs before this index belong to a past occurrence
        self._gap_dirty = 0              # noisy frames in the gap after the last run
        self._gap_last_dirty = False
        self._gap_frames = 0

    def history(self) -> list[Run]:
        """The runs since the last occurrence ended."""
        return self.runs[self.first:]

    def forget(self) -> None:
        """An occurrence ended: its runs match nothing more."""
        self.first = len(self.runs)

    def quiet(self) -> None:
        """A frame too quiet for any tone, with no run open."""
        self._gap_frames += 1
        self._gap_last_dirty = False

    def track(self, k, sig, info, vals, energy, prev) -> list[dict]:
        """Frame k was on for ``sig`` (or None) with these measurements; ``prev`` is
        the previous frame (its correlations, its samples, or None)."""
        run = self.run
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
                run.miss = (self._corr.amp(run.sig, vals), energy)
                return events
            events = self._end_run(k, vals)
        if sig is None:
            self.gap_frame(energy)
            return events
        # A new run: the gap before it ends; its last frame held this run's head.
        if self._gap_last_dirty:
            self._gap_dirty -= 1
        run = Run(sig, k, self._corr.amp(sig, self._corr.vals(prev)), [],
                  [[] for _ in sig.bins], [[] for _ in sig.bins])
        run.clean_before = self._gap_dirty == 0
        self.run = run
        return events + self._continue(run, k, info, energy)

    def quiet_after_run(self, k, energy) -> list[dict]:
        """A frame too quiet for any tone while a run is open."""
        run = self.run
        if run.miss is None:
            run.miss = (0.0, energy)
            return []
        events = self._end_run(k, None)
        self.gap_frame(energy)
        return events

    def flush(self, k) -> list[dict]:
        if self.run is not None:
            return self._end_run(k, None)
        return []

    # -- runs -------------------------------------------------------------------------

    def _continue(self, run: Run, k, info, energy) -> list[dict]:
        self._extend(run, info, energy)
        run.k1 = k
        if len(run.amps) == MIN_RUN_FRAMES and run.k0 < k:
            # The gap before this run is over: cadences ending in an off-period.
            events = self._owner.run_counts(run, k)
            if events:
                return events
        return self._owner.run_on(run, k)

    def _end_run(self, k, vals) -> list[dict]:
        """Close the run before frame k (or before a missed frame k - 1)."""
        run = self.run
        if run.miss is None:
            return self._close_run(k, self._corr.amp(run.sig, vals))
        amp, energy = run.miss
        events = self._close_run(k - 1, amp)
        self.gap_frame(energy)
        return events

    def gap_frame(self, energy):
        """A frame between runs: silence, or something else (then the gap is no cadence's
        off-period). The frame right after a run holds its tail and is not held against
        the gap; nor is the last, which holds the next run's head."""
        self._gap_frames += 1
        dirty = energy > self._quiet_e and (
            not self.runs or energy > QUIET_REL * self.runs[-1].energy)
        counted = dirty and self._gap_frames > 1
        if counted:
            self._gap_dirty += 1
        self._gap_last_dirty = counted

    def _extend(self, run: Run, info, energy):
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
        self._owner.run_sounding(run)

    def _close_run(self, k, edge_amp) -> list[dict]:
        """The run ended with frame k - 1; place its edges, judge it, match cadences."""
        run = self.run
        self.run = None
        run.k1 = k - 1
        run.edge_after = edge_amp
        self._owner.run_stopped(run, k)
        if len(run.amps) < MIN_RUN_FRAMES:
            # A frame or two "on" is a tone's ragged edge or a chance in speech, never a
            # tone's period: it belongs to the gap around it.
            self._gap_frames += len(run.amps)
            self._gap_last_dirty = False
            return []
        self._finish(run)
        self._gap_frames = 0
        self._gap_dirty = 0
        self._gap_last_dirty = False
        run.gap_before = run.start - self.runs[-1].end if self.runs else math.inf
        self.runs.append(run)
        if len(self.runs) > HISTORY:
            del self.runs[0]
            self.first = max(0, self.first - 1)
        return self._owner.run_closed(run)

    def _finish(self, run: Run):
        """Place the run's edges inside its first and last frames (and the frames around
        them) from the tone's amplitude there, against its amplitude in between."""
        amps = run.amps                  # at least MIN_RUN_FRAMES
        ref = sum(amps[1:-1]) / (len(amps) - 2) or 1.0
        head = min(1.0, run.edge_before / ref) + min(1.0, run.amp0 / ref) - 1
        tail = min(1.0, run.edge_after / ref) + min(1.0, amps[-1] / ref) - 1
        run.start = (run.k0 - head) * FT
        run.end = (run.k1 + 1 + tail) * FT
        run.ok, run.freq = judge(run)


def judge(run: Run):
    """Frequency and phase stability of a run: the frequency measured within frames
    (coarse, unambiguous), refined by the phase steps between frames, which must also
    keep to a straight line (a vibrato or a voice wanders off it)."""
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
        fine = (mean + sum(good) / len(good)) / (2 * math.pi * FT)
        coarse = sum(dfs) / len(dfs)
        df = fine + round((coarse - fine) * FT) / FT
        f = sig.bins[b] + df
        lo, hi = sig.bands[b]
        if not lo - FREQ_SLACK <= f <= hi + FREQ_SLACK:
            return False, ()
        freqs.append(f)
    return True, tuple(freqs)
