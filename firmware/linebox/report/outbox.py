"""A durable first-in first-out queue of report events (``data_dir/outbox/``).

Every event is one JSON file named by a zero-padded sequence number
(``000000000042.json``), written to a temporary file, fsynced, renamed and the folder
fsynced, so after a power cut each event is either complete or absent. The MQTT reporter
puts an event here *before* it tries to publish it and acknowledges (deletes) it only
when the broker confirmed it, so an event survives a broker outage and a restart.

The sequence continues from the highest file present when the outbox is opened, so
events left by a previous run stay ahead of new ones. A file that cannot be read back
(truncated by a disk fault, not JSON) is moved aside with a warning and never blocks
the queue. The queue is bounded: past ``limit`` events the oldest are dropped, with a
warning, so a broker that is gone for months cannot fill the SD card.
"""

import errno
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from linebox.errors import LineboxError
from linebox.fileio import fsync_dir, move_aside, write_file_atomic

log = logging.getLogger(__name__)

LIMIT = 10_000
_DIGITS = 12


def iso_time(ts: float, tz: tzinfo | None = None) -> str:
    """``ts`` as ISO 8601 with the UTC offset of ``tz`` (None: the system's local time)."""
    return datetime.fromtimestamp(ts, UTC).astimezone(tz).isoformat(timespec="milliseconds")


class OutboxError(LineboxError):
    """An event could not be queued (disk full, folder not writable)."""


class Outbox:
    """Durable FIFO of JSON events, one file each; thread-safe.

    ``put`` gives an event an ``id`` (uuid4 hex) and a ``time`` (ISO 8601 with offset,
    from ``clock``) unless it has them, writes it durably and returns the id.
    ``pending`` lists what is not yet acknowledged, oldest first; ``ack`` removes one.
    """

    def __init__(self, folder: Path, clock: Callable[[], float] = time.time,
                 tz: tzinfo | None = None, limit: int = LIMIT) -> None:
        self.folder = Path(folder)
        self.clock = clock
        self.tz = tz
        self.limit = limit
        self._lock = threading.Lock()
        self._events: OrderedDict[int, dict] = OrderedDict()   # seq -> event
        self._seq_of: dict[str, int] = {}                      # id -> seq
        self._next = 1
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutboxError(f"outbox {self.folder}: {e.strerror or e}") from None
        self._load()

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    # ------------------------------------------------------------ public

    def put(self, event: dict) -> str:
        """Queue ``event`` durably; returns its id. Raises OutboxError (one line) when
        the disk is full: what was queued before stays queued."""
        event = dict(event)
        event.setdefault("id", uuid.uuid4().hex)
        event.setdefault("time", iso_time(self.clock(), self.tz))
        blob = (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            seq = self._next
            self._write(seq, blob)
            self._next = seq + 1
            self._events[seq] = event
            self._seq_of[event["id"]] = seq
            self._bound()
        return event["id"]

    def pending(self, limit: int | None = None) -> list[dict]:
        """Events not yet acknowledged, oldest first (at most ``limit``)."""
        with self._lock:
            out = []
            for ev in self._events.values():
                if limit is not None and len(out) >= limit:
                    break
                out.append(ev)
            return out

    def ack(self, event_id: str) -> None:
        """Delivered: delete it. An id no longer queued (dropped, acked twice) is ignored."""
        with self._lock:
            seq = self._seq_of.pop(event_id, None)
            if seq is None:
                return
            del self._events[seq]
            self._path(seq).unlink(missing_ok=True)
            fsync_dir(self.folder)

    # ------------------------------------------------------------ internals

    def _path(self, seq: int) -> Path:
        return self.folder / f"{seq:0{_DIGITS}d}.json"

    def _write(self, seq: int, blob: bytes) -> None:
        try:
            write_file_atomic(self._path(seq), blob)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutboxError(f"outbox {self.folder}: disk full: event not queued") from None
            raise OutboxError(f"outbox {self.folder}: {e.strerror or e}: event not queued") from None

    def _bound(self) -> None:
        while len(self._events) > self.limit:
            seq, ev = self._events.popitem(last=False)
            self._seq_of.pop(ev["id"], None)
            self._path(seq).unlink(missing_ok=True)
            log.warning("outbox holds more than %d events: dropped the oldest (%s %s of %s)",
                        self.limit, ev.get("type", "event"), ev["id"], ev.get("time"))

    def _load(self) -> None:
        for stale in self.folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)     # a write cut short: never complete
        seqs = sorted(int(p.stem) for p in self.folder.glob("*.json")
                      if p.stem.isdigit() and len(p.stem) == _DIGITS)
        for seq in seqs:
            path = self._path(seq)
            event, problem = _read_event(path)
            if problem is not None:
                aside = move_aside(path, "corrupt")
                log.warning("outbox: %s is unreadable (%s): moved aside as %s",
                            path.name, problem, aside.name)
                continue
            self._events[seq] = event
            self._seq_of[event["id"]] = seq
        self._next = (seqs[-1] + 1) if seqs else 1
        if self._events:
            log.info("outbox: %d undelivered events from before", len(self._events))
        self._bound()


def _read_event(path: Path) -> tuple[dict | None, str | None]:
    try:
        event = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        return None, f"cannot read: {e.strerror or e}"
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as e:
        return None, f"bad JSON at byte {e.pos}"
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        return None, "not an event object with an id"
    return event, None
