"""Live updates for the pages: bus events turned into server-sent events.

The bus publishes from the line loops, under the daemon's lock, in the middle of a
frame: here an event is only copied into each listener's bounded queue (never blocking;
a listener too slow to keep up loses events and the page reloads its data when it
notices the gap). A stream ends after ``STREAM_SECONDS`` so that a waitress worker is
not held forever; EventSource reconnects by itself.
"""

import json
import queue
import threading
import time

from linebox import events as ev_

# What the pages want to know about, and who may see it.
LINE_EVENTS = (ev_.LINE_STATE, "ring", "callerid", "answer", "onhook", "line_fault",
               "line_fault_cleared", "missed_call")
BOX_EVENTS = ("box_changed", "message_state", "message_saved", "message_retracted",
              "message_transcribed")
QUEUE_SIZE = 200
STREAM_SECONDS = 25.0
KEEPALIVE = 10.0


class Live:
    """Fans bus events out to the open event streams."""

    def __init__(self, bus, line_routes) -> None:
        self._listeners: set[queue.Queue] = set()
        self._lock = threading.Lock()
        self.line_routes = line_routes       # callable: line id -> route
        bus.subscribe(self._on_event)

    def _on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind in LINE_EVENTS:
            item = {"kind": "line", "line": ev.get("line"), "event": kind,
                    "state": ev.get("state"), "number": ev.get("number"), "name": ev.get("name"),
                    "reason": ev.get("reason")}
        elif kind in BOX_EVENTS:
            item = {"kind": "box", "box": ev.get("box"), "event": kind, "id": ev.get("id"),
                    "counts": ev.get("counts")}
        elif kind == ev_.CALL_LOGGED:
            call = ev["call"]
            item = {"kind": "call", "box": call.get("box"), "line": call.get("line")}
        else:
            return
        with self._lock:
            listeners = list(self._listeners)
        for q in listeners:
            try:
                q.put_nowait(item)
            except queue.Full:
                pass

    def visible(self, item: dict, session) -> bool:
        if session.admin:
            return True
        if item.get("box") is not None:
            return item["box"] == session.box
        return self.line_routes(item.get("line")) == session.box

    def stream(self, session, seconds: float = STREAM_SECONDS):
        """The text/event-stream body for one session."""
        q: queue.Queue = queue.Queue(QUEUE_SIZE)
        with self._lock:
            self._listeners.add(q)
        try:
            yield "retry: 1000\n: hello\n\n"
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                try:
                    item = q.get(timeout=min(KEEPALIVE, left))
                except queue.Empty:
                    yield ": keepalive\n\n"
                    continue
                if self.visible(item, session):
                    yield f"event: {item['kind']}\ndata: {json.dumps(item)}\n\n"
        finally:
            with self._lock:
                self._listeners.discard(q)

    @property
    def listeners(self) -> int:
        return len(self._listeners)
