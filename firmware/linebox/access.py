"""Administration that cannot break the service: who may write the data folder.

The daemon runs as the service user (``linebox``) and owns ``data_dir``. A command that
writes there (``linebox greeting``, ...) run with ``sudo`` would leave root-owned files
the daemon can no longer write, and the next call would fail. So such a command, run as
root while the folder belongs to another user, becomes that user first: its input files
are read as root (an administrator's WAV in a private home folder stays readable), then
it drops root (supplementary groups, group, user, in that order) before it opens
anything in the folder. Run as anyone else, it runs as that user, and a missing
permission is reported in one line naming the file, its owner and mode, and the fix.
"""

import grp
import io
import logging
import os
import pwd
import stat
from pathlib import Path

from linebox.errors import LineboxError

log = logging.getLogger(__name__)


class InputFile(io.BytesIO):
    """An input file read before root was dropped: a binary file object with the
    path's ``name`` (``read_wav`` and friends take it as they take a path)."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.name = name


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


_GROUP_BIT = {"read": stat.S_IRGRP, "write": stat.S_IWGRP, "enter": stat.S_IXGRP,
              "open": stat.S_IRGRP | stat.S_IWGRP}


def denied(path, action: str | None = None) -> str:
    """One line for a PermissionError on ``path``: what was refused (read, write, or
    entering a folder on the way), whose file it is, who we are, and what to do."""
    path = Path(path)
    me = _user(os.geteuid())
    # The first folder on the way we may not enter is what refused us.
    closed = next((p for p in reversed(path.parents) if p.exists() and not os.access(p, os.X_OK)),
                  None)
    if closed is not None:
        path, action = closed, "enter"
    try:
        st = path.stat()
    except OSError:
        st = None
    if action is None:
        exists = st is not None
        action = "write" if exists and os.access(path, os.R_OK) else ("read" if exists else "create")
        if not exists:                   # creating a file: its folder refused
            path = path.parent
            st = path.stat() if path.exists() else None
    if st is None:
        return f"cannot {action} {path}: permission denied (you are {me})"
    owner, group = _user(st.st_uid), _group(st.st_gid)
    where = f"{path} is {owner}:{group} {stat.filemode(st.st_mode)}"
    need = _GROUP_BIT.get(action if action != "create" else "write", 0)
    if st.st_mode & need and st.st_gid not in os.getgroups() and st.st_gid != os.getegid():
        hint = f"add yourself to the group {group} (sudo adduser {me} {group}, then log in again), or use sudo"
    elif st.st_uid not in (0, os.geteuid()):
        hint = f"run it as {owner}: sudo -u {owner} linebox ..."
    elif st.st_uid == 0 and os.geteuid() != 0 and path.parent.stat().st_uid == os.geteuid():
        # Left behind by a command run as root: it belongs to the service user.
        hint = f"it should be {me}'s like its folder: sudo chown -R {me}: {path}"
    else:
        hint = "use sudo"
    return f"cannot {action} {path}: permission denied ({where}; you are {me}: {hint})"


def require(folder, write: bool = False) -> None:
    """Check before touching the data folder that we may read it (and, with ``write``,
    write every folder in it), so that a missing permission is one line naming the
    first file refused rather than a failure halfway through."""
    folder = Path(folder)
    if not folder.exists():
        return                           # created by the store, where its parent allows
    if not os.access(folder, os.R_OK | os.X_OK):
        raise LineboxError(denied(folder, "enter" if not os.access(folder, os.X_OK) else "read"))
    for name in ("VERSION", "db.json", "pins.json"):
        f = folder / name
        if f.exists() and not os.access(f, os.R_OK):
            raise LineboxError(denied(f, "read"))
    if not write:
        return
    for d in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        if not os.access(d, os.W_OK | os.X_OK):
            raise LineboxError(denied(d, "write"))


def become_data_owner(data_dir, args, inputs: tuple[str, ...] = ()) -> str | None:
    """Run as the owner of ``data_dir`` if we are root and it belongs to someone else.

    The files named by ``args.<input>`` are read first (as root) and replaced by
    :class:`InputFile` objects. Returns the user we became, or None when nothing changed.
    """
    if os.geteuid() != 0:
        return None
    folder = Path(data_dir).absolute()
    # A folder not made yet belongs to whoever owns the folder it will be made in.
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    st = existing.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise LineboxError(f"data folder {folder}: {existing} is not a folder")
    if st.st_uid == 0:
        return None                      # a root-run appliance: root is its owner
    for name in inputs:
        value = getattr(args, name, None)
        if value is None or value == "-" or not isinstance(value, str | os.PathLike):
            continue
        try:
            data = Path(value).read_bytes()
        except OSError as e:
            raise LineboxError(f"{value}: cannot read: {e.strerror or e}") from None
        setattr(args, name, InputFile(data, os.fspath(value)))
    _drop_to(st.st_uid, st.st_gid)
    user = _user(st.st_uid)
    log.debug("running as %s, the owner of %s", user, folder)
    return user


def _drop_to(uid: int, gid: int) -> None:
    """Supplementary groups first (they need root), then the group, then the user; a
    user without a passwd entry keeps only the folder's group."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        entry = None
    if entry is not None:
        os.initgroups(entry.pw_name, entry.pw_gid)
        gid = entry.pw_gid
    else:
        os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    os.umask(0o027)                      # as the service's UMask: the group reads, no one else
    if entry is not None:
        os.environ["HOME"] = entry.pw_dir
    if os.getuid() == 0 or os.geteuid() == 0:       # setuid must be final
        raise LineboxError("could not give up root")
