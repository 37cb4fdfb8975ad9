"""The line interface the call flows use, whatever the hardware (FXO, modem, simulator).

A line is clocked by its audio: every ``tick`` plays one 20 ms frame and returns the
20 ms that were heard, with the line signals seen during it. Every call-flow timeout
counts ticks, so a simulated line runs as fast as the CPU allows and a real one at the
sound card's pace, with the same behaviour.

``tests/test_line_contract.py`` runs one contract against every backend (the simulated
exchange, FXO, the modem over a pty, ``modem-sim``, ``SipLine``): a new backend joins
that list.
"""

from abc import ABC, abstractmethod
from array import array
from dataclasses import dataclass

from linebox import FRAME
from linebox.caller import CallerId

SILENT_FRAME = array("h", bytes(2 * FRAME))


# -- what a driver reports beside the audio (Tick.events) ------------------------------
@dataclass(frozen=True, slots=True)
class RingSeen:
    """The driver saw a ring burst begin (a modem's ``RING``)."""


@dataclass(frozen=True, slots=True)
class KeyPressed:
    """A key the driver decoded itself (a modem's ``DLE`` digit, an RTP telephone-event).

    ``t`` is the line time (seconds) where the key began when the driver knows it, else
    None (taken as the frame it arrived in)."""

    digit: str
    t: float | None = None


@dataclass(frozen=True, slots=True)
class HungUp:
    """The driver says the far end is gone: ``cause`` is busy, reorder, dial, loop, bye...

    ``t`` is the line time where the caller's audio ended, if the driver knows it."""

    cause: str
    t: float | None = None


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault began. ``key`` names it (``audio``, ``line``, ``modem`` ...): several can
    be active at once, and each clears on its own."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class FaultCleared:
    """The fault named ``key`` is over."""

    key: str


@dataclass(frozen=True, slots=True)
class CallerIdReceived:
    """Caller ID decoded by the driver (a modem's ``NMBR``/``NAME``/``MESG`` lines)."""

    callerid: CallerId


@dataclass(frozen=True, slots=True)
class LineReversal:
    """The line's polarity reversed while on-hook. A BT (SIN 227) or ETSI EN 300 659-1
    exchange does this before it sends caller ID ahead of the first ring: the engine
    listens from here."""


LineEvent = RingSeen | KeyPressed | HungUp | Fault | FaultCleared | CallerIdReceived | LineReversal


@dataclass(slots=True)
class Tick:
    """What one 20 ms frame brought from the line."""

    audio: array                 # 160 signed 16-bit samples heard on the line
    ringing: bool = False        # ring voltage present during this frame
    loop: bool | None = None     # loop current present (None: the hardware cannot tell)
    events: tuple[LineEvent, ...] = ()   # what the driver itself reported


class Line(ABC):
    """One line (analog, or a SIP call). ``tick`` is called once per 20 ms frame, on- or
    off-hook.

    What a backend can report itself is declared here, so the engine never guesses:"""

    #: the driver decodes keys itself (``KeyPressed``): the listener's own key
    #: detection is then not used, or every key would count twice.
    reports_dtmf: bool = False
    #: the driver reports the far end hanging up (``HungUp``); the listener still listens.
    reports_hangup: bool = False
    #: audio flows both ways at once (a half-duplex modem either plays or records).
    full_duplex: bool = True

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
