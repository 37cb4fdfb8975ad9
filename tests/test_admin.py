"""Administration that cannot break the service: `sudo linebox greeting` leaves the data
folder owned by the service user, and a user without access gets one line saying which
permission is missing. The tests run as root: the "service user" is a throwaway uid."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from linebox.dsp import gen
from linebox.wavfile import write_wav

OWNER = 54321          # the service user of these tests (no passwd entry)
STRANGER = 54322       # an administrator who is neither root nor the owner

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to own files as others)")

CONFIG = """
[device]
data_dir = "{data}"
[[line]]
id = 1
driver = "sim"
route = "100"
[[box]]
number = "100"
pin_required = false
"""


@pytest.fixture
def site():
    """A folder every user may enter (pytest's own tmp folders are root's alone): the
    config, world-readable, and the data folder, owned by OWNER, mode 0750."""
    top = Path(tempfile.mkdtemp(prefix="linebox-admin-"))
    top.chmod(0o755)
    data = top / "data"
    data.mkdir(mode=0o750)
    os.chown(data, OWNER, OWNER)
    cfg = top / "linebox.toml"
    cfg.write_text(CONFIG.format(data=data))
    cfg.chmod(0o644)
    yield top, cfg, data
    shutil.rmtree(top)


def _wav(folder: Path) -> Path:
    """A greeting in root's private folder: only root can read it."""
    private = folder / "root-only"
    private.mkdir(mode=0o700)
    path = private / "greet.wav"
    write_wav(path, gen.tone(440, 1.0, -10.0))
    path.chmod(0o600)
    return path


def _owners(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_uid, p.stat().st_gid)
            for p in [folder, *folder.rglob("*")]}


def _world_usable(path: Path) -> bool:
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in Path(path).resolve().parents)


# Once it has dropped root, `linebox` imports as the owner; an interpreter in root's
# home (pyenv, on this test machine) is closed to other users: use the system's then,
# with this test run's import path (on a Pi, /opt/linebox/venv is open to all).
PYTHON = sys.executable if _world_usable(Path(sys.executable)) else "/usr/bin/python3"
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": os.pathsep.join(
    p for p in sys.path if p and os.path.isdir(p) and _world_usable(Path(p) / "x")
    and "site-packages" in p or p.endswith("firmware"))}


def _linebox(*args, uid=None) -> subprocess.CompletedProcess:
    """`linebox ARGS`, as root, or as ``uid`` (no supplementary groups)."""
    def become():
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return subprocess.run([PYTHON, "-m", "linebox", *map(str, args)], capture_output=True,
                          timeout=60, env=ENV, cwd="/", preexec_fn=None if uid is None else become)


def _as(uid: int, *args) -> subprocess.CompletedProcess:
    return _linebox(*args, uid=uid)


def test_sudo_greeting_runs_as_the_data_folder_owner(site):
    top, cfg, data = site
    res = _linebox("greeting", "100", _wav(top), "--config", cfg)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout.decode() == "box 100: greeting set (1.0 s)\n"
    owners = _owners(data)
    assert "greetings" in owners and any(k.startswith("greetings/") for k in owners)
    assert set(owners.values()) == {(OWNER, OWNER)}, owners
    # Made with the service's umask (0027): its group may read, others nothing.
    assert all(p.stat().st_mode & 0o007 == 0 for p in (data / "greetings").iterdir())
    # ... so the service user can change it again itself, and so can root, later.
    res = _as(OWNER, "greeting", "100", "--clear", "--config", cfg)
    assert res.returncode == 0, res.stderr.decode()
    res = _linebox("greeting", "100", "--clear", "--config", cfg)
    assert res.returncode == 0, res.stderr.decode()
    assert set(_owners(data).values()) == {(OWNER, OWNER)}


def test_a_data_folder_not_made_yet_belongs_to_the_owner_of_its_parent(site):
    top, cfg, data = site
    cfg.write_text(CONFIG.format(data=data / "box"))
    assert _linebox("greeting", "100", _wav(top), "--config", cfg).returncode == 0
    assert set(_owners(data).values()) == {(OWNER, OWNER)}
    assert (data / "box" / "greetings").is_dir()


def test_messages_as_another_user_says_which_permission_is_missing(site):
    top, cfg, data = site
    assert _linebox("greeting", "100", "--clear", "--config", cfg).returncode == 0
    res = _as(STRANGER, "messages", "--config", cfg)
    assert res.returncode == 2
    mode = stat.filemode(data.stat().st_mode)
    assert res.stderr.decode() == (
        f"linebox: error: cannot enter {data}: permission denied ({data} is {OWNER}:{OWNER} "
        f"{mode}; you are {STRANGER}: add yourself to the group {OWNER} (sudo adduser "
        f"{STRANGER} {OWNER}, then log in again), or use sudo)\n")


def test_a_greeting_by_a_user_who_cannot_write_is_one_line_not_a_traceback(site):
    top, cfg, data = site
    assert _linebox("greeting", "100", _wav(top), "--config", cfg).returncode == 0
    data.chmod(0o755)                   # the stranger may look, not write
    for p in data.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    res = _as(STRANGER, "greeting", "100", "--clear", "--config", cfg)
    assert res.returncode == 2
    assert res.stderr.decode() == (
        f"linebox: error: cannot write {data}: permission denied ({data} is {OWNER}:{OWNER} "
        f"drwxr-xr-x; you are {STRANGER}: run it as {OWNER}: sudo -u {OWNER} linebox ...)\n")
    assert (data / "greetings" / "100.wav").exists() or any((data / "greetings").iterdir())


def test_root_owned_leftovers_are_named_with_the_chown_that_fixes_them(site):
    """What an older `sudo linebox greeting` left behind: the service user is told."""
    top, cfg, data = site
    assert _linebox("greeting", "100", "--clear", "--config", cfg).returncode == 0
    os.chown(data / "greetings", 0, 0)
    res = _as(OWNER, "greeting", "100", "--clear", "--config", cfg)
    assert res.returncode == 2
    g = data / "greetings"
    assert res.stderr.decode() == (
        f"linebox: error: cannot write {g}: permission denied ({g} is root:root {stat.filemode(g.stat().st_mode)}; "
        f"you are {OWNER}: it should be {OWNER}'s like its folder: sudo chown -R {OWNER}: {g})\n")


def test_config_check_says_the_config_is_unreadable_and_why(site):
    top, cfg, data = site
    cfg.chmod(0o640)
    os.chown(cfg, 0, OWNER)
    res = _as(STRANGER, "config", "check", "--config", cfg)
    assert res.returncode == 2
    assert res.stderr.decode() == (
        f"linebox: error: config: cannot read {cfg}: permission denied ({cfg} is root:{OWNER} "
        f"-rw-r-----; you are {STRANGER}: add yourself to the group {OWNER} (sudo adduser "
        f"{STRANGER} {OWNER}, then log in again), or use sudo)\n")
