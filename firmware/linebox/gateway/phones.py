"""The phones as an analog call's ring group sees them: ``ring(...)`` starts a
`RingAttempt` that ends answered (with a `Bridge`), failed or cancelled.

Two implementations: the SIP server's (INVITE forking to every registered contact,
`linebox.sip.uac`) and the simulator's scenario phones (`linebox.sim.phones`). The
attempt is shared by two threads (the analog line's and the phones'), so every change
of state goes through its lock, and exactly one of "a phone answered" and "the line
gave up on the phones" (the voicemail route answers, the caller hung up) wins.
"""

import threading
from abc import ABC, abstractmethod

from linebox.caller import CallerId
from linebox.gateway.bridge import Bridge

RINGING, ANSWERED, FAILED, CANCELLED = "ringing", "answered", "failed", "cancelled"


class RingAttempt:
    """Phones ringing for one analog call. The phones' side calls `answered` (the first
    wins a `Bridge`; later ones get None and must hang up) and `failed`; the line's side
    calls `cancel` and `callerid`, and reads `state`, `bridge`, `extension`."""

    def __init__(self, line_id: int | None, extensions: tuple[str, ...], callerid: CallerId | None) -> None:
        self.line_id = line_id
        self.extensions = tuple(extensions)
        self.caller = callerid or CallerId()
        self.state = RINGING
        self.bridge: Bridge | None = None
        self.extension: str | None = None        # who answered
        self.cancel_reason: str | None = None
        self.transfer_to: tuple[str, str] | None = None   # ("extension" | "box", number)
        self._lock = threading.Lock()

    @property
    def ringing(self) -> bool:
        return self.state == RINGING

    # -- the phones' side -------------------------------------------------------------
    def answered(self, extension: str) -> Bridge | None:
        """A phone answered: the bridge to talk over, or None when the call went
        elsewhere meanwhile (another phone, the voicemail route, the caller hung up)."""
        with self._lock:
            if self.state != RINGING:
                return None
            self.state = ANSWERED
            self.extension = extension
            self.bridge = Bridge()
            return self.bridge

    def failed(self, why: str) -> None:
        """Every phone refused or is unreachable: the line goes on as without phones."""
        with self._lock:
            if self.state == RINGING:
                self.state = FAILED
                self.cancel_reason = why

    def transfer(self, kind: str, number: str) -> None:
        """The answering phone blind-transferred the call (REFER): the line leg goes
        there once the bridge closes."""
        self.transfer_to = (kind, number)

    # -- the line's side ---------------------------------------------------------------
    def cancel(self, reason: str) -> bool:
        """The line is done with the phones (voicemail answers, the caller hung up):
        True if that stopped them, False if a phone had answered already."""
        with self._lock:
            if self.state == ANSWERED:
                return False
            was_ringing = self.state == RINGING
            self.state = CANCELLED
            self.cancel_reason = reason
        if was_ringing:
            self._stop_ringing(reason)
        return True

    def callerid(self, callerid: CallerId) -> None:
        """The caller ID arrived (between the first two rings): show it on the phones."""
        self.caller = callerid
        if self.state == RINGING:
            self._show_caller(callerid)

    # -- for implementations -----------------------------------------------------------
    def _stop_ringing(self, reason: str) -> None:  # noqa: B027 - optional
        """Stop every phone still ringing (CANCEL)."""

    def _show_caller(self, callerid: CallerId) -> None:  # noqa: B027 - optional
        """Tell the ringing phones who calls (UPDATE)."""


class Phones(ABC):
    """Whatever can ring extensions for an analog call."""

    # True: every line's call rings these phones, ``ring`` or not (trunk mode: the PBX).
    takes_every_line = False

    @abstractmethod
    def ring(self, line_id: int | None, extensions: tuple[str, ...],
             callerid: CallerId | None) -> RingAttempt | None:
        """Ring every reachable phone of ``extensions``; None when none is reachable
        (no contact registered): the line then goes on as if it had no ring group."""

    def caller_display(self, line_id: int | None, callerid: CallerId | None) -> tuple[str, str]:
        """(display name, user part) for a ringing phone: the caller's name and number
        when known, else the line ("Line 1")."""
        cid = callerid or CallerId()
        line = f"Line {line_id}" if line_id is not None else "Linebox"
        number = cid.number or (f"line{line_id}" if line_id is not None else "linebox")
        name = cid.name or (cid.number and line) or line
        return name, number
