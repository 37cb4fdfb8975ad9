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

import errno
import functools
import json
import logging
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
from linebox.events import Bus
from linebox.fileio import fsync_dir, write_file_atomic
from linebox.voicemail.folder import (
    READ_ONLY_ERRNOS,
    RESERVE_BYTES,
    FolderLock,
    FolderReadOnly,
    free_bytes,
)
from linebox.voicemail.logins import LoginsMixin
from linebox.voicemail.migrate import check as check_version
from linebox.voicemail.migrate import migrate
from linebox.voicemail.notified import NotifiedJournal
from linebox.voicemail.recorder import Recording
from linebox.voicemail.recovery import RecoveryMixin
from linebox.voicemail.schema import db_problem
from linebox.voicemail.storage import AtomicJSONStorage
from linebox.voicemail.storebase import (
    DAY,
    LIVE,
    RECORDING,
    STATES,
    BadTransition,
    NoSpace,
    NoSuchMessage,
    StoreError,
    StoreFull,
    is_id,
    writes,
)
from linebox.wavfile import write_wav

log = logging.getLogger(__name__)

_META = 1                                 # doc id of the one document in the meta table


def writes_unless_degraded(method):
    """Housekeeping that changes the store: refused on a store opened read-only, skipped
    (returning 0) on one whose folder turned out not writable (a fault already said so)."""
    guarded = writes(method)

    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        if self._degraded:
            return 0
        return guarded(self, *args, **kwargs)
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
        self._next_space_check = RATE

    @property
    def samples(self) -> int:
        """Samples written so far."""
        return self._recording.samples

    @property
    def done(self) -> bool:
        """Finished or discarded."""
        return self._done is not None

    def write(self, samples: array) -> None:
        """Append audio; once a second the free space is looked at, and the recording
        stops (OSError ENOSPC, which ends the take and keeps what was said) while there
        is still room for what saving it takes: the database write, the mail that
        carries it (base64: 4/3 of its size) and the MQTT event."""
        self._recording.write(samples)
        if self._recording.samples >= self._next_space_check:
            self._next_space_check = self._recording.samples + RATE
            needed = self._store.reserve_bytes // 2 + 3 * self._recording.samples
            if free_bytes(self._store.data_dir) < needed:
                raise OSError(errno.ENOSPC, "disk nearly full: recording stopped, room kept "
                              "for the database")

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


