"""Real SIP peers for the SIP tests: `linebox run` with a SIP-only configuration, and
Debian's baresip 1.0.0 scripted through its ctrl_tcp module (JSON in netstrings:
``{"command": "dial", "params": "..."}``, events back as ``{"event": true, "type": ...}``).
"""

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from linebox.sip.auth import ha1
from linebox.voicemail.pins import hash_pin

REALM = "office"
PASSWORDS = {"201": "alice-secret", "202": "bob-secret"}
PIN = "4321"           # the same as simkit's, so one data folder serves both


_GIVEN: set[int] = set()


def free_port(kind=socket.SOCK_DGRAM) -> int:
    """A port free for both UDP and TCP on 127.0.0.1, never one handed out before in this
    run (two peers started together must not get the same one)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                if port in _GIVEN or port + 1 in _GIVEN or port - 1 in _GIVEN:
                    continue            # (RTP uses the port above for RTCP)
                _GIVEN.add(port)
                return port
    raise RuntimeError("no free port")


def write_config(tmp: Path, port: int, unsolicited=False, extra="") -> Path:
    """A SIP-only Linebox (no [[line]]): box 100 with a PIN, box 101 without, two phones."""
    data = tmp / "data"
    cfg = tmp / "linebox.toml"
    exts = ""
    for n, name, boxes in (("201", "Alice", '["100"]'), ("202", "Bob", '["100", "101"]')):
        exts += (f'[[extension]]\nnumber = "{n}"\nname = "{name}"\nha1 = "{ha1(n, REALM, PASSWORDS[n])}"\n'
                 f'mailboxes = {boxes}\nunsolicited_mwi = {"true" if unsolicited else "false"}\n\n')
    cfg.write_text(f"""
[device]
id = "office"
data_dir = "{data}"

[[box]]
number = "100"
name = "Main office"
pin_hash = "{hash_pin(PIN)}"

[[box]]
number = "101"
name = "Sales"
pin_required = false

[sip]
listen = "127.0.0.1:{port}"
realm = "{REALM}"

{exts}
{extra}
""")
    return cfg


class Events:
    """The bus events of an in-process daemon, as they arrive (from any thread)."""

    def __init__(self, bus) -> None:
        self.all: list[dict] = []
        self._lock = threading.Lock()
        bus.subscribe(self._add)

    def _add(self, ev: dict) -> None:
        with self._lock:
            self.all.append(ev)

    def of(self, kind: str, **match) -> list[dict]:
        with self._lock:
            return [e for e in self.all if e.get("event") == kind
                    and all(e.get(k) == v for k, v in match.items())]

    def wait(self, kind: str, timeout: float = 15.0, pump=None, after: int = 0, **match) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = self.of(kind, **match)[after:]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no {kind} {match} in {timeout} s; events: "
                                     f"{[e for e in self.all if not e['event'].startswith('_')][-30:]}")
            if pump is not None:
                pump(0.05)
            else:
                time.sleep(0.05)


class SipDaemon:
    """`linebox run`'s Daemon in this process (SIP-only config), with its events."""

    def __init__(self, cfg_path: Path) -> None:
        from linebox.config import load_config
        from linebox.run import Daemon

        self.daemon = Daemon(load_config(cfg_path))
        self.events = Events(self.daemon.app.bus)
        self.daemon.start()
        self.port = self.daemon.sip.port

    @property
    def store(self):
        return self.daemon.app.store

    def stop(self) -> None:
        self.daemon.stop()


