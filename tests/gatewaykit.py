"""The gateway with real SIP phones: `linebox run`'s Daemon in this process, its analog
line a simulated exchange's line paced at wall-clock speed (the daemon's line thread
sleeps to each 20 ms deadline, as a sound card would make it wait)."""

import threading
import time
import tomllib
from array import array
from pathlib import Path

from linebox import FRAME, RATE
from linebox.hw.line import Line, Tick
from linebox.sim.exchange import SimExchange
from linebox.sim.scenario import parse_scenario
from linebox.sip.auth import ha1
from linebox.voicemail.pins import hash_pin
from sipkit import PASSWORDS, REALM, Events

FRAME_SECONDS = FRAME / RATE


class PacedSimLine(Line):
    """One simulated exchange line at real time; keeps what the firmware played and the
    wall time of the exchange's frames."""

    def __init__(self, exchange: SimExchange, line_id: int) -> None:
        super().__init__(line_id)
        self.exchange = exchange
        self.inner = exchange.line(line_id)
        self.reports_dtmf = self.inner.reports_dtmf
        self.reports_hangup = self.inner.reports_hangup
        self.full_duplex = self.inner.full_duplex
        self.played = array("h")
        self.t0: float | None = None
        self._deadline: float | None = None
        self.lock = threading.Lock()

    def tick(self, out=None) -> Tick:
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = self.t0 = now
        wait = self._deadline - now
        if wait > 0:
            time.sleep(wait)
        with self.lock:
            tick = self.inner.tick(out)
            self.played.extend(out if out is not None else bytes(2 * FRAME))
            self.exchange.advance()
        self._deadline += FRAME_SECONDS
        return tick

    def wall(self, t: float) -> float:
        """The monotonic time of exchange time ``t``."""
        return self.t0 + t

    def set_hook(self, off_hook: bool) -> None:
        self.off_hook = off_hook
        self.inner.set_hook(off_hook)


def gateway_config(tmp: Path, port: int, ring=("201", "202"), ring_rings=3, rings=2) -> Path:
    data = tmp / "data"
    cfg = tmp / "linebox.toml"
    exts = "".join(
        f'[[extension]]\nnumber = "{n}"\nname = "{name}"\nha1 = "{ha1(n, REALM, PASSWORDS[n])}"\n\n'
        for n, name in (("201", "Alice"), ("202", "Bob")))
    ring_list = ", ".join(f'"{r}"' for r in ring)
    cfg.write_text(f"""
[device]
id = "office"
data_dir = "{data}"

[[line]]
id = 1
driver = "sim"
rings = {rings}
route = "100"
ring = [{ring_list}]
ring_rings = {ring_rings}

[[box]]
number = "100"
name = "Main office"
pin_hash = "{hash_pin("4321")}"

[[box]]
number = "101"
name = "Sales"
pin_required = false

[sip]
listen = "127.0.0.1:{port}"
realm = "{REALM}"

{exts}
""")
    return cfg


class GatewayDaemon:
    """The Daemon with one paced simulated line running ``scenario`` (TOML text)."""

    def __init__(self, cfg_path: Path, scenario: str, monkeypatch, base_dir: Path) -> None:
        import linebox.run as run
        from linebox.config import load_config

        self.config = load_config(cfg_path)
        self.daemon = run.Daemon(self.config)
        bus = self.daemon.app.bus
        self.events = Events(bus)
        self.times: list[tuple[float, dict]] = []
        bus.subscribe(lambda ev: self.times.append((time.monotonic(), ev)))
        self.exchange = SimExchange(parse_scenario(tomllib.loads(scenario), base_dir),
                                    {1: "us"}, bus)
        self.line = PacedSimLine(self.exchange, 1)
        monkeypatch.setattr(run, "make_line", lambda cfg, pins: self.line)
        self.daemon.start()
        self.port = self.daemon.sip.port

    def when(self, kind: str, **match) -> float:
        """The monotonic time of the first such event."""
        for t, ev in self.times:
            if ev.get("event") == kind and all(ev.get(k) == v for k, v in match.items()):
                return t
        raise AssertionError(f"no {kind} {match}")

    def messages(self, box):
        with self.daemon.lock:
            return self.daemon.app.store.messages(box)

    def stop(self) -> None:
        self.daemon.stop()
