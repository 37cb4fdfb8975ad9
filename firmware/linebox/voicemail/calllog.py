"""The call log: one record per call on a line or from an IP phone, built from the bus
and kept durably.

A call on a line begins with its first ring and ends with the hang-up (or, unanswered,
when the ringing stops); a call from a registered extension begins with its
``sip_call`` and is named by ``extension`` (``line`` is null), as CONTRACT §9 says.
What happened in between decides its outcome:

    message    the caller left a message (``box``, ``message``)
    hung_up    answered, but the caller hung up before leaving one
    missed     never answered (answering off, or the caller gave up first)
    login      the box owner called in and logged in (``box``)
    blocked    the caller's number is on the line's ``block`` list: hung up at once,
               never answered (event ``call_blocked``)
    phone      an IP phone of the line's ring group answered (``extension``; a transfer
               to a box that took a message makes it ``message``)

Records are appended to ``calls.jsonl`` in the data folder, one JSON object a line,
flushed and fsynced when the call ends. A torn last line (power cut) is skipped on
reading. The file is bounded: past ``limit`` plus a quarter it is rewritten atomically
with the newest ``limit`` records.
"""

import json
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from linebox import events as ev_
from linebox.events import Bus
from linebox.fileio import write_file_atomic

log = logging.getLogger(__name__)

FILE_NAME = "calls.jsonl"
LIMIT = 5000
OUTCOMES = ("message", "hung_up", "missed", "login", "blocked", "phone")


