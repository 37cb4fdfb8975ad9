"""Writing files so that a crash or a power cut never leaves half of one: a temp file in
the same folder, flushed and fsynced, renamed over the target, then the folder fsynced."""

import os
import secrets
import time
from pathlib import Path


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make renames and new names in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: str | os.PathLike, blob: bytes) -> None:
    """Replace ``path`` by ``blob`` (the new file honours the umask)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def move_aside(path: Path, tag: str) -> Path:
    """Rename ``path`` to ``<path>.<tag>-<UTC timestamp>`` (never over another file)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.{tag}-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{tag}-{stamp}-{n}")
    os.replace(path, target)
    fsync_dir(path.parent)
    return target
