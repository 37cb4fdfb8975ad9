"""Two-way audio between two legs that run on different clocks.

An analog line is paced by its sound card, a SIP call by its RTP clock; each leg runs
its own call flow on its own thread, and the two meet here. Each side has a
`BridgeEnd`: it ``push``es the 20 ms it heard (for the other side) and ``pull``s what it
should play now. Between them a small FIFO absorbs the difference of the two clocks:
an empty FIFO plays silence (the other side is late), a backlog beyond
``MAX_BACKLOG`` frames drops the oldest at once, and a backlog that stood above what
the FIFO keeps through a second is standing latency: the excess is dropped (the other
side's clock is faster). It keeps one frame; an underrun once the other side has begun
(a push that came late: the two legs' slots are close and their threads jitter) makes
it keep one more, so that the frame the late push left standing is no reason to drop
one a second later, and the next late push no new underrun; after ``KEEP_DECAY_PULLS``
pulls without an underrun it keeps one less again. Drops and underruns are counted.

A `BridgedSipLine` leg skips the FIFO toward the line: the line's end pulls the phone's
frames from that leg's jitter buffer (``feeder``), as it plays them.

The line→phone direction passes an echo suppressor (`linebox.dsp.echo`) whose far-end
reference is what the line end pulled (played on the line).

`bridged(call, end)` is the call flow both legs run: "a SIP call is another Line under
the same call flows".
"""

import math
import operator
import threading
from array import array
from collections import deque

from linebox.calls.engine import Call, Flow, Hangup
from linebox.dsp.echo import EchoSuppressor
from linebox.dsp.levels import frame_energy
from linebox.hw.line import SILENT_FRAME

_mul = operator.mul

MAX_BACKLOG = 3            # frames waiting beyond this are dropped, oldest first
TRIM_WINDOW_FRAMES = 50    # a backlog above what it keeps through this many pulls: drop it
KEEP_DECAY_PULLS = 250     # 5 s without an underrun: keep one frame less (down to one)
# Nobody on either side says anything for this long: the analog caller is gone without
# a tone (some exchanges just go quiet). ASSUMED: long enough for a pause in a call.
SILENCE_END_SECONDS = 30.0
_VOICE_GATE = frame_energy(-45.0)     # a phone frame louder than this is someone talking


class BridgeEnd:
    """One side of a `Bridge`. ``push(frame)`` gives the other side what this side
    heard; ``pull()`` returns what this side plays now (silence when nothing waits).
    Both are thread-safe: each side calls them from its own thread."""

    def __init__(self, bridge: "Bridge", name: str) -> None:
        self.bridge = bridge
        self.name = name
        self.other: BridgeEnd | None = None
        self._queue: deque[array] = deque()     # frames waiting for this side to play
        self._lock = threading.Lock()
        self._min_backlog = math.inf
        self._window = 0
        self.keep = 1          # frames that may stand at a pull (the one played included)
        self._steady = 0
        self._starved = False
        self.pushed = 0        # frames this side gave
        self.pulled = 0        # frames this side took (silence included)
        self.underruns = 0     # pulls that found nothing (silence played)
        self.drops = 0         # frames meant for this side that were dropped
        self.shape = None      # callable(frame) -> frame, on what this side pushes
        self.tap = None        # callable(frame), on what this side pulls
        # callable() -> frame or None: the other side pulls this side's audio from it when
        # it plays it (a `BridgedSipLine`'s jitter buffer), instead of this FIFO
        self.feeder = None

    # -- the two calls each side makes once a frame -------------------------------------
    def push(self, frame: array) -> None:
        """The 160 samples this side heard in its last slot, for the other side."""
        if self.bridge.closed:
            return
        self.pushed += 1
        if self.shape is not None:
            frame = self.shape(frame)
        self.other._put(array("h", frame))

    def pull(self) -> array:
        """What this side plays in its next slot."""
        feeder = self.other.feeder
        if feeder is not None and not self.bridge.closed:
            with self._lock:
                self.pulled += 1
            frame = feeder()
            if frame is None:
                with self._lock:
                    self.underruns += 1
                frame = SILENT_FRAME
            else:
                self.other.pushed += 1
                if self.other.shape is not None:
                    frame = self.other.shape(frame)
        else:
            frame = self._take()
        if self.tap is not None:
            self.tap(frame)
        return frame

    # -- ending ---------------------------------------------------------------------------
    def close(self, cause: str) -> None:
        """This side is gone (its caller hung up, a transfer took it away...)."""
        self.bridge.close(cause, self)

    @property
    def closed(self) -> bool:
        return self.bridge.closed

    @property
    def cause(self) -> str | None:
        """Why the bridge closed (the closing side's cause), None while open."""
        return self.bridge.cause

    @property
    def closed_by_other(self) -> bool:
        return self.bridge.closed and self.bridge.closed_by is not self

    @property
    def backlog(self) -> int:
        return len(self._queue)

    # -- the FIFO -------------------------------------------------------------------------
    def _put(self, frame: array) -> None:
        with self._lock:
            q = self._queue
            q.append(frame)
            while len(q) > MAX_BACKLOG:
                q.popleft()
                self.drops += 1

    def _take(self) -> array:
        with self._lock:
            self.pulled += 1
            q = self._queue
            n = len(q)
            if n < self._min_backlog:
                self._min_backlog = n
            self._window += 1
            if self._window >= TRIM_WINDOW_FRAMES:
                for _ in range(self._min_backlog - self.keep):
                    q.popleft()           # standing latency: the other side runs fast
                    self.drops += 1
                    n -= 1
                self._min_backlog = math.inf
                self._window = 0
            if n == 0:
                self.underruns += 1
                self._steady = 0
                if self.other.pushed and not self._starved:
                    self._starved = True
                    self.keep = min(self.keep + 1, MAX_BACKLOG - 1)
                return SILENT_FRAME
            self._starved = False
            self._steady += 1
            if self._steady >= KEEP_DECAY_PULLS:
                self._steady = 0
                self.keep = max(1, self.keep - 1)
            return q.popleft()


