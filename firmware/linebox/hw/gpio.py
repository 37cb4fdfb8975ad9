"""GPIO pins behind one small interface, gpiozero style.

``Pins`` is what drivers use (the FXO line, the lamps). ``RpiGpioPins`` drives a real
Raspberry Pi through the RPi.GPIO API (rpi-lgpio provides it on a Pi 5), with BCM
numbers. ``SimPins`` is the simulated backend: it records every output change with a
time from an injectable clock, and lets tests drive inputs (``drive_high``/``drive_low``),
firing edge callbacks as the real pins would.

``default_pins()`` picks the backend: ``LINEBOX_GPIO=sim`` forces the simulation,
anything else the Pi (which fails with one line off a Pi).
"""

import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from linebox.errors import LineboxError

PULLS = ("up", "down", None)

# An edge callback gets (pin, level) when an input changes; it may run in another thread.
EdgeCallback = Callable[[int, bool], None]


class Pins(ABC):
    """A set of GPIO pins, numbered as BCM GPIO numbers."""

    @abstractmethod
    def setup_output(self, pin: int, initial: bool = False) -> None:
        """Make ``pin`` an output, driven to ``initial`` at once."""

    @abstractmethod
    def setup_input(self, pin: int, pull: str | None = None) -> None:
        """Make ``pin`` an input with the internal pull ``up``, ``down`` or none."""

    @abstractmethod
    def write(self, pin: int, level: bool) -> None:
        """Drive an output high (True) or low (False)."""

    @abstractmethod
    def read(self, pin: int) -> bool:
        """The level of a pin (an output reads back what it drives)."""

    def add_edge_callback(self, pin: int, callback: EdgeCallback) -> bool:
        """Call ``callback(pin, level)`` on every change of input ``pin``. Returns False
        when this backend cannot (the caller then samples the pin itself)."""
        return False

    def remove_edge_callback(self, pin: int) -> None:
        """Stop the callbacks of ``pin``."""
        return None  # optional: nothing to do by default

    def release(self, pin: int) -> None:
        """Give ``pin`` back: it becomes an input again (outputs stop driving)."""
        return None  # optional: nothing to do by default

    def close(self) -> None:
        """Release every pin."""
        return None  # optional: nothing to do by default


def _check_pull(pull: str | None) -> None:
    if pull not in PULLS:
        raise ValueError(f"pull must be 'up', 'down' or None, not {pull!r}")