class Store(RecoveryMixin, LoginsMixin):
    """Messages, greetings, PINs and login lockouts of every box in one data folder.

    The messages are here; crash recovery is in :mod:`~linebox.voicemail.recovery`,
    PINs and lockout in :mod:`~linebox.voicemail.logins`."""

    def __init__(self, data_dir: Path, boxes: Mapping[str, Any], bus: Bus | None = None,
                 clock: Callable[[], float] = time.time, tz: tzinfo | None = None,
                 reserve_bytes: int = RESERVE_BYTES) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.boxes = dict(boxes)
        self.bus = bus if bus is not None else Bus()
        self.clock = clock
        self.tz = tz
        self.messages_dir = self.data_dir / "messages"
        self.greetings_dir = self.data_dir / "greetings"
        self.pins_file = self.data_dir / "pins.json"
        self.notified = NotifiedJournal(self.data_dir / "notified")
        self._lock = threading.RLock()
        self._db: TinyDB | None = None
        self._read_only = False
        self._pins: dict[str, str] = {}
        self.reserve_bytes = reserve_bytes
        self.folder_lock = FolderLock(self.data_dir)
        self.fault: str | None = None            # why the disk cannot take messages
        self._degraded = False                   # opened read-only: the folder is not writable
        self._unsaved: dict[str, dict] = {}      # finished messages the database refused

    # ================================================================ open / close

    def open(self, read_only: bool = False, recover: bool = True,
             exclusive: bool | None = None) -> list[dict]:
        """Create the folders, open the database (recovering it if damaged), turn
        recordings cut short by a crash into new messages flagged ``recovered``, publish
        every box's counts, and return the recovered messages.

        For commands run beside the daemon: ``recover=False`` leaves recording files alone
        and publishes nothing; ``read_only`` also changes nothing on disk and refuses
        every change (StoreError).

        ``exclusive`` (default: ``recover``) takes the folder's writer lock, so a second
        owner (``run`` or ``sim`` on the same folder) is refused with one line naming
        the holder. A command that changes the database beside the daemon (``unlock``)
        asks for it too; one that writes only its own files (``greeting``) need not.
        """
        with self._lock:
            self.close()
            self._read_only = read_only
            self._degraded = False
            if read_only:
                self._open_read_only()
                return []
            self.data_dir.mkdir(parents=True, exist_ok=True)
            try:
                if recover if exclusive is None else exclusive:
                    self.folder_lock.acquire()   # one writer; see voicemail/folder.py
                else:
                    self._probe_writable()
            except FolderReadOnly as e:
                # Noticed now, not after the beep of every call: messages can still be
                # listened to, none recorded, and the fault is reported.
                self._open_read_only()
                self._degraded = True
                log.error("%s: no message can be recorded", e)
                self._set_fault(str(e))
                for box in self.boxes:
                    self._publish({"event": "box_changed", "box": box, "counts": self.counts(box)})
                return []
            migrate(self.data_dir)       # an older layout is upgraded; a newer one refused
            for folder in (self.data_dir, self.messages_dir, self.greetings_dir):
                folder.mkdir(parents=True, exist_ok=True)
            self._db = TinyDB(self.data_dir / "db.json", storage=AtomicJSONStorage,
                              validate=db_problem)
            self._pins = self._load_pins()
            self._warn_unknown()
            if not recover:
                return []
            recovered = self._recover()
            self._announce_missing({r["id"] for r in recovered})
            # Every box's state once, so LEDs and MQTT start from the truth.
            for box in self.boxes:
                self._publish({"event": "box_changed", "box": box, "counts": self.counts(box)})
            return recovered

    def _probe_writable(self) -> None:
        try:
            write_file_atomic(self.data_dir / ".probe", b"")
            (self.data_dir / ".probe").unlink()
        except OSError as e:
            if e.errno in READ_ONLY_ERRNOS:
                raise FolderReadOnly(f"data folder {self.data_dir} is not writable: "
                                     f"{e.strerror}") from None
            raise

    def _open_read_only(self) -> None:
        self._read_only = True
        check_version(self.data_dir)
        self._db = TinyDB(self.data_dir / "db.json", storage=AtomicJSONStorage,
                          read_only=True, validate=db_problem)
        self._pins = self._load_pins(read_only=True)
        self._warn_unknown()

    def _warn_unknown(self) -> None:
        """A record in a state this Linebox does not know (written by a newer or a
        broken one) is kept and listed as it is, not dropped: say so once."""
        for r in self._table.all():
            if r["state"] not in STATES and r["state"] != RECORDING:
                log.warning("box %s: message %s has an unknown state %r: kept and listed as "
                            "it is", r["box"], r["id"], r["state"][:40])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            self.folder_lock.release()

    def subscribe(self, fn: Callable[[dict], None]) -> Callable[[dict], None]:
        return self.bus.subscribe(fn)

    # ================================================================ recording

    @writes
    def start_recording(self, box: str, line: int | None, caller_number: str | None,
                        caller_name: str | None, extension: str | None = None) -> PendingMessage:
        """Start a message; raises StoreFull when the box holds max_messages messages
        (messages being recorded on other lines count too, so none can overflow it).
        ``extension``: the SIP extension leaving it, kept with the message and named in
        its message_saved event."""
        with self._lock:
            self.retry_unsaved()
            cfg = self._box(box)
            if free_bytes(self.data_dir) < self.reserve_bytes:
                reason = (f"disk of {self.data_dir} nearly full (less than "
                          f"{self.reserve_bytes // 2**20} MiB free)")
                self._set_fault(reason)
                raise NoSpace(f"box {box}: no message recorded: {reason}")
            taken = sum(1 for r in self._table.all() if r["box"] == box
                        and (r["state"] in LIVE or r["state"] == RECORDING))
            if taken >= cfg.max_messages:
                raise StoreFull(f"box {box} is full ({cfg.max_messages} messages)")
            now = self.clock()
            record = self._new_record(self._allocate_id(), box, now, caller_number=caller_number,
                                      caller_name=caller_name, line=line, state=RECORDING,
                                      **({"extension": extension} if extension else {}))
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
            fields = {"state": "new", "seconds": round(n_samples / RATE, 2),
                      "saved_at": self.clock(), "notified": False}
            if not self._write_saved(message_id, fields):
                return self._out({**rec, **fields})
            rec = self._record(message_id)
            log.info("box %s: message %s saved, %.2f s", rec["box"], message_id, rec["seconds"])
            self._announce(rec)
            self._publish_counts(rec["box"], before)
            return self._out(rec)

    def _write_saved(self, message_id: str, fields: dict, tries: int = 3) -> bool:
        """The database write that saves a message, tried again if the disk refuses it;
        if it keeps refusing, the message waits in memory for :meth:`retry_unsaved`
        (its audio is safe on disk, and a restart would recover it too)."""
        for attempt in range(tries):
            try:
                self._update(message_id, **fields)
                return True
            except OSError as e:
                error = e
                log.warning("message %s: database write failed (%s), try %d of %d",
                            message_id, e.strerror or e, attempt + 1, tries)
        self._unsaved[message_id] = fields
        self._set_fault(f"database {self.data_dir / 'db.json'} cannot be written: "
                        f"{error.strerror or error}")
        return False

    @writes_unless_degraded
    def retry_unsaved(self) -> int:
        """Save what the database refused before (the disk has room again): listed,
        lamped, reported and mailed now, without a restart. Returns how many remain.
        Cheap when there is nothing to do: the appliance calls it at every turn."""
        if not self._unsaved and self.fault is None:
            return 0
        with self._lock:
            for message_id, fields in list(self._unsaved.items()):
                rec = self._get_doc(message_id)
                if rec is None:
                    del self._unsaved[message_id]
                    continue
                before = self.counts(rec["box"])
                try:
                    self._update(message_id, **fields)
                except OSError:
                    return len(self._unsaved)
                del self._unsaved[message_id]
                rec = self._record(message_id)
                log.info("box %s: message %s saved after the disk recovered", rec["box"],
                         message_id)
                self._announce(rec)
                self._publish_counts(rec["box"], before)
            if free_bytes(self.data_dir) >= self.reserve_bytes:
                self._clear_fault()
            return 0

    def _set_fault(self, reason: str) -> None:
        if reason != self.fault:
            self.fault = reason
            log.error("disk fault: %s", reason)
            self._publish({"event": "disk_fault", "key": "disk", "reason": reason})

    def _clear_fault(self) -> None:
        if self.fault is not None and not self._unsaved:
            self.fault = None
            log.info("disk fault cleared")
            self._publish({"event": "disk_fault_cleared", "key": "disk"})

    def recording_refused(self, box: str) -> str | None:
        """Why a caller could not leave a message in ``box`` now, or None:
        ``box_full``, or ``no_space`` (the disk is nearly full or read-only)."""
        if self.is_full(box):
            return "box_full"
        if self._read_only or free_bytes(self.data_dir) < self.reserve_bytes:
            return "no_space"
        return None

    def _discarded(self, message_id: str, reason: str) -> None:
        with self._lock:
            rec = self._record(message_id)
            self._table.remove(doc_ids=[int(message_id)])
            log.info("box %s: message %s discarded (%s)", rec["box"], message_id, reason)
            self._publish({"event": "message_discarded", "box": rec["box"], "reason": reason,
                           "line": rec["line"]})

    # ================================================================ queries

    def messages(self, box: str | None = None, states: Iterable[str] | None = None) -> list[dict]:
        """Messages (not those still being recorded), oldest first. Without ``states``
        also those in a state this Linebox does not know (see :meth:`_warn_unknown`)."""
        with self._lock:
            found = [self._out(r) for r in self._table.all()
                     if (r["state"] != RECORDING if states is None else r["state"] in states)
                     and (box is None or r["box"] == box)]
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

    @writes
    def set_state(self, message_id: str, state: str) -> dict:
        """new/heard/saved among each other or to trash; trash back to a live state
        (undelete). Returns the updated record; setting the current state does nothing."""
        with self._lock:
            return self._transition(message_id, state)

    def mark_heard(self, message_id: str) -> bool:
        """A message began to play: new -> heard (any other state stays). On a data folder
        that cannot be written the message still plays: the change is reported as a
        disk fault (the one a read-only folder raised at open stays on) and False is
        returned; the message stays new until it plays on a writable folder."""
        with self._lock:
            if self._read_only and not self._degraded:
                raise StoreError(f"store {self.data_dir} is open read-only")
            if self._record(message_id)["state"] != "new":
                return True
            if self._degraded:
                log.warning("message %s: not marked heard: %s", message_id, self.fault)
                if self.fault is None:
                    self._set_fault(f"data folder {self.data_dir} is not writable")
                return False
            try:
                self._transition(message_id, "heard")
            except OSError as e:
                self._set_fault(f"message {message_id} not marked heard: database "
                                f"{self.data_dir / 'db.json'} cannot be written: "
                                f"{e.strerror or e}")
                return False
            return True

    @writes
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

    @writes
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

    @writes
    def set_transcript(self, message_id: str, text: str, engine: str) -> dict:
        """Keep a message's transcript; publishes ``message_transcribed``."""
        with self._lock:
            rec = self._record(message_id)
            self._update(message_id, transcript=text, transcript_engine=engine)
        self._publish({"event": "message_transcribed", "id": message_id, "box": rec["box"],
                       "line": rec["line"], "transcript": text, "engine": engine,
                       "caller_number": rec["caller_number"], "caller_name": rec["caller_name"]})
        return self._out(self._record(message_id))

    @writes
    def purge(self, message_id: str) -> None:
        """Delete for good: file and record. Publishes state ``deleted``."""
        with self._lock:
            if self._record(message_id)["state"] == RECORDING:
                raise BadTransition(f"message {message_id} is still being recorded")
            rec, before = self._remove(message_id)
            self._publish({"event": "message_state", "id": message_id, "box": rec["box"],
                           "state": "deleted", "line": rec["line"]})
            self._publish_counts(rec["box"], before)

    @writes
    def retract(self, message_id: str) -> dict:
        """The caller took back an unheard message. Caller ID is easy to forge, so it
        goes to the trash marked ``retracted`` (the owner can restore it for
        trash_days, also as the box's last deleted), not away for good."""
        with self._lock:
            rec = self._record(message_id)
            if rec["state"] != "new":
                raise BadTransition(f"message {message_id} is {rec['state']}: only a new "
                                    "message can be retracted")
            before = self.counts(rec["box"])
            meta = self._meta()
            meta["last_deleted"][rec["box"]] = message_id
            self._write_meta(meta)
            self._update(message_id, state="trash", prev_state="new", trashed_at=self.clock(),
                         retracted=True)
            log.info("box %s: message %s retracted by the caller (kept in the trash)",
                     rec["box"], message_id)
            self._publish({"event": "message_retracted", "id": message_id, "box": rec["box"],
                           "line": rec["line"]})
            self._publish_counts(rec["box"], before)
            return self._out(self._record(message_id))

    @writes_unless_degraded
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
            fields.update(prev_state=None, trashed_at=None, retracted=False)
        if state == "heard":
            fields["heard_at"] = now            # retention counts from here
        before = self.counts(rec["box"])
        self._update(message_id, **fields)
        log.info("box %s: message %s %s -> %s", rec["box"], message_id, old, state)
        self._publish({"event": "message_state", "id": message_id, "box": rec["box"],
                       "state": state, "line": rec["line"]})
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

    @writes
    def set_greeting(self, box: str, samples: array, kind: str = "unavailable") -> None:
        self._box(box)
        self.greetings_dir.mkdir(parents=True, exist_ok=True)
        write_wav(self._greeting_file(box, kind), samples)
        log.info("box %s: new %s greeting, %.2f s", box, kind, len(samples) / RATE)

    @writes
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
                  "trashed_at": None, "prev_state": None, "retracted": False,
                  "transcript": None, "transcript_engine": None}
        record.update(fields)
        return record

    def _insert(self, record: dict) -> None:
        self._table.insert(Document(record, doc_id=int(record["id"])))

    def _update(self, message_id: str, **fields) -> None:
        self._table.update(fields, doc_ids=[int(message_id)])

    def _get_doc(self, message_id: str) -> dict | None:
        if not is_id(message_id):
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
        out.pop("notified", None)                # internal: see _announce
        out.setdefault("retracted", False)       # records from before retraction kept them
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
                "recovered": rec["recovered"],
                **({"extension": rec["extension"]} if rec.get("extension") else {})}

    def _publish(self, event: dict) -> bool:
        """Publish; False when a subscriber could not take it (see ``events.NotTaken``)."""
        return self.bus.publish(event) is not False

    def _announce(self, rec: dict) -> None:
        """message_saved on the bus (the mailer and MQTT queue it durably), then the
        journal says so; see :mod:`~linebox.voicemail.notified`. When a subscriber
        could not queue it (a mail queue on a read-only folder), the journal does not
        say so: the message is announced again at the next start."""
        if not self._publish(self._saved_event(rec)):
            log.warning("message %s: not every reporter took it; it is announced again "
                        "at the next start", rec["id"])
            return
        try:
            self.notified.add(rec["id"])
        except OSError as e:     # announced anyway: at worst it is announced again
            log.warning("message %s: %s not written: %s", rec["id"], self.notified.path,
                        e.strerror or e)

    def _announce_missing(self, just_recovered: set[str]) -> None:
        """At open: announce what a kill kept from being announced (recovered messages
        included), mark the rest, empty the journal."""
        done = self.notified.ids()
        pending = sorted((r for r in self._table.all()
                          if r.get("notified") is False and r["state"] != RECORDING),
                         key=lambda r: r["id"])
        announced = []
        for rec in pending:
            if rec["id"] not in done:
                if not rec.get("recovered"):
                    log.warning("box %s: message %s was saved but not announced (killed "
                                "or not taken): announcing it now", rec["box"], rec["id"])
                event = self._saved_event(dict(rec))
                if rec["id"] not in just_recovered:
                    # Saved before the kill: a subscriber that queued it may skip it.
                    event["again"] = True
                if not self._publish(event):
                    continue            # still not taken: again at the next start
            announced.append(rec.doc_id)
        if announced:
            self._table.update({"notified": True}, doc_ids=announced)
        self.notified.clear()

    def _publish_counts(self, box: str, before: dict) -> None:
        """box_changed, only when the counts really changed (LEDs and MQTT listen)."""
        counts = self.counts(box)
        if counts != before:
            self._publish({"event": "box_changed", "box": box, "counts": counts})
