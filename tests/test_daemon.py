"""`linebox run`, the daemon: systemd notifications over a real AF_UNIX socket, a clean
stop on SIGTERM, and the health check that feeds the watchdog."""

import signal
import socket
import threading
import time
import tomllib

from daemonkit import linebox_run, modem_config
from linebox import FRAME
from linebox.config import parse_config
from linebox.hw.line import SILENT_FRAME, Line, Tick
from linebox.run import Daemon
from modem_emulator import ModemEmulator


def _datagrams(sock, until, timeout=30.0):
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if until(got):
            return got
    raise AssertionError(f"notifications so far: {got}")


def test_run_notifies_systemd_feeds_the_watchdog_and_stops_cleanly(tmp_path):
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    with ModemEmulator("usr", tmp_path / "ttyModem") as emu:
        cfg = tmp_path / "linebox.toml"
        cfg.write_text(modem_config(tmp_path / "data", emu.path))
        env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "2000000", "PATH": "/usr/bin:/bin"}
        with linebox_run(cfg, env=env) as proc:
            got = _datagrams(sock, lambda g: any("READY=1" in d for d in g))
            ready = next(d for d in got if "READY=1" in d)
            assert "STATUS=1 line idle, no new messages" in ready
            got = _datagrams(sock, lambda g: sum("WATCHDOG=1" in d for d in g) >= 2)
            proc.send_signal(signal.SIGTERM)
            got = _datagrams(sock, lambda g: any("STOPPING=1" in d for d in g))
            assert proc.wait(timeout=20) == 0
        out = proc.stdout.read().decode()
        assert "<6>linebox.run: running: 1 line(s), 1 box(es)" in out, out + proc.stderr.read().decode()
        assert "ATZ" in emu.commands
        assert any(c.startswith("ATH") for c in emu.commands[-3:]), "the modem hung up at the stop"
    sock.close()


class StuckLine(Line):
    """A line whose driver hangs in its second read (a wedged USB device, say)."""

    def __init__(self):
        super().__init__(1)
        self.calls = 0
        self.release = threading.Event()

    def tick(self, out=None) -> Tick:
        self.calls += 1
        if self.calls > 1:
            self.release.wait()
        time.sleep(FRAME / 8000)
        return Tick(SILENT_FRAME)


def test_a_stuck_line_loop_makes_the_daemon_unhealthy(tmp_path, monkeypatch):
    cfg = parse_config(tomllib.loads(modem_config(tmp_path / "data", "/dev/null")), "d.toml")
    line = StuckLine()
    monkeypatch.setattr("linebox.run.make_line", lambda c, pins: line)
    daemon = Daemon(cfg)
    daemon.start()
    try:
        deadline = time.monotonic() + 5
        while line.calls < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert daemon.healthy(stale=5.0)
        time.sleep(0.3)
        assert not daemon.healthy(stale=0.25), "no watchdog for a line loop that stopped going round"
    finally:
        line.release.set()
        daemon.stop()
