"""A TinyDB storage that survives power cuts: the database file is never written in place.

TinyDB's own JSONStorage rewrites ``db.json`` in place, so a power cut in the middle of
a write leaves half a file and every message record is gone. Here every write goes to
a temporary file that is fsynced and renamed over ``db.json``, and the previous good
version is kept as ``db.json.bak``. At every instant one of the two is complete, so a
damaged ``db.json`` (a disk fault, a card pulled out, or data of the wrong shape, as
the owner's ``validate`` says) is recovered from the backup,
and if both are damaged the evidence is moved aside and an empty database starts.
"""

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tinydb.storages import Storage

from linebox.fileio import fsync_dir, move_aside, write_file_atomic

log = logging.getLogger(__name__)


class AtomicJSONStorage(Storage):
    """TinyDB storage in one JSON file, written atomically with a backup of the last version.

    ``read`` loads the file once and then serves copies of what was last written (this
    process is the only writer), so recovery happens once, at open, and is logged.
    With ``read_only`` (for a listing next to a running daemon) nothing on disk is
    touched: a damaged file is read from its backup in memory only, and writes fail.
    """

    def __init__(self, path: str | os.PathLike, read_only: bool = False,
                 validate: Callable[[dict], str | None] | None = None, **_ignored: Any) -> None:
        super().__init__()
        self.read_only = read_only
        self.validate = validate            # data -> what is wrong with its shape, or None
        self.path = Path(path)
        self.bak = self.path.with_name(self.path.name + ".bak")
        self._text: str | None = None      # the last good serialized state
        self._loaded = False

    # ------------------------------------------------------------ reading

    def read(self) -> dict[str, dict[str, Any]] | None:
        if not self._loaded:
            self._text = self._load()
            self._loaded = True
        return None if self._text is None else json.loads(self._text)

    def _load(self) -> str | None:
        if self.read_only:
            return self._load_read_only()
        # Temp files of writes cut short by a crash: never complete, never needed.
        for name in (self.path.name, self.bak.name):
            for stale in self.path.parent.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
        main_text, main_problem = _parse(self.path, self.validate)
        if main_problem is None:
            return main_text
        bak_text, bak_problem = _parse(self.bak, self.validate)
        if main_problem == "missing" and bak_problem == "missing":
            return None                                     # a new database
        if bak_problem is None:
            self._restore_from_backup(main_problem, bak_text)
            return bak_text
        if main_problem == "missing":
            aside = move_aside(self.bak, "corrupt")
            log.error("database %s is missing and its backup is unreadable (%s, kept as %s): "
                      "starting an empty database", self.path, bak_problem, aside.name)
            return None
        aside = move_aside(self.path, "corrupt")
        if bak_problem != "missing":
            move_aside(self.bak, "corrupt")
        log.error("database %s is unreadable (%s, kept as %s) and so is its backup (%s): "
                  "starting an empty database", self.path, main_problem, aside.name, bak_problem)
        return None

    def _load_read_only(self) -> str | None:
        main_text, main_problem = _parse(self.path, self.validate)
        if main_problem is None:
            return main_text
        bak_text, bak_problem = _parse(self.bak, self.validate)
        if main_problem != "missing" or bak_problem not in ("missing", None):
            log.warning("database %s is %s (backup: %s): reading %s", self.path, main_problem,
                        bak_problem or "good", "the backup" if bak_text else "nothing")
        return bak_text

    def _restore_from_backup(self, problem: str, bak_text: str) -> None:
        if problem == "missing":
            log.warning("database %s is missing: recovered from %s", self.path, self.bak.name)
        else:
            # Keep the damaged file: it is evidence, and a later write must not rotate
            # it into the backup.
            aside = move_aside(self.path, "corrupt")
            log.warning("database %s is unreadable (%s, kept as %s): recovered from %s",
                        self.path, problem, aside.name, self.bak.name)
        write_file_atomic(self.path, bak_text.encode())

    # ------------------------------------------------------------ writing

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        if self.read_only:
            raise PermissionError(f"database {self.path} is open read-only")
        text = json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n"
        folder = self.path.parent
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if self.path.exists():
            self._rotate_backup()
        os.replace(tmp, self.path)
        fsync_dir(folder)
        self._text = text
        self._loaded = True

    def _rotate_backup(self) -> None:
        """Make db.json.bak a complete copy of the current db.json, atomically.

        A hard link costs nothing and is complete the moment it exists; a copy (for file
        systems without links) is fsynced before it replaces the old backup.
        """
        bak_tmp = self.bak.with_name(f".{self.bak.name}.{os.getpid()}.tmp")
        bak_tmp.unlink(missing_ok=True)
        try:
            os.link(self.path, bak_tmp)
        except OSError:
            shutil.copyfile(self.path, bak_tmp)
            with open(bak_tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(bak_tmp, self.bak)

    def close(self) -> None:
        self._loaded = False
        self._text = None


def _parse(path: Path, validate=None) -> tuple[str | None, str | None]:
    """(text, None) if ``path`` holds a JSON object of the right shape, else (None,
    what is wrong): a file of the wrong shape is as damaged as one cut in half."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, "missing"
    except OSError as e:
        return None, f"cannot read: {e.strerror or e}"
    if not raw.strip():
        return None, "empty file"
    try:
        text = raw.decode("utf-8")
        data = json.loads(text)
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as e:
        return None, f"bad JSON at byte {e.pos}"
    except RecursionError:
        return None, "JSON nested too deep"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    problem = validate(data) if validate is not None else None
    if problem is not None:
        return None, f"wrong shape: {problem}"
    return text, None
