"""The voicemail store: the one owner of the message database and the audio files.

Layout of a data folder::

    db.json, db.json.bak          message records and per-box state (AtomicJSONStorage)
    messages/<box>/<id>.wav       one file per message (<id>.wav.part while recording)
    greetings/<box>.wav           a greeting recorded by phone (-temporary, -name: the other kinds)
    pins.json                     PIN hashes changed by phone (hashes only)
    lost+found/                   partial recordings of boxes no longer configured

Every change is durable (fsynced) before it is published on the bus, and then published
as a dict event; the LEDs, MQTT and e-mail subscribe to those instead of reading the
database. All time logic runs on the injected clock, so the simulator's virtual clock
drives retention, lockouts and retraction windows exactly as real time would.

Message ids are six-digit strings from a counter that never goes back, so they sort in
the order messages were started and a recovered ``.part`` file maps back to its record.
"""

import functools
import json
import logging
import os
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.table import Document

from linebox import RATE
from linebox.errors import LineboxError
from linebox.events import Bus
from linebox.fileio import fsync_dir, move_aside, write_file_atomic
from linebox.voicemail.migrate import check as check_version
from linebox.voicemail.migrate import migrate
from linebox.voicemail.recorder import HEADER, Recording, part_path, repair_partial
from linebox.voicemail.storage import AtomicJSONStorage
from linebox.wavfile import WavError, read_wav, write_wav

log = logging.getLogger("linebox.store")

LIVE = ("new", "heard", "saved")          # counted against max_messages
STATES = (*LIVE, "trash")
RECORDING = "recording"                   # internal: a message still being recorded
DAY = 86400.0
LOCK_FAILURES = 10                        # this many failed logins ...
LOCK_WINDOW = 3600.0                      # ... within this many seconds ...
LOCK_SECONDS = 900.0                      # ... lock remote login this long
_META = 1                                 # doc id of the one document in the meta table


class StoreError(LineboxError):
    """A store operation that cannot be done; the message says why."""


class StoreFull(StoreError):
    """The box already holds max_messages messages."""


class NoSuchMessage(StoreError):
    """No message with that id."""


class BadTransition(StoreError):
    """A state change the message's current state does not allow."""


def _writes(method):
    """Mark a method that changes the store: refused on a store opened read-only."""
    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        if self._read_only:
            raise StoreError(f"store {self.data_dir} is open read-only")
        return method(self, *args, **kwargs)
    return checked


class PendingMessage:
    """A message being recorded: write audio, then finish (save) or discard it."""

    def __init__(self, store: "Store", record: dict, recording: Recording) -> None:
        self._store = store
        self._recording = recording
        self.id: str = record["id"]
        self.box: str = record["box"]
        self.line: int | None = record["line"]
        self._done: str | None = None

    @property
    def samples(self) -> int:
        """Samples written so far."""
        return self._recording.samples

    @property
    def done(self) -> bool:
        """Finished or discarded."""
        return self._done is not None

    def write(self, samples: array) -> None:
        self._recording.write(samples)

    def finish(self, keep_samples: int | None = None) -> dict:
        """Keep the first ``keep_samples`` samples (trailing tone and silence cut), save
        the message as new and return its record."""
        if self._done:
            raise ValueError(f"message {self.id} is already {self._done}")
        n = self._recording.finish(keep_samples)
        self._done = "saved"
        return self._store._saved(self.id, n)

    def discard(self, reason: str) -> None:
        """Throw the recording away (too short, caller retracted during review, ...).
        Does nothing once the message is finished or discarded."""
        if self._done:
            return
        self._recording.abort()
        self._done = "discarded"
        self._store._discarded(self.id, reason)


GREETING_KINDS = ("unavailable", "temporary", "name")

