"""Time in Linebox, in one place.

**Line time.** A line is clocked by its audio: every tick is one frame of ``FRAME``
samples at ``RATE`` Hz, and every call-flow timeout counts those samples, so a simulated
line runs as fast as the CPU allows and a real one at the sound card's pace, with the
same behaviour. ``seconds_of``/``samples_in``/``frames_in`` convert.

**Driver clocks.** Where a driver must wait on its own (an FXO line without a sound
card, a modem on-hook, a SIP call's RTP), it takes a clock object with ``now()`` and
``sleep(seconds)``:

- ``WallClock``: monotonic seconds; ``sleep`` really waits (the daemon);
- ``ManualClock``: seconds that pass only when told (``sleep`` and ``advance`` move
  it, nothing waits): tests, and the virtual clock of ``linebox sim``. It is also
  callable (``clock()`` is ``clock.now()``), for the parts that take a plain
  ``Callable[[], float]`` (GPIO pins, lamps, ``FxoLine``).
"""

import time

from linebox import FRAME, RATE

FRAME_SECONDS = FRAME / RATE        # 20 ms: one tick of every line


def seconds_of(samples: int) -> float:
    """Line time of ``samples`` samples."""
    return samples / RATE


def samples_in(secs: float) -> int:
    """The number of samples in ``secs`` seconds of line time (rounded)."""
    return round(secs * RATE)


def frames_in(secs: float) -> int:
    """The number of frames (ticks) in ``secs`` seconds of line time (rounded): how
    the call flows count their timeouts."""
    return int(round(secs * RATE / FRAME))


class WallClock:
    """Monotonic seconds; ``sleep`` really waits. Used as the class itself."""

    now = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)


class ManualClock:
    """A clock that moves only when told: ``now()`` (or ``clock()``) reads it,
    ``advance(dt)`` and ``sleep(dt)`` move it. Simulated pins, lamps and lines share one
    in tests; ``linebox sim`` runs the modem driver on one."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt

    def sleep(self, dt: float) -> None:
        self.t += max(0.0, dt)
