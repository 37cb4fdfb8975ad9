"""Benchmark of the web portal: the box page with 500 messages, a message's first audio
byte, a simulated line loop's frame lateness with and without 5 browsers' load, and the
daemon's extra memory with the portal on. Prints figures; asserts nothing.

The frame lateness is measured twice: with the portal served from the daemon's own
process (``WebServer(separate=False)``, as before issue 10's last round) and from a
process of its own (the default). The 5 browsers are a separate process at nice 19, as
real browsers are not on the appliance at all (on this shared 2-core machine their own
CPU would otherwise count against the line loop); ``--browsers-inside`` runs them in
the daemon's process as the first version of this benchmark did.

    PYTHONPATH=firmware .venv/bin/python bench/web_bench.py [--browsers-inside]
"""

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "firmware"))
sys.path.insert(0, str(HERE.parent / "tests"))

from linebox.config import WebConfig, parse_config  # noqa: E402
from linebox.dsp import gen  # noqa: E402
from linebox.sim.runner import _step, build  # noqa: E402
from linebox.sim.scenario import load_scenario  # noqa: E402
from linebox.web.auth import hash_password, store_admin_hash  # noqa: E402
from linebox.web.server import WebServer  # noqa: E402
from simkit import config_text  # noqa: E402
from speechdata import speech_dir  # noqa: E402

FRAME_S = 0.020
PASSWORD = "benchmark password"
LONG_CALL = """
[[call]]
line = 1
at = 0.5
caller = {{ number = "5551234567", name = "JOHN DOE" }}
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]
"""


def rss_kib() -> int:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1])
    return 0


class Browser:
    """A minimal HTTP client with the session cookie."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cookie = ""

    def get(self, path: str, first_byte: bool = False):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        t0 = time.perf_counter()
        conn.request("GET", path, headers={"Cookie": self.cookie})
        r = conn.getresponse()
        first = r.read(1)
        t1 = time.perf_counter()
        body = first + r.read()
        t2 = time.perf_counter()
        conn.close()
        return r.status, body, (t1 - t0 if first_byte else t2 - t0)

    def login(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        conn.request("POST", "/api/v1/login", json.dumps({"user": "admin", "password": PASSWORD}),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        self.cookie = r.getheader("Set-Cookie").split(";")[0]
        conn.close()


def setup(tmp: Path, n_messages: int, scenario: str):
    data = tmp / "data"
    cfg_path = tmp / "linebox.toml"
    cfg_path.write_text(config_text(data, max_messages=n_messages + 10, max_seconds=600))
    config = parse_config(tomllib.loads(cfg_path.read_text()), str(cfg_path))
    scen = tmp / "scenario.toml"
    scen.write_text(scenario)
    app, exchange, transcript = build(config, load_scenario(scen), None, True, clock_start=time.time())
    audio = gen.tone(440.0, 1.0, -20.0)
    for i in range(n_messages):
        p = app.store.start_recording("100", 1, f"555{i:07d}", "BENCH CALLER")
        p.write(audio)
        p.finish()
    store_admin_hash(data, hash_password(PASSWORD))
    return app, exchange, transcript


def timed(fn, n: int) -> list[float]:
    return [fn() for _ in range(n)]


def ms(xs) -> str:
    xs = sorted(xs)
    return f"median {statistics.median(xs) * 1000:.1f} ms, p90 {xs[int(len(xs) * 0.9)] * 1000:.1f} ms"


def line_loop(app, exchange, transcript, lock, seconds: float) -> list[float]:
    """Step the simulated line every 20 ms of wall time (as a sound card would ask) and
    return each frame's lateness: how long after its due time the frame was done."""
    late = []
    waits = []
    state = {"last_start": 0.0}
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    k = 0
    while time.perf_counter() - t0 < seconds:
        due = t0 + k * FRAME_S
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        t_ask = time.perf_counter()
        with lock:
            waits.append(time.perf_counter() - t_ask)
            if not _step(app, exchange, transcript, state):
                break
        late.append(max(0.0, time.perf_counter() - (due + FRAME_S)))
        k += 1
    return late, waits, (time.process_time() - cpu0) / (time.perf_counter() - t0)


def load(browser: Browser, stop: threading.Event, mid: str) -> None:
    """One browser: the dashboard, the box page, a message's audio, again and again."""
    paths = ["/", "/box/100", f"/api/v1/messages/{mid}/audio", "/api/v1/calls", "/api/v1/boxes"]
    i = 0
    while not stop.is_set():
        browser.get(paths[i % len(paths)])
        i += 1