class RpiGpioPins(Pins):
    """The Raspberry Pi's pins through the RPi.GPIO API, BCM numbering."""

    def __init__(self) -> None:
        try:
            # Only here: off a Pi, importing RPi.GPIO raises (RuntimeError or ImportError).
            import RPi.GPIO as GPIO  # noqa: N814
        except (ImportError, RuntimeError):
            raise LineboxError("GPIO: RPi.GPIO is not available (not a Raspberry Pi?)") from None
        self.GPIO = GPIO
        GPIO.setwarnings(False)
        GPIO.setmode(GPIO.BCM)
        self._used: set[int] = set()

    def _do(self, what: str, pin: int, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except (RuntimeError, ValueError) as e:
            raise LineboxError(f"GPIO {pin}: {what}: {e}") from None

    def setup_output(self, pin: int, initial: bool = False) -> None:
        G = self.GPIO
        self._do("setup as output", pin, G.setup, pin, G.OUT, initial=G.HIGH if initial else G.LOW)
        self._used.add(pin)

    def setup_input(self, pin: int, pull: str | None = None) -> None:
        _check_pull(pull)
        G = self.GPIO
        pud = {"up": G.PUD_UP, "down": G.PUD_DOWN, None: G.PUD_OFF}[pull]
        self._do("setup as input", pin, G.setup, pin, G.IN, pull_up_down=pud)
        self._used.add(pin)

    def write(self, pin: int, level: bool) -> None:
        G = self.GPIO
        self._do("write", pin, G.output, pin, G.HIGH if level else G.LOW)

    def read(self, pin: int) -> bool:
        return bool(self._do("read", pin, self.GPIO.input, pin))

    def add_edge_callback(self, pin: int, callback: EdgeCallback) -> bool:
        G = self.GPIO

        def on_edge(channel: int) -> None:
            callback(channel, bool(G.input(channel)))

        self._do("edge detection", pin, G.add_event_detect, pin, G.BOTH, callback=on_edge)
        return True

    def remove_edge_callback(self, pin: int) -> None:
        try:
            self.GPIO.remove_event_detect(pin)
        except (RuntimeError, ValueError):
            pass

    def release(self, pin: int) -> None:
        if pin in self._used:
            self.remove_edge_callback(pin)
            self.GPIO.cleanup(pin)
            self._used.discard(pin)

    def close(self) -> None:
        for pin in sorted(self._used):
            self.release(pin)


class SimPins(Pins):
    """Simulated pins: every output change is recorded as ``(time, pin, level)``.

    Inputs start at the level their pull gives them (up: high, otherwise low) and change
    when a test calls ``drive_high``/``drive_low``; edge callbacks run at once, in the
    caller's thread, stamped by ``clock``.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self.modes: dict[int, str] = {}          # pin -> "in" | "out"
        self.levels: dict[int, bool] = {}
        self.history: list[tuple[float, int, bool]] = []
        self.callbacks: dict[int, EdgeCallback] = {}
        self.released: list[int] = []
        self.closed = False

    # -- the Pins interface -------------------------------------------------
    def setup_output(self, pin: int, initial: bool = False) -> None:
        with self._lock:
            self._check_open()
            self.modes[pin] = "out"
            self._set(pin, bool(initial), record=True)

    def setup_input(self, pin: int, pull: str | None = None) -> None:
        _check_pull(pull)
        with self._lock:
            self._check_open()
            self.modes[pin] = "in"
            self.levels.setdefault(pin, pull == "up")

    def write(self, pin: int, level: bool) -> None:
        with self._lock:
            self._check_open()
            if self.modes.get(pin) != "out":
                raise ValueError(f"GPIO {pin} is not set up as an output")
            if self.levels[pin] != bool(level):
                self._set(pin, bool(level), record=True)

    def read(self, pin: int) -> bool:
        with self._lock:
            self._check_open()
            if pin not in self.modes:
                raise ValueError(f"GPIO {pin} is not set up")
            return self.levels[pin]

    def add_edge_callback(self, pin: int, callback: EdgeCallback) -> bool:
        with self._lock:
            if self.modes.get(pin) != "in":
                raise ValueError(f"GPIO {pin} is not set up as an input")
            self.callbacks[pin] = callback
        return True

    def remove_edge_callback(self, pin: int) -> None:
        with self._lock:
            self.callbacks.pop(pin, None)

    def release(self, pin: int) -> None:
        with self._lock:
            self.callbacks.pop(pin, None)
            if self.modes.pop(pin, None) is not None:
                self.released.append(pin)

    def close(self) -> None:
        with self._lock:
            for pin in list(self.modes):
                self.release(pin)
            self.closed = True

    # -- driving inputs -----------------------------------------------------
    def drive(self, pin: int, level: bool) -> None:
        """Put ``level`` on input ``pin`` (as the outside world would)."""
        with self._lock:
            if self.modes.get(pin) != "in":
                raise ValueError(f"GPIO {pin} is not set up as an input")
            if self.levels[pin] == bool(level):
                return
            self.levels[pin] = bool(level)
            callback = self.callbacks.get(pin)
        if callback is not None:
            callback(pin, bool(level))

    def drive_high(self, pin: int) -> None:
        self.drive(pin, True)

    def drive_low(self, pin: int) -> None:
        self.drive(pin, False)

    # -- what happened ------------------------------------------------------
    def changes(self, pin: int) -> list[tuple[float, bool]]:
        """``(time, level)`` of every recorded change of output ``pin``, the setup first."""
        return [(t, level) for t, p, level in self.history if p == pin]

    def states(self, pin: int) -> list[bool]:
        """The levels output ``pin`` went through, the setup level first."""
        return [level for _, level in self.changes(pin)]

    def assert_states(self, pin: int, expected: list[bool]) -> None:
        actual = self.states(pin)
        assert actual == list(expected), f"GPIO {pin} states {actual}, expected {list(expected)}"

    def assert_states_and_times(self, pin: int, expected: list[tuple[float, bool]],
                                tolerance: float = 1e-9) -> None:
        """Output ``pin`` changed to exactly these levels at these times (± ``tolerance``)."""
        actual = self.changes(pin)
        ok = len(actual) == len(expected) and all(
            la == le and abs(ta - te) <= tolerance for (ta, la), (te, le) in zip(actual, expected, strict=True))
        assert ok, f"GPIO {pin} changes {actual}, expected {list(expected)}"

    def clear_history(self) -> None:
        with self._lock:
            self.history.clear()

    # -- inside -------------------------------------------------------------
    def _set(self, pin: int, level: bool, record: bool) -> None:
        self.levels[pin] = level
        if record:
            self.history.append((self.clock(), pin, level))

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("the pins are closed")


def default_pins(clock: Callable[[], float] = time.monotonic) -> Pins:
    """The pins of this machine: the Pi's, or simulated ones when ``LINEBOX_GPIO=sim``."""
    choice = os.environ.get("LINEBOX_GPIO", "").strip().lower()
    if choice == "sim":
        return SimPins(clock)
    if choice not in ("", "rpi"):
        raise LineboxError(f"GPIO: LINEBOX_GPIO={choice!r}: must be 'sim' or 'rpi'")
    return RpiGpioPins()
