"""A small synchronous event bus: the store, the call flows and the drivers publish facts,
the transcript, LEDs, MQTT and e-mail subscribe to them.

An event is a dict with at least ``event`` (its kind). Call-flow events also carry ``t``
(seconds on the line's clock) and ``line``. Kinds starting with ``_`` are internal
(for example ``_prompt_end``) and are not printed in transcripts.

Subscribers are isolated from each other and from the publisher: one that raises is
logged (with its exception) and the others still get the event, so a broken reporter
can neither abort the store operation that published nor silence the LEDs.
"""

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class Bus:
    """Delivers every published event to every subscriber, in order, synchronously."""

    def __init__(self) -> None:
        self._subs: list[Callable[[dict], None]] = []

    def subscribe(self, fn: Callable[[dict], None]) -> Callable[[dict], None]:
        self._subs.append(fn)
        return fn

    def unsubscribe(self, fn: Callable[[dict], None]) -> None:
        self._subs.remove(fn)

    def publish(self, event: dict) -> None:
        for fn in list(self._subs):
            try:
                fn(event)
            except Exception:       # noqa: BLE001 - one subscriber must not stop the rest
                log.exception("subscriber %s failed on a %s event",
                              getattr(fn, "__qualname__", repr(fn)), event.get("event"))
