"""Data-folder versioning: ``data_dir/VERSION`` says which layout the folder holds, and
:func:`migrate` brings an older folder up to this Linebox's layout before the store
opens it.

Versions:

- **0** — the layout before VERSION existed: ``db.json`` (+ ``db.json.bak``),
  ``messages/<box>/<id>.wav``, ``greetings/<box>.wav``, ``pins.json``, ``outbox/``,
  ``mailq/``, ``lost+found/``, ``prompts/``, and no ``VERSION`` file. A folder holding
  any of these but no VERSION is version 0.
- **1** — the same layout plus ``VERSION``. Going from 0 to 1 changes no data; it
  keeps a copy of the database as ``db.json.v0`` and writes ``VERSION``.

Rules for the next migrations (append to :data:`MIGRATIONS`; ``MIGRATIONS[n]`` turns
version n into n+1):

- Before step n runs, ``db.json`` is copied to ``db.json.v<n>`` (once: a copy already
  there is kept, because after a crash in the middle of step n the live ``db.json`` may
  already be half-way and the first copy is the true version-n one).
- ``VERSION`` is written (atomically) only after a step has finished, so a power cut
  during a step re-runs it at the next start: every step must be idempotent and write
  each file atomically (``write_file_atomic``), never in place.

A folder from a *newer* Linebox is refused with one line, so a downgrade never
misreads (and then overwrites) data it does not understand.
"""

import logging
from collections.abc import Callable
from pathlib import Path

from linebox.errors import LineboxError
from linebox.fileio import write_file_atomic

log = logging.getLogger(__name__)

VERSION_FILE = "VERSION"
DB_FILE = "db.json"
# What a version-0 folder (written before VERSION existed) may contain.
V0_ENTRIES = ("db.json", "db.json.bak", "messages", "greetings", "pins.json", "outbox", "mailq")


def _v0_to_v1(data_dir: Path) -> None:
    """Version 1 only adds VERSION: nothing to convert (the runner made db.json.v0)."""


MIGRATIONS: list[Callable[[Path], None]] = [_v0_to_v1]
CURRENT_VERSION = len(MIGRATIONS)


class DataVersionError(LineboxError):
    """The data folder cannot be used by this Linebox (newer, or VERSION damaged)."""


def read_version(data_dir: Path) -> int | None:
    """The folder's layout version: the number in VERSION, 0 for a folder written
    before VERSION existed, None for a new (missing or empty) folder."""
    data_dir = Path(data_dir)
    vfile = data_dir / VERSION_FILE
    try:
        with open(vfile, "rb") as f:
            text = f.read(64).decode("ascii")    # a version is a few digits
    except FileNotFoundError:
        if any((data_dir / name).exists() for name in V0_ENTRIES):
            return 0
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise DataVersionError(f"data folder {data_dir}: cannot read {VERSION_FILE}: {e}") from None
    text = text.strip()
    # ASCII digits only, and few: int() of 4,301 digits raises, of "٣" succeeds.
    if not (text.isascii() and text.isdigit() and len(text) <= 6):
        raise DataVersionError(
            f"data folder {data_dir}: {VERSION_FILE} is damaged ({text[:20]!r}); "
            f"write the folder's version number into it or restore a backup")
    return int(text)


def check(data_dir: Path) -> int | None:
    """Refuse a folder from a newer Linebox; return its version (None: new folder).
    Changes nothing on disk: for commands that only read beside a running daemon."""
    version = read_version(data_dir)
    if version is not None and version > CURRENT_VERSION:
        raise DataVersionError(
            f"data folder {Path(data_dir)} is from a newer Linebox (version {version}; "
            f"this one knows up to {CURRENT_VERSION}); upgrade Linebox or restore a backup")
    return version


def migrate(data_dir: Path) -> int:
    """Bring ``data_dir`` to :data:`CURRENT_VERSION` (creating it if missing) and return
    the version it had before (CURRENT_VERSION for a new folder). Run at start, before
    the store opens the folder."""
    data_dir = Path(data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        version = check(data_dir)
        if version is None:
            _write_version(data_dir, CURRENT_VERSION)
            return CURRENT_VERSION
        for n in range(version, CURRENT_VERSION):
            _backup_db(data_dir, n)
            MIGRATIONS[n](data_dir)
            _write_version(data_dir, n + 1)
            log.info("data folder %s: migrated from version %d to %d", data_dir, n, n + 1)
    except OSError as e:
        raise DataVersionError(f"data folder {data_dir}: {e.strerror or e}") from None
    return version


def _backup_db(data_dir: Path, version: int) -> None:
    db = data_dir / DB_FILE
    backup = data_dir / f"{DB_FILE}.v{version}"
    if not db.exists() or backup.exists():
        return
    write_file_atomic(backup, db.read_bytes())   # temp file, fsync, rename


def _write_version(data_dir: Path, version: int) -> None:
    write_file_atomic(data_dir / VERSION_FILE, f"{version}\n".encode("ascii"))
