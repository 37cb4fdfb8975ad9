"""Cadence and SIT matching for the call-progress detector (``progress.py``): the tail
of a line's history of tone runs against the cadences of the plan's tones.

The rules of each tone (its sound, its cadence, how much of it to match before it is
sure) come from the plan table (``plans.py``); the tolerances from the standards below.
"""

from dataclasses import dataclass

from linebox.dsp.plans import FAX_CED, FAX_CNG, Plan, SitSpec
from linebox.dsp.tonecorr import Sig, make_sig
from linebox.dsp.toneruns import FT, Run

# Cadence tolerance: ITU-T E.180 lets cadences vary by +-10 %; a reorder at 0.25 s must
# still be told from 0.3 s (+20 %), so the accept band stops at 15 % (plus the few
# milliseconds the edge estimate may be off).
CADENCE_TOL = 0.15
CADENCE_SLACK = 0.006
# Gaps between SIT segments (E.180 allows 30 ms of silence; the mixed frame adds 20 ms).
SIT_GAP_MAX = 0.07
# SIT repeats after its silence (1 s in E.180): the same occurrence if back within this.
SIT_REPEAT_GRACE = 2.0
# A steady tone may drop out this long (a click, a glitch) and still be the same tone.
STEADY_DROPOUT = 0.3
# After the last segment of a cadence, the occurrence is over when nothing of it came
# back within the longest off time of the cadence plus this.
END_GRACE = 0.3
# A steady tone is declared this much longer than the longest accepted on-period of
# another tone that shares its sound.
STEADY_MARGIN = 0.1


@dataclass
class Tone:
    """A tone to declare: its name, its signature's key, its cadence (on, off, ...;
    () = steady) and when it is sure (cadence elements to match, or steady seconds)."""

    name: str
    sig: str
    pattern: tuple[float, ...]
    need: int = 0
    steady_min: float = 0.0

    @property
    def grace(self) -> float:
        """How long nothing of the tone may sound before its occurrence is over."""
        if not self.pattern:
            return STEADY_DROPOUT
        return max(self.pattern[1::2]) * (1 + CADENCE_TOL) + END_GRACE


def plan_tones(plan: Plan) -> tuple[list[Sig], list[Tone], list[str]]:
    """The signatures a plan's tones sound as, its tones, and the keys of SIT's three
    segments' signatures."""
    sigs: dict[str, Sig] = {}

    def sig_for(freqs, bands=None, prefix="") -> str:
        sig = make_sig(freqs, bands, prefix)
        sigs.setdefault(sig.key, sig)
        return sig.key

    specs = dict(plan.tones)
    specs["fax-cng"] = FAX_CNG
    specs["fax-ced"] = FAX_CED
    tones = [Tone(name, sig_for(spec.freqs), tuple(spec.cadence)) for name, spec in specs.items()]
    # One bin at each SIT band's centre: E.180's +-50 Hz is the edge of what the phase turn
    # between half frames measures unambiguously; beyond it the tone aliases to the other
    # side of the bin, where the window's loss no longer matches, and the frame fails the
    # purity test.
    sit_keys = [sig_for(((lo + hi) / 2,), ((lo, hi),), "sit:") for lo, hi in plan.sit.bands]
    for t in tones:
        spec = specs[t.name]
        if not t.pattern:
            # Declared once longer than any on-period of another tone of the same sound.
            longest = max((max(o.pattern[0::2]) for o in tones
                           if o.sig == t.sig and o.pattern), default=0.0)
            t.steady_min = max(spec.min_steady, longest * (1 + CADENCE_TOL) + STEADY_MARGIN)
        else:
            t.need = spec.declare_after or min(len(t.pattern), 4)
    return list(sigs.values()), tones, sit_keys


def near(d: float, nominal: float) -> bool:
    return abs(d - nominal) <= nominal * CADENCE_TOL + CADENCE_SLACK


def fits(d: float, choices) -> bool:
    return any(near(d, c) for c in choices)


class CadenceMatcher:
    """Says which tone the runs of a line's history match, and from when."""

    def __init__(self, tones: list[Tone], sit: SitSpec, sit_keys: list[str]) -> None:
        self.tones = tones
        self._sit = sit
        self._sit_keys = sit_keys
        self._steady: dict[str, Tone] = {}
        for t in tones:
            if not t.pattern:
                self._steady.setdefault(t.sig, t)
        self._sit_tone = Tone("sit", sit_keys[0], ())

    def steady_tone(self, key: str) -> Tone | None:
        """The steady tone of this sound, if the plan has one."""
        return self._steady.get(key)

    def match(self, runs: list[Run], pending: Run | None, current: str | None):
        """A run just closed (or, with ``pending``, one just began): the (tone, onset,
        grace) the tail of the history matches, or None."""
        if pending is None:
            found = self._match_sit(runs, current)
            if found:
                return found
        last = pending or runs[-1]
        for t in self.tones:
            if not t.pattern or t.sig != last.sig.key or current == t.name:
                continue
            if (t.need % 2 == 0) != (pending is not None):
                continue
            onset = self._match_cadence(t, runs, pending)
            if onset is not None:
                return t, onset, t.grace
        return None

    def _match_cadence(self, t: Tone, runs, pending):
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
            elems.append((pending.k0 - head) * FT - runs[-1].end)
        for rot in range(0, len(pat), 2):
            if all(near(d, pat[(rot + e) % len(pat)]) for e, d in enumerate(elems)):
                return self._lookback(t, runs, len(runs) - n_on, rot)
        return None

    @staticmethod
    def _lookback(t: Tone, runs, first, rot):
        """The onset, moved back to a cut-short first on-period just before the match."""
        r0 = runs[first]
        if first == 0:
            return r0.start
        prev = runs[first - 1]
        pat = t.pattern
        off = pat[(rot - 1) % len(pat)]
        on = pat[(rot - 2) % len(pat)]
        if (prev.sig is r0.sig and prev.ok and r0.clean_before and near(r0.gap_before, off)
                and prev.end - prev.start <= on * (1 + CADENCE_TOL) + CADENCE_SLACK):
            return prev.start
        return r0.start

    def _match_sit(self, runs, current):
        """E.180 / GR-1162: three segments in rising order, each of the plan's lengths,
        at most SIT_GAP_MAX apart."""
        if len(runs) < 3 or current == "sit":
            return None
        tail = runs[-3:]
        if [r.sig.key for r in tail] != self._sit_keys:
            return None
        lo = self._sit.lengths[0] - CADENCE_SLACK
        hi = self._sit.lengths[1] + CADENCE_SLACK
        for i, r in enumerate(tail):
            if not r.ok or not lo <= r.end - r.start <= hi:
                return None
            if i and r.gap_before > SIT_GAP_MAX:
                return None
        return self._sit_tone, tail[0].start, SIT_REPEAT_GRACE