def browsers_elsewhere(port: int, mid: str, n: int = 5):
    """``n`` browsers loading the portal from a process of their own; stop with .kill()."""
    code = f"""
import os, sys, threading
os.nice(19)     # the browsers are not on the appliance: their own CPU should not count
sys.path[:0] = {[str(HERE.parent / 'firmware'), str(HERE.parent / 'tests'), str(HERE)]!r}
import web_bench as wb
stop = threading.Event()
for _ in range({n}):
    b = wb.Browser("127.0.0.1", {port})
    b.login()
    threading.Thread(target=wb.load, args=(b, stop, {mid!r}), daemon=True).start()
print("loading", flush=True)
sys.stdin.read()
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    proc.stdout.readline()
    return proc


def browsers_inside(port: int, mid: str, n: int = 5):
    stop = threading.Event()
    threads = []
    for _ in range(n):
        c = Browser("127.0.0.1", port)
        c.login()
        t = threading.Thread(target=load, args=(c, stop, mid), daemon=True)
        t.start()
        threads.append(t)

    class Handle:
        def kill(self):
            stop.set()
            for t in threads:
                t.join(timeout=30)
    return Handle()


def report_lateness(name: str, got) -> None:
    late, waits, cpu = got
    missed = sum(1 for x in late if x > 0)
    s = sorted(late)
    print(f"  {name}: {len(late)} frames, missed {missed}, "
          f"p99 lateness {s[int(len(s) * 0.99)] * 1000:.1f} ms, worst {s[-1] * 1000:.1f} ms; "
          f"waiting for the lock: worst {max(waits) * 1000:.1f} ms; the daemon process's CPU "
          f"{cpu * 100:.0f} % of a core; load average {os.getloadavg()[0]:.1f}")


def main() -> int:
    inside = "--browsers-inside" in sys.argv
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        from linebox.wavfile import read_wav, write_wav
        voice = tmp / "voice.wav"
        speech = read_wav(speech_dir() / "fsdd-george.wav")          # the project's own test speech,
        write_wav(voice, (speech * (int(150 * 8000 / len(speech)) + 1))[:150 * 8000])   # 150 s of it
        app, exchange, transcript = setup(tmp, 500, LONG_CALL.format(voice=voice))
        lock = threading.RLock()
        mid = app.store.messages("100")[0]["id"]
        print(f"web portal benchmark (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
              f"the 5 browsers {'in the daemon process' if inside else 'in a process of their own'})")
        for separate in (False, True):
            where = "own process" if separate else "daemon process"
            server = WebServer(app, lock, WebConfig(), app.calllog, host="127.0.0.1", port=0, separate=separate)
            server.start()
            b = Browser("127.0.0.1", server.port)
            b.login()
            status, body, _ = b.get("/box/100")
            assert status == 200 and body.count(b'class="msg ') == 500, status
            print(f"portal in the {where}:")
            print(f"  box page, 500 messages ({len(body) // 1024} KiB): "
                  f"{ms(timed(lambda b=b: b.get('/box/100')[2], 30))} (goal < 100 ms)")
            print(f"  message audio, first byte: "
                  f"{ms(timed(lambda b=b: b.get(f'/api/v1/messages/{mid}/audio', first_byte=True)[2], 50))} "
                  f"(goal < 50 ms)")
            print(f"  box messages JSON, 500: {ms(timed(lambda b=b: b.get('/api/v1/boxes/100/messages')[2], 30))}")
            print("  frame lateness of a simulated line (a call being recorded), 20 ms frames:")
            report_lateness("no portal load     ", line_loop(app, exchange, transcript, lock, 8.0))
            browsers = (browsers_inside if inside else browsers_elsewhere)(server.port, mid)
            time.sleep(0.5)
            report_lateness("5 browsers loading ", line_loop(app, exchange, transcript, lock, 8.0))
            browsers.kill()
            server.stop()
        for r in app.runners:
            if r.flow is not None:
                r.hang_up()              # the call being recorded is saved, as at a daemon stop
        app.close()
    for separate in (False, True):
        mem = memory(separate)
        print(f"daemon memory, portal in the {'own process' if separate else 'daemon process'}: "
              f"{mem[0] / 1024:.1f} MiB without the portal, {mem[1] / 1024:.1f} MiB with it serving "
              f"(+{(mem[1] - mem[0]) / 1024:.1f} MiB" + (f"; the portal process {mem[2] / 1024:.1f} MiB)"
                                                         if separate else ")"))
    return 0


def rss_of(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1])
    return 0


def memory(separate: bool) -> tuple[int, int, int]:
    """RSS of a fresh process with the appliance open, then with the portal serving (and
    the portal process's own RSS)."""
    code = f"""
import sys, tempfile, threading, time
sys.path[:0] = {[str(HERE.parent / 'firmware'), str(HERE.parent / 'tests'), str(HERE)]!r}
from pathlib import Path
import web_bench as wb
from linebox.config import WebConfig
tmp = Path(tempfile.mkdtemp())
app, ex, tr = wb.setup(tmp, 50, "[[call]]\\nline = 1\\nat = 1\\nsteps = []\\ngive_up_after_rings = 1\\n")
before = wb.rss_kib()
from linebox.web.server import WebServer
srv = WebServer(app, threading.RLock(), WebConfig(), app.calllog, host="127.0.0.1", port=0,
                separate={separate!r})
srv.start()
b = wb.Browser("127.0.0.1", srv.port)
b.login()
for p in ["/", "/box/100", "/api/v1/calls", "/settings"] * 5:
    b.get(p)
print(before, wb.rss_kib(), wb.rss_of(srv.pid) if srv.pid else 0)
srv.stop()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ))
    a, b, c = out.stdout.split()
    return int(a), int(b), int(c)


if __name__ == "__main__":
    raise SystemExit(main())
