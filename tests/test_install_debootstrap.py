"""scripts/install.sh from scratch on a bare Debian 12 (debootstrap minbase) root, in a
chroot, then again as an upgrade.

Slow and needs root and the network (Debian mirror and PyPI): it runs only with
``LINEBOX_SLOW_TESTS=1``. The bootstrapped root is cached as a tarball, and the .deb
and pip downloads in folders, under ``$LINEBOX_TEST_CACHE`` (default
/var/cache/linebox-test), so a rerun takes a few minutes at most.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linebox import __version__

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LINEBOX_TEST_CACHE", "/var/cache/linebox-test"))
SUITE = "bookworm"
BUDGET = 600.0          # seconds the whole test may take

pytestmark = [
    pytest.mark.skipif(os.environ.get("LINEBOX_SLOW_TESTS") != "1",
                       reason="slow (debootstrap, apt, pip): set LINEBOX_SLOW_TESTS=1"),
    pytest.mark.timeout(int(BUDGET) + 120),
]

CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}


def run(*cmd, check=True, timeout=BUDGET, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=check,
                          timeout=timeout, **kw)


def mirror() -> str:
    """The Debian mirror apt on this machine uses (the network may allow no other)."""
    texts = [p.read_text() for p in sorted(Path("/etc/apt").glob("sources.list*")) if p.is_file()]
    texts += [p.read_text() for p in sorted(Path("/etc/apt/sources.list.d").glob("*")) if p.is_file()]
    for text in texts:
        for m in re.finditer(r"(?:^deb\s+(?:\[[^\]]*\]\s+)?|^URIs:\s*)(\S+/debian)/?\s", text, re.M):
            return m.group(1)
    return "http://deb.debian.org/debian"


def base_tarball(log) -> Path:
    """A minbase Debian root, bootstrapped once and kept as a tarball."""
    arch = run("dpkg", "--print-architecture").stdout.strip()
    tarball = CACHE / f"{SUITE}-minbase-{arch}.tar.gz"
    if tarball.exists():
        return tarball
    if shutil.which("debootstrap") is None:
        run("apt-get", "install", "-y", "-q", "debootstrap")
    CACHE.mkdir(parents=True, exist_ok=True)
    build = CACHE / f"build-{os.getpid()}"
    try:
        t = time.monotonic()
        run("debootstrap", "--variant=minbase", SUITE, build, mirror())
        run("tar", "-C", build, "-czf", f"{tarball}.tmp", ".")
        os.replace(f"{tarball}.tmp", tarball)
        log(f"debootstrap + tarball: {time.monotonic() - t:.0f} s")
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return tarball


def mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve())
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


class Chroot:
    """A root to chroot into, with /proc, /dev and the download caches mounted; every
    mount is undone in ``close`` (and the root deleted only once none is left)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounted: list[Path] = []

    def mount(self, *args, target: str) -> None:
        point = self.root / target.lstrip("/")
        point.mkdir(parents=True, exist_ok=True)
        run("mount", *args, point)
        self.mounted.append(point)

    def open(self) -> None:
        self.mount("-t", "proc", "proc", target="/proc")
        self.mount("--bind", "/dev", target="/dev")
        self.mount("--bind", "/dev/pts", target="/dev/pts")
        self.mount("-t", "sysfs", "sysfs", target="/sys")
        debs = CACHE / "apt-archives"
        (debs / "partial").mkdir(parents=True, exist_ok=True)
        self.mount("--bind", debs, target="/var/cache/apt/archives")
        (CACHE / "pip").mkdir(parents=True, exist_ok=True)
        self.mount("--bind", CACHE / "pip", target="/root/.cache/pip")
        shutil.copy("/etc/resolv.conf", self.root / "etc/resolv.conf")
        # This machine's own trust anchors (a TLS-inspecting proxy on the way to PyPI):
        # update-ca-certificates adds them when install.sh installs ca-certificates.
        local_cas = Path("/usr/local/share/ca-certificates")
        if local_cas.is_dir():
            shutil.copytree(local_cas, self.root / "usr/local/share/ca-certificates", dirs_exist_ok=True)
        # Never start a service inside the chroot.
        policy = self.root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)

    def __call__(self, *cmd, check=True, timeout=BUDGET):
        return subprocess.run(["chroot", str(self.root), *map(str, cmd)], capture_output=True,
                              text=True, check=check, timeout=timeout, env=CHROOT_ENV)

    def close(self) -> None:
        for point in reversed(self.mounted):
            if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)
        self.mounted.clear()
        left = mounts_under(self.root)
        if left:   # never rm -rf through a bind mount of the host's /dev
            raise RuntimeError(f"still mounted, {self.root} kept: {left}")
        shutil.rmtree(self.root)


