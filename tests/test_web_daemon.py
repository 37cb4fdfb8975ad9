"""`linebox run` serves the portal from inside the daemon: plain HTTP, and HTTPS with
`tls_cert`/`tls_key` (a self-signed certificate made by openssl for the test)."""

import json
import shutil
import signal
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request

import pytest

from daemonkit import linebox_run, modem_config
from linebox.config import parse_config
from linebox.run import Daemon
from linebox.voicemail.pins import hash_pin
from modem_emulator import ModemEmulator
from test_web_cli import _free_port


def _config(tmp_path, port, web_port, tls=""):
    return modem_config(tmp_path / "data", port, box=f'pin_hash = "{hash_pin("2580")}"',
                        more=f'[web]\nlisten = "127.0.0.1:{web_port}"\n{tls}\n')


def test_linebox_run_serves_the_portal_and_stops_it_on_sigterm(tmp_path):
    web_port = _free_port()
    with ModemEmulator("usr", tmp_path / "ttyModem") as emu:
        cfg = tmp_path / "linebox.toml"
        cfg.write_text(_config(tmp_path, emu.path, web_port))
        with linebox_run(cfg) as proc:
            deadline = time.monotonic() + 30
            page = None
            while page is None and time.monotonic() < deadline:
                try:
                    page = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/login", timeout=5).read()
                except OSError:
                    time.sleep(0.2)
            assert page is not None and b"data-insecure" in page
            req = urllib.request.Request(f"http://127.0.0.1:{web_port}/api/v1/login", method="POST",
                                         data=json.dumps({"box": "100", "pin": "2580"}).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                assert json.loads(r.read())["ok"] is True
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        out = proc.stdout.read().decode()
        assert f"web portal at http://127.0.0.1:{web_port}/" in out


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_with_tls_the_portal_is_https_with_secure_cookies(tmp_path, monkeypatch):
    from linebox.hw.line import SILENT_FRAME, Line, Tick

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    web_port = _free_port()
    text = _config(tmp_path, "/dev/null", web_port, f'tls_cert = "{cert}"\ntls_key = "{key}"')
    cfg = parse_config(tomllib.loads(text), str(tmp_path / "linebox.toml"))

    class Quiet(Line):
        def tick(self, out=None):
            time.sleep(0.02)
            return Tick(SILENT_FRAME)

    monkeypatch.setattr("linebox.run.make_line", lambda c, pins: Quiet(1))
    daemon = Daemon(cfg)
    daemon.start()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        page = urllib.request.urlopen(f"https://127.0.0.1:{web_port}/login", context=ctx, timeout=10).read()
        assert b"Log in" in page and b"data-insecure" not in page
        req = urllib.request.Request(f"https://127.0.0.1:{web_port}/api/v1/login", method="POST",
                                     data=json.dumps({"box": "100", "pin": "2580"}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            cookie = r.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie
    finally:
        daemon.stop()


def _quiet_daemon(tmp_path, monkeypatch, web_port):
    from linebox.hw.line import SILENT_FRAME, Line, Tick

    text = _config(tmp_path, "/dev/null", web_port)
    cfg = parse_config(tomllib.loads(text), str(tmp_path / "linebox.toml"))

    class Quiet(Line):
        def tick(self, out=None):
            time.sleep(0.02)
            return Tick(SILENT_FRAME)

    monkeypatch.setattr("linebox.run.make_line", lambda c, pins: Quiet(1))
    return Daemon(cfg)


def _login(web_port) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{web_port}/api/v1/login", method="POST",
                                 data=json.dumps({"box": "100", "pin": "2580"}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _gone(pid: int, timeout: float = 15.0) -> bool:
    import os
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[-1].startswith("Z"):
                    return True            # a zombie: ended, not yet reaped
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return not os.path.exists(f"/proc/{pid}")


def test_the_portal_runs_in_its_own_process_and_is_restarted_when_it_dies(tmp_path, monkeypatch):
    import os

    web_port = _free_port()
    daemon = _quiet_daemon(tmp_path, monkeypatch, web_port)
    daemon.start()
    try:
        pid = daemon.web.pid
        assert pid is not None and pid != os.getpid()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert b"linebox.web.child" in f.read()
        assert _login(web_port)["ok"] is True
        daemon.check_web()
        assert daemon.web.pid == pid and daemon.web_restarts == 0     # alive: left alone
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while daemon.web.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not daemon.web.alive()
        assert daemon.healthy()                  # the lines go on: a portal fault is not theirs
        daemon.check_web()
        assert daemon.web_restarts == 1 and daemon.web.pid not in (None, pid)
        assert _login(web_port)["ok"] is True    # the same address serves again
    finally:
        child = daemon.web.pid
        daemon.stop()
    assert _gone(child), "the portal process ends with the daemon"


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_the_portal_process_ends_when_the_daemon_is_killed(tmp_path):
    web_port = _free_port()
    with ModemEmulator("usr", tmp_path / "ttyModem") as emu:
        cfg = tmp_path / "linebox.toml"
        cfg.write_text(_config(tmp_path, emu.path, web_port))
        proc = subprocess.Popen([sys.executable, "-m", "linebox", "run", "--config", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            children = []
            while time.monotonic() < deadline:
                try:
                    if _login(web_port)["ok"]:
                        children = [c for c in _children(proc.pid) if b"linebox.web.child" in _cmdline(c)]
                        break
                except OSError:
                    time.sleep(0.2)
            assert len(children) == 1
            proc.kill()                      # no stop(): the channel closes with the process
            proc.wait(timeout=10)
            assert _gone(children[0]), "an orphaned portal would keep the port and the data folder"
        finally:
            if proc.poll() is None:
                proc.kill()


def test_a_session_survives_a_restart_of_linebox_run(tmp_path):
    web_port = _free_port()
    with ModemEmulator("usr", tmp_path / "ttyModem") as emu:
        cfg = tmp_path / "linebox.toml"
        cfg.write_text(_config(tmp_path, emu.path, web_port))

        def start():
            proc = subprocess.Popen([sys.executable, "-m", "linebox", "run", "--config", str(cfg)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{web_port}/login", timeout=5).read()
                    return proc
                except OSError:
                    time.sleep(0.2)
            proc.kill()
            raise AssertionError("linebox run did not serve the portal")

        def boxes(cookie):
            req = urllib.request.Request(f"http://127.0.0.1:{web_port}/api/v1/boxes", headers={"Cookie": cookie})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        proc = start()
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{web_port}/api/v1/login", method="POST",
                                         data=json.dumps({"box": "100", "pin": "2580"}).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                cookie = r.headers["Set-Cookie"].split(";")[0]
            assert boxes(cookie) == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
            proc = start()
            assert boxes(cookie) == 200                      # still logged in after the restart
            assert boxes("linebox_sid=forged") == 401
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
