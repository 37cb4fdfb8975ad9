"""Lamps on GPIO: the LED backend ``MessageLeds`` drives, and the device's status LED.

A pattern is a square wave: ``off``, ``on``, ``blink`` (1 Hz) or ``fast`` (4 Hz), each
starting lit when shown. ``tick(now)`` sets every lamp to where its pattern is at ``now``;
``start()`` runs a small thread that calls it at each change (the tests call ``tick``
with their own clock instead).
"""

import threading
import time
from collections.abc import Callable

from linebox.hw.gpio import Pins
from linebox.hw.leds import PATTERNS

# Full period of each blinking pattern in seconds; lit for the first half.
PERIODS = {"blink": 1.0, "fast": 0.25}
# Float slack at the exact moment of a change (a tick due at 0.5 s must see the change).
EPS = 1e-9
# The thread wakes at least this often (a lamp shown from another thread starts at once).
MAX_WAIT = 0.5


class GpioLedBackend:
    """LEDs on GPIO pins (lit when the pin is high, unless ``active_high`` is False)."""

    def __init__(self, pins: Pins, clock: Callable[[], float] = time.monotonic,
                 active_high: bool = True) -> None:
        self.pins = pins
        self.clock = clock
        self.active_high = active_high
        self._lock = threading.Lock()
        self._shown: dict[int, tuple[str, float]] = {}    # pin -> (pattern, since)
        self._lit: dict[int, bool] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def show(self, pin: int, pattern: str) -> None:
        """Show ``pattern`` on the LED at ``pin`` from now on."""
        if pattern not in PATTERNS:
            raise ValueError(f"unknown LED pattern {pattern!r} (one of {', '.join(PATTERNS)})")
        now = self.clock()
        with self._lock:
            if pin not in self._lit:
                self.pins.setup_output(pin, not self.active_high)
                self._lit[pin] = False
            if self._shown.get(pin, ("",))[0] != pattern:
                self._shown[pin] = (pattern, now)
            self._update(pin, now)
        self._wake.set()

    def pattern(self, pin: int) -> str:
        return self._shown.get(pin, ("off",))[0]

    def tick(self, now: float | None = None) -> float:
        """Bring every LED to its pattern at ``now``; returns when the next change is due
        (inf when nothing blinks)."""
        now = self.clock() if now is None else now
        with self._lock:
            for pin in self._shown:
                self._update(pin, now)
            return min((self._next_change(pin, now) for pin in self._shown), default=float("inf"))

    def start(self) -> None:
        """Blink from a background thread until ``close``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="leds", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop blinking and turn every LED off."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        with self._lock:
            for pin in self._lit:
                self._set(pin, False)
                self.pins.release(pin)
            self._lit.clear()
            self._shown.clear()

    # -- inside -------------------------------------------------------------
    def _lit_at(self, pin: int, now: float) -> bool:
        pattern, since = self._shown[pin]
        if pattern in PERIODS:
            period = PERIODS[pattern]
            return (now - since + EPS) % period < period / 2
        return pattern == "on"

    def _next_change(self, pin: int, now: float) -> float:
        pattern, since = self._shown[pin]
        if pattern not in PERIODS:
            return float("inf")
        half = PERIODS[pattern] / 2
        return since + (int((now - since + EPS) // half) + 1) * half

    def _update(self, pin: int, now: float) -> None:
        self._set(pin, self._lit_at(pin, now))

    def _set(self, pin: int, lit: bool) -> None:
        if self._lit.get(pin) != lit:
            self._lit[pin] = lit
            self.pins.write(pin, lit == self.active_high)

    def _run(self) -> None:
        while not self._stop.is_set():
            due = self.tick()
            self._wake.clear()
            self._wake.wait(min(MAX_WAIT, max(0.0, due - self.clock())))


class StatusLed:
    """The device's status lamp: ``starting`` blinks, ``ready`` is lit, ``fault`` flashes fast."""

    STATES = {"starting": "blink", "ready": "on", "fault": "fast", "off": "off"}

    def __init__(self, backend: GpioLedBackend, pin: int) -> None:
        self.backend = backend
        self.pin = pin
        self.state = "off"

    def set(self, state: str) -> None:
        if state not in self.STATES:
            raise ValueError(f"unknown status {state!r} (one of {', '.join(self.STATES)})")
        self.state = state
        self.backend.show(self.pin, self.STATES[state])