class Store:
    """Messages, greetings, PINs and login lockouts of every box in one data folder."""

    def __init__(self, data_dir: Path, boxes: Mapping[str, Any], bus: Bus | None = None,
                 clock: Callable[[], float] = time.time, tz: tzinfo | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.boxes = dict(boxes)
        self.bus = bus if bus is not None else Bus()
        self.clock = clock
        self.tz = tz
        self.messages_dir = self.data_dir / "messages"
        self.greetings_dir = self.data_dir / "greetings"
        self.pins_file = self.data_dir / "pins.json"
        self._lock = threading.RLock()
        self._db: TinyDB | None = None
        self._read_only = False
        self._pins: dict[str, str] = {}

    # ================================================================ open / close

    def open(self, read_only: bool = False, recover: bool = True) -> list[dict]:
        """Create the folders, open the database (recovering it if damaged), turn
        recordings cut short by a crash into new messages flagged ``recovered``, publish
        every box's counts, and return the recovered messages.

        For commands run beside the daemon: ``recover=False`` leaves recording files alone
        and publishes nothing; ``read_only`` also changes nothing on disk and refuses
        every change (StoreError).
        """
        with self._lock:
            self.close()
            self._read_only = read_only
            if read_only:
                check_version(self.data_dir)
                self._db = TinyDB(self.data_dir / "db.json", storage=AtomicJSONStorage,
                                  read_only=True)
                self._pins = self._load_pins(read_only=True)
                return []
            self.data_dir.mkdir(parents=True, exist_ok=True)
            migrate(self.data_dir)       # an older layout is upgraded; a newer one refused
            for folder in (self.data_dir, self.messages_dir, self.greetings_dir):
                folder.mkdir(parents=True, exist_ok=True)
            self._db = TinyDB(self.data_dir / "db.json", storage=AtomicJSONStorage)
            self._pins = self._load_pins()
            if not recover:
                return []
            recovered = self._recover()
            for rec in recovered:
                self._publish(self._saved_event(rec))
            # Every box's state once, so LEDs and MQTT start from the truth.
            for box in self.boxes:
                self._publish({"event": "box_changed", "box": box, "counts": self.counts(box)})
            return recovered

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def subscribe(self, fn: Callable[[dict], None]) -> Callable[[dict], None]:
        return self.bus.subscribe(fn)

    # ================================================================ recording

    @_writes
    def start_recording(self, box: str, line: int | None, caller_number: str | None,
                        caller_name: str | None) -> PendingMessage:
        """Start a message; raises StoreFull when the box holds max_messages messages
        (messages being recorded on other lines count too, so none can overflow it)."""
        with self._lock:
            cfg = self._box(box)
            taken = sum(1 for r in self._table.all() if r["box"] == box
                        and (r["state"] in LIVE or r["state"] == RECORDING))
            if taken >= cfg.max_messages:
                raise StoreFull(f"box {box} is full ({cfg.max_messages} messages)")
            now = self.clock()
            record = self._new_record(self._allocate_id(), box, now, caller_number=caller_number,
                                      caller_name=caller_name, line=line, state=RECORDING)
            # The record is durable before the file exists, so a crash at any point
            # leaves either nothing or a .part that maps back to box and caller.
            self._insert(record)
            path = self._path(record)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                recording = Recording(path)
            except BaseException:
                self._table.remove(doc_ids=[int(record["id"])])
                raise
            log.info("box %s: recording message %s (line %s)", box, record["id"], line)
            return PendingMessage(self, record, recording)

    def _saved(self, message_id: str, n_samples: int) -> dict:
        with self._lock:
            rec = self._record(message_id)
            before = self.counts(rec["box"])
            self._update(message_id, state="new", seconds=round(n_samples / RATE, 2),
                         saved_at=self.clock())
            rec = self._record(message_id)
            log.info("box %s: message %s saved, %.2f s", rec["box"], message_id, rec["seconds"])
            self._publish(self._saved_event(rec))
            self._publish_counts(rec["box"], before)
            return self._out(rec)

    def _discarded(self, message_id: str, reason: str) -> None:
        with self._lock:
            rec = self._record(message_id)
            self._table.remove(doc_ids=[int(message_id)])
            log.info("box %s: message %s discarded (%s)", rec["box"], message_id, reason)
            self._publish({"event": "message_discarded", "box": rec["box"], "reason": reason,
                           "line": rec["line"]})

    # ================================================================ queries

    def messages(self, box: str | None = None, states: Iterable[str] | None = None) -> list[dict]:
        """Messages (not those still being recorded), oldest first."""
        wanted = set(STATES if states is None else states)
        with self._lock:
            found = [self._out(r) for r in self._table.all()
                     if r["state"] in wanted and (box is None or r["box"] == box)]
        found.sort(key=lambda r: (r["received_ts"], r["id"]))
        return found

    def get(self, message_id: str) -> dict | None:
        with self._lock:
            rec = self._get_doc(message_id)
            return None if rec is None or rec["state"] == RECORDING else self._out(rec)

    def counts(self, box: str) -> dict:
        """What the LEDs and MQTT show: ``saved`` is what the owner already listened to
        (heard or saved), ``total`` is what counts against max_messages."""
        with self._lock:
            states = [r["state"] for r in self._table.all() if r["box"] == box]
        new = states.count("new")
        saved = states.count("heard") + states.count("saved")
        cfg = self.boxes.get(box)
        full = cfg is not None and new + saved >= cfg.max_messages
        return {"new": new, "saved": saved, "total": new + saved, "full": full,
                "name": getattr(cfg, "name", box) if cfg is not None else box}

    def is_full(self, box: str) -> bool:
        return self.counts(box)["full"]

    def recent_from(self, box: str, number: str | None, within_seconds: float) -> dict | None:
        """The newest unheard message this caller left in ``box`` that was saved at most
        ``within_seconds`` ago: what a caller may still retract."""
        if not number:
            return None
        since = self.clock() - within_seconds
        found = [r for r in self.messages(box, ["new"])
                 if r["caller_number"] == number and (r["saved_at"] or 0) >= since]
        return max(found, key=lambda r: (r["saved_at"], r["id"]), default=None)

    # ================================================================ state changes

    @_writes
    def set_state(self, message_id: str, state: str) -> dict:
        """new/heard/saved among each other or to trash; trash back to a live state
        (undelete). Returns the updated record; setting the current state does nothing."""
        with self._lock:
            return self._transition(message_id, state)

    @_writes
    def delete(self, message_id: str) -> dict:
        """Move to trash and remember it as the box's last deleted (for undelete_last)."""
        with self._lock:
            rec = self._record(message_id)
            if rec["state"] == RECORDING:
                raise BadTransition(f"message {message_id} is still being recorded")
            meta = self._meta()
            meta["last_deleted"][rec["box"]] = message_id
            self._write_meta(meta)
            return self._transition(message_id, "trash")

    @_writes
    def undelete_last(self, box: str) -> dict | None:
        """Bring the box's last deleted message back to the state it had, if still in trash."""
        with self._lock:
            meta = self._meta()
            message_id = meta["last_deleted"].pop(box, None)
            if message_id is None:
                return None
            self._write_meta(meta)
            rec = self._get_doc(message_id)
            if rec is None or rec["state"] != "trash":
                return None
            return self._transition(message_id, rec.get("prev_state") or "saved")

    @_writes
    @_writes
    def set_transcript(self, message_id: str, text: str, engine: str) -> dict:
        """Keep a message's transcript; publishes ``message_transcribed``."""
        with self._lock:
            rec = self._record(message_id)
            self._update(message_id, transcript=text, transcript_engine=engine)
        self._publish({"event": "message_transcribed", "id": message_id, "box": rec["box"],
                       "line": rec["line"], "transcript": text, "engine": engine,
                       "caller_number": rec["caller_number"], "caller_name": rec["caller_name"]})
        return self._out(self._record(message_id))

    def purge(self, message_id: str) -> None:
        """Delete for good: file and record. Publishes state ``deleted``."""
        with self._lock:
            if self._record(message_id)["state"] == RECORDING:
                raise BadTransition(f"message {message_id} is still being recorded")
            rec, before = self._remove(message_id)
            self._publish({"event": "message_state", "id": message_id, "box": rec["box"],
                           "state": "deleted"})
            self._publish_counts(rec["box"], before)

    @_writes
    def retract(self, message_id: str) -> None:
        """The caller took back an unheard message: gone for good."""
        with self._lock:
            rec = self._record(message_id)
            if rec["state"] != "new":
                raise BadTransition(f"message {message_id} is {rec['state']}: only a new "
                                    "message can be retracted")
            rec, before = self._remove(message_id)
            log.info("box %s: message %s retracted by the caller", rec["box"], message_id)
            self._publish({"event": "message_retracted", "id": message_id, "box": rec["box"]})
            self._publish_counts(rec["box"], before)

    @_writes
    def apply_retention(self, now: float | None = None) -> None:
        """Heard messages older than keep_heard_days (since heard) go to trash; trash
        older than trash_days (since trashed) is purged. A limit of 0 or None keeps."""
        with self._lock:
            now = self.clock() if now is None else now
            for rec in self.messages():
                cfg = self.boxes.get(rec["box"])
                if cfg is None:
                    continue
                keep, trash = cfg.keep_heard_days, cfg.trash_days
                if (rec["state"] == "heard" and keep
                        and now - (rec["heard_at"] or now) >= keep * DAY):
                    self._transition(rec["id"], "trash", now=now)
                    rec = self._record(rec["id"])
                if (rec["state"] == "trash" and trash
                        and now - (rec["trashed_at"] or now) >= trash * DAY):
                    self.purge(rec["id"])

    def _transition(self, message_id: str, state: str, now: float | None = None) -> dict:
        rec = self._record(message_id)
        old = rec["state"]
        if state not in STATES:
            raise BadTransition(f"unknown message state {state!r}")
        if old == RECORDING:
            raise BadTransition(f"message {message_id} is still being recorded")
        if state == old:
            return self._out(rec)
        now = self.clock() if now is None else now
        fields: dict[str, Any] = {"state": state}
        if state == "trash":
            fields.update(prev_state=old, trashed_at=now)
        elif old == "trash":
            fields.update(prev_state=None, trashed_at=None)
        if state == "heard":
            fields["heard_at"] = now            # retention counts from here
        before = self.counts(rec["box"])
        self._update(message_id, **fields)
        log.info("box %s: message %s %s -> %s", rec["box"], message_id, old, state)
        self._publish({"event": "message_state", "id": message_id, "box": rec["box"],
                       "state": state})
        self._publish_counts(rec["box"], before)
        return self._out(self._record(message_id))

    def _remove(self, message_id: str) -> tuple[dict, dict]:
        """Delete file then record (a crash in between leaves a record without file,
        which open() drops). Returns the record and the box counts before."""
        rec = self._record(message_id)
        before = self.counts(rec["box"])
        path = self._path(rec)
        path.unlink(missing_ok=True)
        if path.parent.exists():
            fsync_dir(path.parent)
        self._table.remove(doc_ids=[int(message_id)])
        meta = self._meta()
        if meta["last_deleted"].get(rec["box"]) == message_id:
            del meta["last_deleted"][rec["box"]]
            self._write_meta(meta)
        return rec, before

    # ================================================================ greetings

    def greeting_path(self, box: str, kind: str = "unavailable") -> Path | None:
        path = self._greeting_file(box, kind)
        return path if path.exists() else None

    @_writes
    def set_greeting(self, box: str, samples: array, kind: str = "unavailable") -> None:
        self._box(box)
        self.greetings_dir.mkdir(parents=True, exist_ok=True)
        write_wav(self._greeting_file(box, kind), samples)
        log.info("box %s: new %s greeting, %.2f s", box, kind, len(samples) / RATE)

    @_writes
    def clear_greeting(self, box: str, kind: str = "unavailable") -> None:
        path = self._greeting_file(box, kind)
        if path.exists():
            path.unlink()
            fsync_dir(self.greetings_dir)
            log.info("box %s: %s greeting removed", box, kind)

    def _greeting_file(self, box: str, kind: str) -> Path:
        # Asterisk's kinds: unavailable (the box's greeting, <box>.wav as before),
        # temporary (overrides it while it exists) and name (said by the system greeting).
        if kind not in GREETING_KINDS:
            raise ValueError(f"no greeting kind {kind!r}")
        suffix = "" if kind == "unavailable" else f"-{kind}"
        return self.greetings_dir / f"{box}{suffix}.wav"

    # ================================================================ PINs and lockout

    def pin_hash(self, box: str) -> str | None:
        """The hash of the PIN changed by phone, else the one from the configuration."""
        with self._lock:
            return self._pins.get(box) or getattr(self.boxes.get(box), "pin_hash", None)

    @_writes
    def set_pin_hash(self, box: str, pin_hash: str) -> None:
        with self._lock:
            self._box(box)
            pins = dict(self._pins, **{box: pin_hash})
            write_file_atomic(self.pins_file, (json.dumps(pins, indent=1, sort_keys=True)
                                               + "\n").encode())
            self._pins = pins
            log.info("box %s: PIN changed by phone", box)

    @_writes
    def login_failed(self, box: str) -> bool:
        """Count a failed remote login; the tenth within an hour locks login for 15 min.
        Returns whether login is now locked."""
        with self._lock:
            now = self.clock()
            meta = self._meta()
            entry = meta["logins"].setdefault(box, {"failures": [], "locked_until": 0.0})
            entry["failures"] = [t for t in entry["failures"] if now - t < LOCK_WINDOW] + [now]
            if len(entry["failures"]) >= LOCK_FAILURES:
                entry["failures"] = []
                entry["locked_until"] = now + LOCK_SECONDS
                log.warning("box %s: %d failed logins within an hour: login locked for %d min",
                            box, LOCK_FAILURES, LOCK_SECONDS // 60)
            self._write_meta(meta)
            return now < entry["locked_until"]

    @_writes
    def login_ok(self, box: str) -> None:
        with self._lock:
            meta = self._meta()
            if meta["logins"].pop(box, None) is not None:
                self._write_meta(meta)

    def is_locked(self, box: str) -> bool:
        with self._lock:
            entry = self._meta()["logins"].get(box)
            return entry is not None and self.clock() < entry["locked_until"]

    # ================================================================ recovery

    def _recover(self) -> list[dict]:
        """Finish what a crash interrupted; see open()."""
        self._bump_counter()
        recovered = []
        for rec in [r for r in self._table.all() if r["state"] == RECORDING]:
            got = self._recover_recording(dict(rec))
            if got is not None:
                recovered.append(got)
        for box_dir in sorted(p for p in self.messages_dir.iterdir() if p.is_dir()):
            for f in sorted(box_dir.iterdir()):
                got = self._recover_orphan(box_dir.name, f)
                if got is not None:
                    recovered.append(got)
        for rec in self._table.all():
            if rec["state"] != RECORDING and not self._path(rec).exists():
                log.warning("box %s: message %s has no audio file: record dropped",
                            rec["box"], rec["id"])
                self._table.remove(doc_ids=[rec.doc_id])
        return [self._out(self._record(r["id"])) for r in recovered]

    def _recover_recording(self, rec: dict) -> dict | None:
        """A record still "recording": the process died during that message."""
        path = self._path(rec)
        part = part_path(path)
        if rec["box"] not in self.boxes:
            if part.exists():
                self._keep_aside(part)
            self._table.remove(doc_ids=[int(rec["id"])])
            return None
        if not path.exists():
            if part.exists() and repair_partial(part) is None:
                log.info("box %s: message %s cut short before half a second: dropped",
                         rec["box"], rec["id"])
            if not path.exists():
                self._table.remove(doc_ids=[int(rec["id"])])
                return None
        n = (path.stat().st_size - HEADER) // 2
        self._update(rec["id"], state="new", seconds=round(n / RATE, 2), recovered=True,
                     saved_at=self.clock())
        log.warning("box %s: message %s recovered after a crash, %.2f s",
                    rec["box"], rec["id"], n / RATE)
        return rec

    def _recover_orphan(self, box: str, f: Path) -> dict | None:
        """An audio file the database does not know (the database was restored from its
        backup): keep it as a recovered message without caller details."""
        if not (f.name.endswith(".wav") or f.name.endswith(".wav.part")):
            return None
        stem = f.name.split(".")[0]
        doc = self._table.get(doc_id=int(stem)) if stem.isdigit() else None
        if doc is not None and doc["box"] == box:
            return None
        if box not in self.boxes:
            if f.name.endswith(".part"):
                self._keep_aside(f)
            else:
                log.warning("%s: message of box %s, which is not configured: left alone", f, box)
            return None
        if f.name.endswith(".part"):
            f = repair_partial(f)
            if f is None:
                return None
        try:
            n = len(read_wav(f))
        except WavError as e:
            log.error("unreadable message file: %s: kept in place", e)
            return None
        st = f.stat()
        message_id = stem if doc is None and stem.isdigit() and len(stem) == 6 else self._allocate_id()
        record = self._new_record(message_id, box, st.st_mtime - n / RATE,
                                  state="new", seconds=round(n / RATE, 2), recovered=True,
                                  saved_at=self.clock())
        target = self._path(record)
        if target != f:
            os.replace(f, target)
            fsync_dir(target.parent)
        self._insert(record)
        log.warning("box %s: audio file %s was not in the database: recovered as message %s",
                    box, f.name, record["id"])
        return record

    def _keep_aside(self, part: Path) -> None:
        aside = self.data_dir / "lost+found"
        aside.mkdir(exist_ok=True)
        target = aside / f"{part.parent.name}-{part.name}"
        os.replace(part, target)
        fsync_dir(aside)
        fsync_dir(part.parent)
        log.warning("%s: partial recording for box %s, which is not configured: kept as %s",
                    part.name, part.parent.name, target)

    def _bump_counter(self) -> None:
        """Never hand out an id already on disk, even if the database lost its counter."""
        ids = [int(r["id"]) for r in self._table.all()]
        for box_dir in self.messages_dir.iterdir():
            if box_dir.is_dir():
                ids += [int(p.name.split(".")[0]) for p in box_dir.iterdir()
                        if p.name.split(".")[0].isdigit()]
        meta = self._meta()
        if ids and meta["next_id"] <= max(ids):
            meta["next_id"] = max(ids) + 1
            self._write_meta(meta)

    # ================================================================ internals

    @property
    def _table(self):
        if self._db is None:
            raise StoreError(f"store {self.data_dir} is not open")
        return self._db.table("messages")

    def _box(self, box: str):
        try:
            return self.boxes[box]
        except KeyError:
            raise StoreError(f"no box {box}") from None

    def _meta(self) -> dict:
        doc = self._db.table("meta").get(doc_id=_META) if self._db is not None else None
        meta = json.loads(json.dumps(doc)) if doc else {}
        meta.setdefault("next_id", 1)
        meta.setdefault("last_deleted", {})
        meta.setdefault("logins", {})
        return meta

    def _write_meta(self, meta: dict) -> None:
        self._db.table("meta").upsert(Document(meta, doc_id=_META))

    def _allocate_id(self) -> str:
        meta = self._meta()
        n = meta["next_id"]
        meta["next_id"] = n + 1
        self._write_meta(meta)
        return f"{n:06d}"

    def _new_record(self, message_id: str, box: str, received_ts: float, **fields) -> dict:
        record = {"id": message_id, "box": box, "state": "new", "caller_number": None,
                  "caller_name": None, "received": self._iso(received_ts),
                  "received_ts": received_ts, "seconds": 0.0, "line": None,
                  "recovered": False, "saved_at": None, "heard_at": None,
                  "trashed_at": None, "prev_state": None,
                  "transcript": None, "transcript_engine": None}
        record.update(fields)
        return record

    def _insert(self, record: dict) -> None:
        self._table.insert(Document(record, doc_id=int(record["id"])))

    def _update(self, message_id: str, **fields) -> None:
        self._table.update(fields, doc_ids=[int(message_id)])

    def _get_doc(self, message_id: str) -> dict | None:
        if not str(message_id).isdigit():
            return None
        doc = self._table.get(doc_id=int(message_id))
        return None if doc is None else dict(doc)

    def _record(self, message_id: str) -> dict:
        rec = self._get_doc(message_id)
        if rec is None:
            raise NoSuchMessage(f"no message {message_id}")
        return rec

    def _path(self, rec: dict) -> Path:
        return self.messages_dir / rec["box"] / f"{rec['id']}.wav"

    def _out(self, rec: dict) -> dict:
        out = dict(rec)
        out["file"] = str(self._path(rec))
        # In the device's zone as configured now, whatever zone it was written in.
        if isinstance(rec.get("received_ts"), int | float):
            out["received"] = self._iso(rec["received_ts"])
        return out

    def _iso(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).astimezone(self.tz).isoformat(
            timespec="seconds")

    def _saved_event(self, rec: dict) -> dict:
        return {"event": "message_saved", "box": rec["box"], "id": rec["id"],
                "seconds": rec["seconds"], "line": rec["line"],
                "caller_number": rec["caller_number"], "caller_name": rec["caller_name"],
                "recovered": rec["recovered"]}

    def _publish(self, event: dict) -> None:
        self.bus.publish(event)

    def _publish_counts(self, box: str, before: dict) -> None:
        """box_changed, only when the counts really changed (LEDs and MQTT listen)."""
        counts = self.counts(box)
        if counts != before:
            self._publish({"event": "box_changed", "box": box, "counts": counts})

    def _load_pins(self, read_only: bool = False) -> dict[str, str]:
        try:
            pins = json.loads(self.pins_file.read_text(encoding="utf-8"))
            if not isinstance(pins, dict) or not all(isinstance(v, str) for v in pins.values()):
                raise ValueError("not an object of strings")
            return pins
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            if read_only:
                log.warning("%s is unreadable (%s)", self.pins_file, e)
                return {}
            aside = move_aside(self.pins_file, "corrupt")
            log.error("%s is unreadable (%s, kept as %s): PINs from the configuration apply",
                      self.pins_file, e, aside.name)
            return {}
