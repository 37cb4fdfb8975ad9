"""Call-progress tone detector: dial, busy, reorder, ringback, SIT and the fax tones.

Three parts, each in its module: ``tonecorr`` correlates every 20 ms frame with the
plan's frequencies and says which tone signature it is "on" for; ``toneruns`` turns
those frames into runs and the gaps between them, with edges placed to a few
milliseconds and each run's frequency and steadiness judged; ``cadence`` matches the
runs against the cadences and SIT of the plan (``plans.py``, which also says when each
tone is sure). This module holds the occurrences: a tone declared once, current while
it sounds, over when nothing of it came back within its grace.
"""

import operator

from linebox.dsp.cadence import CadenceMatcher, Tone, fits, plan_tones
from linebox.dsp.levels import frame_energy
from linebox.dsp.plans import get_plan
from linebox.dsp.tonecorr import HALF as _HALF
from linebox.dsp.tonecorr import MIN_LEVEL_DBM0, ToneCorrelator
from linebox.dsp.toneruns import FT, Run, RunTracker, judge

# A run too unsteady for a steady tone is judged again this many frames later.
REJUDGE_FRAMES = 5
_NEVER = 1 << 62
_mul = operator.mul


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
        sigs, tones, sit_keys = plan_tones(self.plan)
        self._corr = ToneCorrelator(sigs)
        # The first look's tables (even samples of each half), for feed's inline first look.
        self._te1, self._te2 = self._corr.first_look_tables()
        self._quiet_e = frame_energy(MIN_LEVEL_DBM0)
        self._runs = RunTracker(self._corr, self, self._quiet_e)
        self._match = CadenceMatcher(tones, self.plan.sit, sit_keys)
        self._k = 0                      # frames fed
        # The previous frame: its correlations, its samples if not correlated, or None.
        self._prev = None
        # The occurrence: the tone declared, and the frame at which it is over unless
        # something of it sounds again.
        self._current: str | None = None
        self._cur_tone: Tone | None = None
        self._cur_grace = 0
        self._cur_deadline = _NEVER

    @property
    def current(self) -> str | None:
        """The tone declared and still sounding, or None."""
        return self._current

    @property
    def sounding(self) -> bool:
        """Something tone-like (one of the plan's signatures) sounds in this frame."""
        return self._runs.run is not None

    def feed(self, frame, energy: int) -> list[dict]:
        """Process one 160-sample frame (``energy`` = its sum of squares)."""
        k = self._k
        self._k = k + 1
        runs = self._runs
        if energy < self._quiet_e:
            self._prev = None
            if runs.run is None:
                runs.quiet()
                events = []
            else:
                events = runs.quiet_after_run(k, energy)
            if k >= self._cur_deadline:
                events += self._end_current()
            return events
        corr = self._corr
        # Even samples first (4 kHz, both 10 ms halves): enough to see that a frame is no
        # tone, which is most frames of speech. A frame that may be one gets its odd
        # samples too, and is judged on the exact 8 kHz correlations (no alias).
        # (corr.first_look, inline.)
        even = (sum(map(_mul, frame[0:_HALF:2], self._te1)),
                sum(map(_mul, frame[_HALF::2], self._te2)))
        run = runs.run
        if run is None and ((first := corr.first_look_vals(even, energy)) is None
                            or corr.classify(first, energy * 0.5, True)[0] is None):
            # runs.track(k, None, ...) with no run open: a frame of the gap.
            runs.gap_frame(energy)
            events = []
            self._prev = frame
        else:
            vals = corr.correlate(frame, even)
            info = corr.measure(run.sig, vals, energy, False) if run is not None else None
            if info is not None:
                # Still the tone of the run: no need to try the others.
                sig = run.sig
            else:
                sig, info = corr.classify(vals, energy, False)
            events = runs.track(k, sig, info, vals, energy, self._prev)
            self._prev = vals
        if k >= self._cur_deadline:
            events += self._end_current()
        return events

    def flush(self) -> list[dict]:
        """End of the input: close what is open and report what that completes."""
        return self._runs.flush(self._k)

    # -- what the runs tell (RunTracker's owner) ----------------------------------------

    def run_counts(self, run: Run, k) -> list[dict]:
        """The gap before this run is over: cadences ending in an off-period."""
        found = self._match.match(self._runs.history(), run, self._current)
        return self._declare(*found) if found else []

    def run_on(self, run: Run, k) -> list[dict]:
        """A steady tone is declared once it has lasted long enough, steadily."""
        t = self._match.steady_tone(run.sig.key)
        if t is None or (self._current is not None and self._cur_tone.sig == run.sig.key):
            return []
        n = k - run.k0 + 1
        head = min(1.0, run.edge_before / max(run.amps))
        if (n + head) * FT < t.steady_min or n < run.next_judge:
            return []
        if not judge(run)[0]:
            # Not (yet) steady enough: look again a little later, not every frame.
            run.next_judge = n + REJUDGE_FRAMES
            return []
        return self._declare(t, run.onset, t.grace)

    def run_sounding(self, run: Run) -> None:
        if self._current is not None and run.sig.key == self._cur_tone.sig:
            self._cur_deadline = _NEVER

    def run_stopped(self, run: Run, k) -> None:
        if self._current is not None and self._cur_tone.sig == run.sig.key:
            self._cur_deadline = k + self._cur_grace

    def run_closed(self, run: Run) -> list[dict]:
        found = self._match.match(self._runs.history(), None, self._current)
        events = self._declare(*found) if found else []
        t = self._cur_tone
        if (t is not None and t.sig == run.sig.key and t.pattern
                and not fits(run.end - run.start, t.pattern[0::2])):
            # A period of the current tone's sound that is none of its on-periods.
            events += self._end_current()
        return events

    # -- occurrences ------------------------------------------------------------------

    def _declare(self, t: Tone, onset: float, grace: float) -> list[dict]:
        """Tone t is sure now: one event; it stays ``current`` until nothing of it has
        sounded for ``grace`` seconds."""
        events: list[dict] = []
        if self._current is not None:
            events = self._end_current()
        self._current = t.name
        self._cur_tone = t
        self._cur_grace = int(round(grace / FT))
        self._cur_deadline = _NEVER if self._runs.run is not None else self._k + self._cur_grace
        events.append({"type": "tone", "tone": t.name, "t": round(max(onset, 0.0), 4),
                       "at": round(self._k * FT, 4)})
        return events

    def _end_current(self) -> list[dict]:
        self._current = None
        self._cur_tone = None
        self._cur_deadline = _NEVER
        self._runs.forget()
        return []
