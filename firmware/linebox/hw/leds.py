"""Message-waiting lamps: one per box, following the store's counts.

``off`` no new messages, ``blink`` new messages, ``fast`` box full. The pattern logic
lives here; a backend (GPIO on the Pi: ``hw/gpio_leds.py``) turns a pattern into pin
changes; without one the lamps exist only as ``led`` events on the bus (the simulator).
"""

PATTERNS = ("off", "on", "blink", "fast")


def pattern_for(counts: dict) -> str:
    if counts.get("full"):
        return "fast"
    if counts.get("new"):
        return "blink"
    return "off"


class MessageLeds:
    """Keeps each box's lamp in step with the store; publishes ``led`` events on change."""

    def __init__(self, bus, store, boxes: dict, backend=None) -> None:
        self.bus = bus
        self.store = store
        self.boxes = boxes
        self.backend = backend
        self.patterns: dict[str, str] = {}
        self.override: str | None = None
        bus.subscribe(self._on_event)

    def sync(self) -> None:
        """Set every lamp from the store (at start; no events)."""
        for number in self.boxes:
            self.patterns[number] = pattern_for(self.store.counts(number))
            self._drive(number)

    def _on_event(self, ev: dict) -> None:
        if ev.get("event") != "box_changed":
            return
        number = ev["box"]
        if number not in self.boxes:
            return
        pattern = pattern_for(ev["counts"])
        if number not in self.patterns:
            # The state at start-up: set the lamp, no change to report.
            self.patterns[number] = pattern
            self._drive(number)
        elif self.patterns[number] != pattern:
            self.patterns[number] = pattern
            self._drive(number)
            self.bus.publish({"event": "led", "box": number, "pattern": pattern,
                              **({"line": ev["line"]} if "line" in ev else {})})

    def _drive(self, number: str) -> None:
        pin = getattr(self.boxes[number], "led_pin", None)
        if self.backend is not None and pin is not None:
            self.backend.show(pin, self.override or self.patterns[number])

    def test_pattern(self, pattern: str | None) -> None:
        """Show ``pattern`` on every lamp (LED test), or go back to the real state."""
        self.override = pattern
        for number in self.boxes:
            self._drive(number)