class Bridge:
    """Two ends, ``line_end`` (the analog line's) and ``phone_end`` (the SIP call's).

    ``echo``: the suppressor on the line→phone direction (an `EchoSuppressor` by
    default; None: none). Its reference is every frame the line end pulls."""

    def __init__(self, echo: EchoSuppressor | None | str = "default") -> None:
        self.line_end = BridgeEnd(self, "line")
        self.phone_end = BridgeEnd(self, "phone")
        self.line_end.other = self.phone_end
        self.phone_end.other = self.line_end
        self.echo = EchoSuppressor() if echo == "default" else echo
        if self.echo is not None:
            self.line_end.tap = self.echo.reference
            self.line_end.shape = self.echo.process
        self._lock = threading.Lock()
        self.closed = False
        self.cause: str | None = None
        self.closed_by: BridgeEnd | None = None
        self._on_close: list = []

    def on_close(self, callback) -> None:
        """``callback(cause, end)`` once the bridge closes (at once if it has)."""
        with self._lock:
            if not self.closed:
                self._on_close.append(callback)
                return
        callback(self.cause, self.closed_by)

    def close(self, cause: str, end: BridgeEnd | None = None) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self.cause = cause
            self.closed_by = end
            callbacks, self._on_close = self._on_close, []
        for cb in callbacks:
            cb(cause, end)

    def stats(self) -> dict:
        """Counters for logs and the bench."""
        e = self.echo
        return {"line_drops": self.line_end.drops, "phone_drops": self.phone_end.drops,
                "line_underruns": self.line_end.underruns,
                "phone_underruns": self.phone_end.underruns,
                "echo_suppressed": e.suppressed if e is not None else 0}


def bridged(call: Call, end: BridgeEnd, silence_end: float | None = None) -> Flow:
    """The call flow of a bridged leg: play what the other side sends, give it what this
    side hears, until this call hangs up (the end is closed with its cause, and `Hangup`
    raised) or the other side closes the end (returns its cause).

    ``silence_end``: seconds without voice on either side after which this side's caller
    counts as gone (cause "silence"); None never (a SIP leg has BYE and its RTP timeout).
    """
    vad = call.listener.vad if silence_end is not None else None
    voice_t = call.t
    # A leg whose line can (a `BridgedSipLine`): the other side pulls its audio when it
    # plays it and its packets pull theirs as they leave; the flow only watches.
    line = call.runner.line
    direct = isinstance(end, BridgeEnd) and hasattr(line, "bridge_to") and vad is None
    if direct:
        line.bridge_to(end)
    try:
        while not end.closed:
            frame = None if direct else end.pull()
            yield frame
            if call.hangup_cause is not None:
                end.close(call.hangup_cause)
                raise Hangup(call.hangup_cause)
            if direct:
                continue
            end.push(call.heard)
            if vad is not None:
                if vad.active or sum(map(_mul, frame, frame)) >= _VOICE_GATE:
                    voice_t = call.t
                elif call.t - voice_t >= silence_end:
                    call.gone("silence")
                    end.close("silence")
                    raise Hangup("silence")
        return end.cause
    finally:
        if direct:
            line.unbridge(end)
        # Closed from outside (the runner reset the line, a fault): the other side learns.
        if not end.closed:
            end.close(call.hangup_cause or "gone")

