"""Crash recovery of the store: what an interrupted run left behind becomes messages again.

A mixin of :class:`~linebox.voicemail.store.Store`, run by ``Store.open``: records still
"recording" become new messages flagged ``recovered`` (from their ``.part`` file),
audio files the database does not know (the database came back from its backup) are
adopted, records without audio are dropped, and partial recordings of boxes no longer
configured go to ``lost+found/``.
"""

import logging
import os
from pathlib import Path

from linebox import RATE
from linebox.fileio import fsync_dir
from linebox.voicemail.recorder import HEADER, part_path, repair_partial
from linebox.voicemail.storebase import RECORDING, is_id
from linebox.wavfile import WavError, read_wav

log = logging.getLogger(__name__)



class RecoveryMixin:
    """Recovery at open (see the module docstring)."""



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
                     saved_at=self.clock(), notified=False)
        log.warning("box %s: message %s recovered after a crash, %.2f s",
                    rec["box"], rec["id"], n / RATE)
        return rec

    def _recover_orphan(self, box: str, f: Path) -> dict | None:
        """An audio file the database does not know (the database was restored from its
        backup): keep it as a recovered message without caller details."""
        if not (f.name.endswith(".wav") or f.name.endswith(".wav.part")):
            return None
        stem = f.name.split(".")[0]
        doc = self._table.get(doc_id=int(stem)) if is_id(stem) else None
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
        message_id = stem if doc is None and is_id(stem) and len(stem) == 6 else self._allocate_id()
        record = self._new_record(message_id, box, st.st_mtime - n / RATE,
                                  state="new", seconds=round(n / RATE, 2), recovered=True,
                                  saved_at=self.clock(), notified=False)
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
                        if is_id(p.name.split(".")[0])]
        meta = self._meta()
        if ids and meta["next_id"] <= max(ids):
            meta["next_id"] = max(ids) + 1
            self._write_meta(meta)