class CallLog:
    """Subscribes to the bus, keeps the last ``limit`` calls in memory and on disk."""

    def __init__(self, bus: Bus, data_dir: Path, clock: Callable[[], float],
                 tz: tzinfo | None = None, limit: int = LIMIT,
                 route_of: Callable[[int], str | None] | None = None) -> None:
        self.bus = bus
        self.route_of = route_of         # line -> its route, to name the box of a hang-up
        self.path = Path(data_dir) / FILE_NAME
        self.clock = clock
        self.tz = tz
        self.limit = limit
        self._calls: deque[dict] = deque(maxlen=limit)
        self._on_disk = 0
        self._open: dict[int, dict] = {}       # line -> the call going on there
        self._lock = threading.Lock()
        self._load()
        bus.subscribe(self._on_event)

    # ---------------------------------------------------------------- reading

    def calls(self) -> list[dict]:
        """Every logged call, newest first (a copy)."""
        with self._lock:
            return [dict(c) for c in reversed(self._calls)]

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return
        except OSError as e:
            log.error("%s: %s: the call log starts empty", self.path, e.strerror)
            return
        n = 0
        for row in text.splitlines():
            n += 1
            try:
                rec = json.loads(row)
            except ValueError:
                continue                 # a line torn by a power cut
            if isinstance(rec, dict) and rec.get("outcome") in OUTCOMES:
                self._calls.append(rec)
        self._on_disk = n

    # ---------------------------------------------------------------- the bus

    def _on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind not in _HANDLERS:
            return
        line = ev.get("line")
        if line is None:
            ext = ev.get("extension")
            if ext is None and kind == ev_.MESSAGE_SAVED:
                # The store publishes it without the extension; a message left from a
                # phone has the extension's number as its caller (CONTRACT §9).
                ext = ev.get("caller_number")
            if not isinstance(ext, str):
                return
            line = f"ext:{ext}"          # an IP phone's call: one at a time per extension
        _HANDLERS[kind](self, line, ev)

    def _new(self, line, ev: dict, extension: str | None = None, answered: bool = False) -> dict:
        return {"ts": self.clock(), "line": None if extension else line, "extension": extension,
                "caller_number": None, "caller_name": None, "outcome": None, "box": None,
                "message": None, "answered": answered, "t0": ev.get("t")}

    def _ring(self, line: int, ev: dict) -> None:
        if isinstance(line, str):
            return
        if ev.get("n") == 1 or line not in self._open:
            self._open[line] = self._new(line, ev)

    def _sip_call(self, key: str, ev: dict) -> None:
        call = self._new(key, ev, extension=ev.get("extension"), answered=True)   # answered at once
        call["caller_number"] = ev.get("caller_number")
        call["caller_name"] = ev.get("caller_name")
        self._open[key] = call

    def _callerid(self, line: int, ev: dict) -> None:
        call = self._open.get(line)
        if call is not None:
            call["caller_number"] = ev.get("number") or call["caller_number"]
            call["caller_name"] = ev.get("name") or call["caller_name"]

    def _answer(self, line: int, ev: dict) -> None:
        call = self._open.get(line)
        if call is not None:
            call["answered"] = True

    def _bridged(self, line: int, ev: dict) -> None:
        call = self._open.get(line)
        if call is not None and call["outcome"] in (None, "phone"):
            call.update(outcome="phone", extension=ev.get("extension"))

    def _record_start(self, line: int, ev: dict) -> None:
        call = self._open.get(line)
        if call is not None and call["outcome"] is None:
            call["box"] = ev.get("box")

    def _message_saved(self, line: int, ev: dict) -> None:
        call = self._open.get(line)
        if call is not None and not ev.get("recovered"):
            call.update(outcome="message", box=ev.get("box"), message=ev.get("id"))

    def _login(self, line: int, ev: dict) -> None:
        call = self._open.get(line)
        if call is not None and ev.get("ok") and call["outcome"] is None:
            call.update(outcome="login", box=ev.get("box"))

    def _blocked(self, line: int, ev: dict) -> None:
        call = self._open.get(line)
        if call is not None:
            call["outcome"] = "blocked"

    def _missed(self, line: int, ev: dict) -> None:
        call = self._open.get(line)
        if call is not None and not call["answered"]:
            call["outcome"] = "missed"
            call["caller_number"] = call["caller_number"] or ev.get("caller_number")
            call["caller_name"] = call["caller_name"] or ev.get("caller_name")
            self._end(line, ev)

    def _end(self, line: int, ev: dict) -> None:
        call = self._open.pop(line, None)
        if call is None:
            return
        outcome = call["outcome"] or ("hung_up" if call["answered"] else "missed")
        if outcome == "hung_up" and call["box"] is None and self.route_of is not None \
                and call["line"] is not None:
            route = self.route_of(line)
            call["box"] = route if route and route.isdigit() else None
        t0, t1 = call["t0"], ev.get("t")
        if isinstance(t0, int | float) and isinstance(t1, int | float):
            seconds = round(t1 - t0, 1)
        else:                            # an IP phone's call: its start had no line time
            seconds = round(max(0.0, self.clock() - call["ts"]), 1)
        rec = {"t": datetime.fromtimestamp(call["ts"], UTC).astimezone(self.tz).isoformat(timespec="seconds"),
               "ts": call["ts"], "line": call["line"], "extension": call["extension"],
               "caller_number": call["caller_number"],
               "caller_name": call["caller_name"], "outcome": outcome, "box": call["box"],
               "message": call["message"], "seconds": seconds}
        if call.get("extension") is not None:
            rec["extension"] = call["extension"]       # who answered (the last, after transfers)
        self._append(rec)
        self.bus.publish({"event": ev_.CALL_LOGGED, "call": dict(rec)})

    # ---------------------------------------------------------------- the file

    def _append(self, rec: dict) -> None:
        with self._lock:
            self._calls.append(rec)
            try:
                if self._on_disk >= self.limit + self.limit // 4:
                    blob = "".join(json.dumps(c) + "\n" for c in self._calls)
                    write_file_atomic(self.path, blob.encode())
                    self._on_disk = len(self._calls)
                    return
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, (json.dumps(rec) + "\n").encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._on_disk += 1
            except OSError as e:
                # The call is still shown; a full or broken disk must not end the call flow.
                log.error("call log %s: %s", self.path, e.strerror or e)


_HANDLERS = {
    "ring": CallLog._ring,
    "callerid": CallLog._callerid,
    "answer": CallLog._answer,
    "bridged": CallLog._bridged,
    "record_start": CallLog._record_start,
    "message_saved": CallLog._message_saved,
    "login": CallLog._login,
    "call_blocked": CallLog._blocked,
    "sip_call": CallLog._sip_call,
    "missed_call": CallLog._missed,
    "onhook": CallLog._end,
}