def copy_tree(dest: Path) -> None:
    """The working tree as it is (uncommitted changes too), without build debris."""
    dest.mkdir(parents=True)
    excludes = [f"--exclude={p}" for p in ("./.venv", "./.git", "*.egg-info", "__pycache__",
                                           ".pytest_cache", ".ruff_cache", "./build", "./dist")]
    tar = subprocess.Popen(["tar", "-C", str(ROOT), *excludes, "-cf", "-", "."], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-C", str(dest), "-xf", "-"], stdin=tar.stdout, check=True)
    assert tar.wait() == 0


def passwd_entry(root: Path, name: str) -> list[str] | None:
    for line in (root / "etc/passwd").read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    return None


def group_members(root: Path) -> dict[str, tuple[int, set[str]]]:
    out = {}
    for line in (root / "etc/group").read_text().splitlines():
        name, _, gid, members = line.split(":")
        out[name] = (int(gid), set(filter(None, members.split(","))))
    return out


@pytest.fixture
def chroot(tmp_path):
    timings = []
    t0 = time.monotonic()
    tarball = base_tarball(timings.append)
    root = tmp_path / "root"
    root.mkdir()
    run("tar", "-C", root, "-xzf", tarball)
    c = Chroot(root)
    c.timings = timings
    c.t0 = t0
    try:
        c.open()
        yield c
    finally:
        c.close()


def test_install_from_scratch_in_a_bare_debian_root_then_upgrade(chroot):
    root = chroot.root
    timings = chroot.timings
    copy_tree(root / "usr/src/linebox")

    def step(name, *cmd):
        t = time.monotonic()
        r = chroot(*cmd, check=False)
        timings.append(f"{name}: {time.monotonic() - t:.0f} s")
        assert r.returncode == 0, f"{name} failed:\n{r.stdout}\n{r.stderr}"
        return r

    # -- first install: Debian packages, user, venv, units, example configuration
    first = step("install.sh (first)", "/usr/src/linebox/scripts/install.sh", "--no-systemctl")
    assert "example configuration installed as /etc/linebox/linebox.toml" in first.stdout
    assert "linebox.service enabled (no systemctl" in first.stdout

    assert chroot("/opt/linebox/venv/bin/linebox", "--version").stdout == f"linebox {__version__}\n"
    assert chroot("linebox", "--version").stdout == f"linebox {__version__}\n"   # /usr/local/bin
    check = chroot("linebox", "config", "check", "--config", "/etc/linebox/linebox.toml")
    # The same verdict as this tree gives on the same file (its wording is not ours).
    here = run(sys.executable, "-m", "linebox", "config", "check", "--config",
               root / "usr/src/linebox/examples/linebox.toml")
    assert check.stdout == here.stdout and "2 lines, 3 boxes" in check.stdout
    # Every runtime dependency imports from the appliance's environment.
    chroot("/opt/linebox/venv/bin/python", "-c", "import alsaaudio, serial, tinydb, paho.mqtt")
    # ... and no test tool does: the appliance gets runtime needs only.
    chroot("/opt/linebox/venv/bin/python", "-c", "import importlib.util as u, sys; "
           "sys.exit(any(u.find_spec(m) for m in ('pytest', 'aiosmtpd', 'ruff')))")
    for tool in ("mosquitto", "minimodem", "shellcheck", "sox"):
        assert chroot("sh", "-c", f"command -v {tool} || true").stdout == "", tool

    # The static user and its groups (gpio created: plain Debian has none).
    user = passwd_entry(root, "linebox")
    assert user is not None and user[5:] == ["/var/lib/linebox", "/usr/sbin/nologin"]
    groups = group_members(root)
    for g in ("gpio", "audio", "dialout", "plugdev"):
        assert "linebox" in groups[g][1], g
    linebox_gid = groups["linebox"][0]

    # Units, rules and the folders, where and how the service expects them.
    for installed, source in [("usr/lib/systemd/system/linebox.service", "systemd/linebox.service"),
                              ("usr/lib/sysusers.d/linebox.conf", "systemd/linebox.sysusers"),
                              ("etc/udev/rules.d/90-linebox-modem.rules", "systemd/90-linebox-modem.rules"),
                              ("etc/linebox/linebox.toml", "examples/linebox.toml")]:
        assert (root / installed).read_bytes() == (ROOT / source).read_bytes(), installed
    wants = root / "etc/systemd/system/multi-user.target.wants/linebox.service"
    assert os.readlink(wants) == "/usr/lib/systemd/system/linebox.service"
    conf = (root / "etc/linebox").stat()
    assert (conf.st_uid, conf.st_gid, oct(conf.st_mode & 0o777)) == (0, linebox_gid, "0o750")
    toml = (root / "etc/linebox/linebox.toml").stat()
    assert (toml.st_uid, toml.st_gid, oct(toml.st_mode & 0o777)) == (0, linebox_gid, "0o640")
    data = (root / "var/lib/linebox").stat()
    assert (data.st_uid, data.st_gid) == (int(user[2]), linebox_gid)
    assert (root / "etc/linebox/UNCONFIGURED").exists()
    assert os.readlink(root / "etc/motd.d/linebox") == "/etc/linebox/UNCONFIGURED"

    # systemd itself (installed in the root by install.sh) finds nothing wrong.
    verify = step("systemd-analyze verify", "systemd-analyze", "verify",
                  "/usr/lib/systemd/system/linebox.service")
    assert verify.stderr == "" and verify.stdout == ""
    # ... and would say so: the same unit with one bad value does not pass unnoticed.
    broken = (root / "usr/lib/systemd/system/linebox.service").read_text().replace(
        "Type=notify", "Type=notfy")
    (root / "tmp/linebox.service").write_text(broken)
    bad = chroot("systemd-analyze", "verify", "/tmp/linebox.service", check=False)
    assert "Failed to parse service type, ignoring: notfy" in bad.stderr

    # -- upgrade: the admin configured the box; a newer tree is installed over it
    first_venv = os.readlink(root / "opt/linebox/venv")
    configured = (root / "etc/linebox/linebox.toml").read_text().replace('id = "office"', 'id = "frontdesk"')
    (root / "etc/linebox/linebox.toml").write_text(configured)
    (root / "etc/linebox/UNCONFIGURED").unlink()
    (root / "var/lib/linebox/db.json").write_text('{"messages": {}}')
    # The upgrade comes as a wheel this time (the other kind of SOURCE).
    step("pip wheel", "/opt/linebox/venv/bin/python", "-m", "pip", "wheel", "-q", "--no-deps",
         "--wheel-dir", "/tmp/wheels", "/usr/src/linebox")
    wheel = f"/tmp/wheels/linebox-{__version__}-py3-none-any.whl"
    assert (root / wheel.lstrip("/")).is_file()
    second = step("install.sh (upgrade)", "/usr/src/linebox/scripts/install.sh", "--no-systemctl", wheel)
    assert f"installing linebox-{__version__}-py3-none-any.whl and its dependencies" in second.stdout
    assert "keeping the configuration in /etc/linebox" in second.stdout
    assert "not configured" not in second.stdout
    assert (root / "etc/linebox/linebox.toml").read_text() == configured
    assert not (root / "etc/linebox/UNCONFIGURED").exists()
    assert (root / "var/lib/linebox/db.json").read_text() == '{"messages": {}}'
    second_venv = os.readlink(root / "opt/linebox/venv")
    assert second_venv != first_venv
    assert sorted(p.name for p in (root / "opt/linebox/venvs").iterdir()) == sorted(
        [Path(first_venv).name, Path(second_venv).name])          # one kept for a rollback
    assert chroot("linebox", "--version").stdout == f"linebox {__version__}\n"

    total = time.monotonic() - chroot.t0
    timings.append(f"total: {total:.0f} s")
    print("\n" + "\n".join(timings))
    assert total < BUDGET, timings

