"""The line interface the call flows use, whatever the hardware (FXO, modem, simulator).

A line is clocked by its audio: every ``tick`` plays one 20 ms frame and returns the
20 ms that were heard, with the line signals seen during it. Every call-flow timeout
counts ticks, so a simulated line runs as fast as the CPU allows and a real one at the
sound card's pace, with the same behaviour.
"""

from abc import ABC, abstractmethod
from array import array
from dataclasses import dataclass

from linebox import FRAME

SILENT_FRAME = array("h", bytes(2 * FRAME))


@dataclass(slots=True)
class Tick:
    """What one 20 ms frame brought from the line."""

    audio: array                 # 160 signed 16-bit samples heard on the line
    ringing: bool = False        # ring voltage present during this frame
    loop: bool | None = None     # loop current present (None: the hardware cannot tell)
    events: tuple = ()           # driver facts: ("ring",), ("dtmf", "5"), ("callerid", {...}), ("fault", "why")


class Line(ABC):
    """One analog line. ``tick`` is called once per 20 ms frame, on- or off-hook."""

    def __init__(self, line_id: int, plan: str = "us") -> None:
        self.id = line_id
        self.plan = plan
        self.off_hook = False

    @abstractmethod
    def tick(self, out: array | None = None) -> Tick:
        """Send ``out`` (160 samples, None for silence) and return the next 20 ms heard."""

    def set_hook(self, off_hook: bool) -> None:
        """Go off-hook (answer) or back on-hook (hang up)."""
        self.off_hook = off_hook

    def close(self) -> None:  # noqa: B027 - most lines have nothing to release
        """Release the hardware."""
