"""Counting rings from the ring signal, one 20 ms frame at a time.

A "ring" is one period of the plan's ring cadence: the UK double ring (0.4 on, 0.2
off, 0.4 on, 2.0 off) is one ring, as a person counts it. Bursts separated by less than
the plan's gap inside a ring (plus a margin for a detector that drops a frame or two)
are merged; a ring is counted on the first ringing frame after a longer quiet. When no
ring comes for longer than the plan's longest quiet plus a margin, the caller has given
up. The simulated exchange and the real FXO ring detector feed the same booleans.
"""

from linebox import FRAME, RATE
from linebox.dsp.plans import get_plan

# A quiet this much longer than the plan's gap inside a ring still joins two bursts:
# ring detectors integrate pulses per frame and can miss a frame or two.
MERGE_MARGIN = 0.2
# Exchanges stretch the long quiet by up to ~20 %; a second on top covers detector lag.
STOP_MARGIN_MIN = 1.0
STOP_MARGIN_FRACTION = 0.25


class RingCounter:
    """Counts rings of a line from its per-frame ``ringing`` signal.

    ``feed`` returns the ring number at the start of each ring. ``in_gap`` is True in
    the quiet after a burst (where caller ID comes); ``stopped`` turns True once the
    quiet lasts longer than any quiet of the cadence: the caller has given up. A ring
    after ``stopped`` starts a new count at 1; ``reset`` starts over at once.
    """

    def __init__(self, plan: str, frame_seconds: float = FRAME / RATE) -> None:
        cadence = get_plan(plan).ring_cadence
        offs = cadence[1::2]
        inside = max(offs[:-1], default=0.0)    # the quiet inside one ring (UK: 0.2 s)
        longest = max(offs)
        margin = max(STOP_MARGIN_MIN, STOP_MARGIN_FRACTION * longest)
        self.plan = plan
        # Quiet frames after which the next burst is a new ring, not part of this one.
        self.merge_frames = max(1, round((inside + MERGE_MARGIN) / frame_seconds))
        # Quiet frames after which the caller has given up.
        self.stop_frames = round((longest + margin) / frame_seconds)
        self.reset()

    def reset(self) -> None:
        """Forget every ring: the next ringing frame is ring 1."""
        self._count = 0
        self._ringing = False
        self._quiet = 0           # frames since the last ringing frame

    @property
    def count(self) -> int:
        """Rings counted so far."""
        return self._count

    @property
    def ringing(self) -> bool:
        """The last frame fed was ringing."""
        return self._ringing

    @property
    def in_gap(self) -> bool:
        """A ring was counted, it is quiet now, and the caller has not given up."""
        return self._count > 0 and not self._ringing and not self.stopped

    @property
    def stopped(self) -> bool:
        """Rings came, then none for longer than the cadence allows: the caller gave up."""
        return self._count > 0 and self._quiet > self.stop_frames

    def feed(self, ringing: bool) -> int | None:
        """One frame's ring signal; returns the ring number when a ring starts, else None."""
        if not ringing:
            self._ringing = False
            if self._count:
                self._quiet += 1
            return None
        if self.stopped:
            self.reset()
        new = self._count == 0 or self._quiet >= self.merge_frames
        self._ringing = True
        self._quiet = 0
        if new:
            self._count += 1
            return self._count
        return None
