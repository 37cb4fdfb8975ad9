"""The data folder as a resource: one writer at a time, and room left on its disk.

Two processes writing one folder handed out the same message ids and lost messages, so
the store takes an exclusive ``flock`` on ``data_dir/lock`` (released by the kernel
when the process dies, so a kill never leaves a stale lock) and writes its pid there;
a second writer is refused with one line naming that pid. Readers (``linebox
messages``) take no lock: the database file is only ever replaced whole.
"""

import errno
import fcntl
import os
import shutil
from pathlib import Path

from linebox.voicemail.storebase import StoreError

LOCK_FILE = "lock"
# Refuse to start a recording with less than this free: the longest message (3600 s
# at 16 kB/s is 58 MB, the default 180 s is 2.9 MB) should not be the one that fills
# the disk, and the database must always find room for the write that saves it.
RESERVE_BYTES = 16 * 1024 * 1024
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


class FolderInUse(StoreError):
    """Another process has the data folder open for writing."""


class FolderReadOnly(StoreError):
    """The data folder cannot be written (a read-only mount, wrong owner)."""


class FolderLock:
    """The exclusive writer's lock on one data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if e.errno in READ_ONLY_ERRNOS:
                raise FolderReadOnly(f"data folder {self.path.parent} is not writable: "
                                     f"{e.strerror}") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise FolderInUse(f"data folder {self.path.parent} is in use by another Linebox "
                              f"(pid {holder or 'unknown'}); stop it first") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as e:
            os.close(fd)
            if e.errno in READ_ONLY_ERRNOS:
                raise FolderReadOnly(f"data folder {self.path.parent} is not writable: "
                                     f"{e.strerror}") from None
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)              # closing drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_pid(fd: int) -> str | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return text if text.isdigit() else None


def free_bytes(folder: Path) -> int:
    """Bytes free for this process on the disk of ``folder`` (0 if it cannot be told)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0