class LineboxRun:
    """`linebox run --config C` in a subprocess, its log collected."""

    def __init__(self, cfg: Path, port: int) -> None:
        self.cfg = cfg
        self.port = port
        self.log_path = cfg.parent / "run.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "linebox", "--log-level", "debug", "run",
                                      "--config", str(cfg)],
                                     stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while "listening on" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"linebox run did not start:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class Baresip:
    """One baresip phone: ``source`` is the WAV it speaks (aufile), what it hears is
    written by sndfile into ``snd_dir`` as ``dump-*-dec.wav``.

    baresip 1.0.0's sndfile cuts its file names at a fixed length (under pytest-xdist's
    long temporary paths the name lost its ``-dec.wav`` and the two directions wrote one
    file), so the recordings go to a short folder under /tmp, removed at exit."""

    def __init__(self, tmp: Path, ext: str, password: str, server_port: int, source: Path,
                 transport: str = "udp", mwi: bool = False, answer: bool = False) -> None:
        self.dir = tmp / f"baresip-{ext}-{os.getpid()}-{time.monotonic_ns()}"
        self.dir.mkdir()
        self.snd_dir = Path(tempfile.mkdtemp(prefix="bsnd-", dir="/tmp"))
        atexit.register(shutil.rmtree, self.snd_dir, True)
        self.ctrl_port = free_port(socket.SOCK_STREAM)
        sip_port = free_port()
        mods = "/usr/lib/baresip/modules"
        (self.dir / "config").write_text(f"""
poll_method epoll
sip_listen 127.0.0.1:{sip_port}
audio_player alsa,null
audio_source aufile,{source}
audio_alert alsa,null
module_path {mods}
module g711.so
module aufile.so
module alsa.so
module sndfile.so
module_app account.so
module_app menu.so
{"module_app mwi.so" if mwi else ""}
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}
snd_path {self.snd_dir}
audio_txmode thread
""")
        tp = ";transport=tcp" if transport == "tcp" else ""
        account = (f"<sip:{ext}@127.0.0.1:{server_port}{tp}>;auth_pass={password};regint=600"
                   f"{';answermode=auto' if answer else ''}")
        # baresip 1.0.0's mwi module (modules/mwi/mwi.c) starts a 1 ms timer at load whose
        # handler walks its list of subscriptions calling mwi_subscribe() for each, and
        # mwi_subscribe() appends to that same list: if the first REGISTER's 200 came in
        # before that timer ran (a fast registrar, or a loaded machine where module loading
        # outlasts the round trip; re's main loop serves sockets before timers) the list is
        # not empty, the walk never ends and baresip SUBSCRIBEs in a tight loop forever.
        # So an MWI phone starts without an account and gets it over ctrl_tcp ("uanew")
        # once its main loop runs, by when the timer has fired on an empty list.
        self.deferred_account = account if mwi else None
        (self.dir / "accounts").write_text("" if mwi else account + "\n")
        (self.dir / "contacts").write_text("")
        self.log_path = self.dir / "baresip.log"
        self.proc = subprocess.Popen(["baresip", "-f", str(self.dir)], stdin=subprocess.DEVNULL,
                                     stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT)
        self.events: list[dict] = []
        self._buf = b""
        deadline = time.monotonic() + 10
        while True:
            try:
                self.ctrl = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
                if self.ctrl.getsockname() != self.ctrl.getpeername():
                    break
                # A TCP self-connect: retrying towards an ephemeral port before baresip
                # listens, the kernel may pick that very port as our source.
                self.ctrl.close()
                raise OSError("self-connect")
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"baresip did not start:\n{self.log()}") from None
                time.sleep(0.1)
        if self.deferred_account:
            self.command("uanew", self.deferred_account)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def command(self, command: str, params: str = "") -> None:
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.ctrl.sendall(str(len(body)).encode() + b":" + body + b",")

    def _read(self, timeout: float) -> None:
        self.ctrl.settimeout(timeout)
        try:
            chunk = self.ctrl.recv(65536)
        except TimeoutError:
            return
        if not chunk:
            raise RuntimeError("baresip closed its control socket")
        self._buf += chunk
        while True:
            colon = self._buf.find(b":")
            if colon < 0:
                return
            n = int(self._buf[:colon])
            if len(self._buf) < colon + 1 + n + 1:
                return
            self.events.append(json.loads(self._buf[colon + 1:colon + 1 + n]))
            self._buf = self._buf[colon + 2 + n:]

    def _wait(self, match, what: str, timeout: float, after: int) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events[after:]:
                if match(ev):
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} from baresip in {timeout} s; got "
                                     f"{[e.get('type') for e in self.events]}\n{self.log()[-3000:]}")
            self._read(min(left, 0.5))

    def wait_event(self, kind: str, timeout: float = 10.0, after: int = 0) -> dict:
        """The first event of type ``kind`` (from index ``after``), waiting up to ``timeout``."""
        return self._wait(lambda ev: ev.get("event") and ev.get("type") == kind, kind, timeout, after)

    def wait_response(self, token: str, timeout: float = 10.0, after: int = 0) -> dict:
        """ctrl_tcp's response to the command sent with ``token`` (commands are sent with
        their name as token)."""
        return self._wait(lambda ev: ev.get("response") and ev.get("token") == token,
                          f"response to {token}", timeout, after)

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        """Wait until baresip's own log shows ``text`` (events sent before the control
        connection was up, like the first registration, are only there)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                import faulthandler
                faulthandler.dump_traceback(all_threads=True)
                raise AssertionError(f"baresip never logged {text!r}:\n{self.log()[-3000:]}")
            self.pump(0.1)
        return self.log()

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read(max(0.01, min(0.2, deadline - time.monotonic())))

    def recordings(self, wait: float = 10.0) -> list[Path]:
        """What the phone recorded (sndfile's decoded side), waiting up to ``wait``
        seconds for it to appear on a busy machine."""
        deadline = time.monotonic() + wait
        while True:
            found = sorted(self.snd_dir.glob("dump-*-dec.wav"))
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.1)

    def close(self) -> None:
        try:
            self.command("quit")
        except OSError:
            pass
        try:
            self.proc.wait(timeout=15)       # sndfile closes its WAVs on the way out
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.ctrl.close()
