"""What the parts of the store share: message states, its errors, the read-only guard."""

import functools

from linebox.errors import LineboxError

LIVE = ("new", "heard", "saved")          # counted against max_messages
STATES = (*LIVE, "trash")
RECORDING = "recording"                   # internal: a message still being recorded
DAY = 86400.0


class StoreError(LineboxError):
    """A store operation that cannot be done; the message says why."""


class StoreFull(StoreError):
    """The box already holds max_messages messages."""


class NoSpace(StoreFull):
    """The data folder's disk is nearly full (below the reserve) or read-only."""


class NoSuchMessage(StoreError):
    """No message with that id."""


class BadTransition(StoreError):
    """A state change the message's current state does not allow."""


def is_id(s) -> bool:
    """A message id (or a number in a file name): 1 to 12 ASCII digits. ``str.isdigit``
    alone takes "٠٠٠٠٠١" (which int() reads as 1) and "²" (which int() refuses)."""
    return isinstance(s, str) and 0 < len(s) <= 12 and s.isascii() and s.isdigit()


def writes(method):
    """Mark a method that changes the store: refused on a store opened read-only."""
    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        if self._read_only:
            raise StoreError(f"store {self.data_dir} is open read-only")
        return method(self, *args, **kwargs)
    return checked
