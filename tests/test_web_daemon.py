"""`linebox run` serves the portal from inside the daemon: plain HTTP, and HTTPS with
`tls_cert`/`tls_key` (a self-signed certificate made by openssl for the test)."""

import json
import shutil
import signal
import ssl
import subprocess
import time
import tomllib
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
