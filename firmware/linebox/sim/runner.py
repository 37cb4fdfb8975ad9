"""`linebox sim SCENARIO`: the real firmware against simulated lines, on a virtual clock."""

import contextlib
import json
import sys
import time
from datetime import datetime

from linebox import FRAME, RATE
from linebox.app import Appliance
from linebox.errors import LineboxError
from linebox.events import HIDDEN, Bus

# A scenario's calls must be over this long after the last one began.
MAX_CALL_SECONDS = 4 * 3600.0
# The longest jump over idle time (seconds): retention is checked after each.
RETENTION_STEP = 3600.0


class Transcript:
    """Prints the bus as the contract's transcript: one JSON object a line, or a table."""

    def __init__(self, bus: Bus, exchange, out=None, as_json: bool = True, wall0: float = 0.0,
                 tz=None) -> None:
        self.exchange = exchange
        self.out = out
        self.as_json = as_json
        self.wall0 = wall0
        self.tz = tz                 # the table's clock: [device] timezone (None: local)
        self.current_line: int | None = None
        self.events: list[dict] = []
        self.readers: list = []      # more consumers of each transcript record (the demo's narrator)
        bus.subscribe(self._on_event)

    def _on_event(self, ev: dict) -> None:
        kind = ev.get("event", "")
        if kind in HIDDEN:
            return
        line = ev.get("line", self.current_line)
        rec = {"t": round(self.exchange.now, 3), "call": self.exchange.call_on_line(line) if line else None,
               "line": line, "event": kind}
        rec.update({k: v for k, v in ev.items() if k not in ("event", "t", "line")})
        self.events.append(rec)
        for reader in self.readers:
            reader(rec)
        if self.out is None:
            return
        if self.as_json:
            self.out.write(json.dumps(rec) + "\n")
        else:
            self.out.write(format_event(rec, self.wall0, self.tz) + "\n")
        # Line by line, so a reader of a pipe follows the story as it happens.
        self.out.flush()


def format_event(rec: dict, wall0: float = 0.0, tz=None) -> str:
    """One transcript event as a readable line of a timeline; the wall-clock time is
    ``tz``'s (``[device] timezone``), the system's local time when None."""
    rest = {k: v for k, v in rec.items() if k not in ("t", "call", "line", "event") and v is not None}
    detail = "  ".join(f"{k}={v}" for k, v in rest.items())
    stamp = f"{rec['t']:9.2f}s"
    if wall0:
        stamp += " " + datetime.fromtimestamp(wall0 + rec["t"], tz).strftime("%H:%M:%S")
    who = f"line {rec['line']}" if rec.get("line") else "      "
    call = f"call {rec['call']}" if rec.get("call") else "      "
    return f"{stamp}  {who}  {call}  {rec['event']:<18} {detail}".rstrip()


def build(config, scenario, out=None, as_json: bool = True, clock_start: float | None = None):
    """The appliance, the exchange and the transcript for one simulation."""
    from linebox.config import device_tz
    from linebox.sim.exchange import SimExchange

    sim_lines = {line.id: line for line in config.lines if line.driver in ("sim", "modem-sim")}
    for lid in sorted(scenario.lines()):
        if lid not in sim_lines:
            raise LineboxError(f"scenario: line {lid} is not a line with driver = \"sim\" "
                               f"(or \"modem-sim\") in {config.source}")
    for d in scenario.dials:
        if d.extension not in (config.extensions or {}):
            raise LineboxError(f"scenario: [[dial]] #{d.index}: extension {d.extension} is "
                               f"no [[extension]] in {config.source}")
    bus = Bus()
    exchange = SimExchange(scenario, {lid: c.plan for lid, c in sim_lines.items()}, bus)
    if scenario.start is not None:
        wall0 = scenario.start.timestamp()
    else:
        wall0 = clock_start if clock_start is not None else time.time()
    app = Appliance(config, bus, clock=lambda: wall0 + exchange.now)
    transcript = Transcript(bus, exchange, out, as_json, wall0 if not as_json else 0.0,
                            tz=device_tz(config.device))
    app.start()
    if scenario.phones:
        from linebox.sim.phones import SimPhones
        app.phones = SimPhones(scenario.phones, bus, lambda: exchange.now, config.boxes)
    if scenario.dials:
        from linebox.sim.dialer import SimDialers
        app.dialers = SimDialers(scenario.dials, config, lambda: app.runners, bus,
                                 lambda: exchange.now)
    for lid in sorted(sim_lines):
        app.add_line(_sim_line(exchange, sim_lines[lid]), sim_lines[lid])
    return app, exchange, transcript


def _sim_line(exchange, cfg):
    """The exchange's line, or for ``driver = "modem-sim"`` the real modem driver and an
    emulated modem (``linebox.hw.modem.emulator``) in front of it."""
    if cfg.driver != "modem-sim":
        return exchange.line(cfg.id)
    from linebox.hw.modem.emulator import ModemSimLine
    return ModemSimLine(exchange.line(cfg.id), cfg.id, cfg.plan, cfg.chipset,
                        duplex=cfg.duplex, init=cfg.init)


def run(app, exchange, transcript, lock=None, realtime: bool = False, stop=None) -> None:
    """Step every line frame by frame until the scenario is over, jumping idle time.

    ``lock`` (the portal's, with ``--web``) is held for each frame, as the daemon holds
    its lock; ``realtime`` paces the virtual clock at wall-clock speed; ``stop`` (an
    Event, set by SIGTERM with ``--web``) ends it between two frames."""
    lock = lock if lock is not None else contextlib.nullcontext()
    t_real0 = time.monotonic()
    # At real time idle time is lived through, frame by frame, not jumped.
    state = {"last_start": 0.0, "jump": not realtime}
    while stop is None or not stop.is_set():
        if realtime:
            ahead = exchange.now - (time.monotonic() - t_real0)
            if ahead > 0:
                time.sleep(ahead)
        with lock:
            if not _step(app, exchange, transcript, state):
                break


def _step(app, exchange, transcript, state) -> bool:
    """One frame of every line (after a jump over idle time); False once the scenario is over."""
    runners = app.runners
    phones = app.phones
    dialers = getattr(app, "dialers", None)      # the scenario's [[dial]]s (calls out)
    busy = any(r.busy for r in runners) or (phones is not None and phones.busy) \
        or (dialers is not None and dialers.busy)
    if not busy:
        if exchange.done():
            return False
        t_next = exchange.idle_until()
        if not state.get("jump", True) and t_next is not None:
            state["last_start"] = t_next     # no jump: the next call's start, for the check below
        if state.get("jump", True) and t_next is not None and t_next - exchange.now > 2 * FRAME / RATE:
            # In steps of at most an hour, so retention runs on time between calls.
            gap = min(t_next - exchange.now, RETENTION_STEP)
            jump = int(gap * RATE) // FRAME * FRAME - FRAME
            if jump > 0:
                exchange.skip_to(exchange.now + jump / RATE)
                for r in runners:
                    r.skip(jump)
                app.maintain()
            state["last_start"] = t_next
    for r in runners:
        transcript.current_line = r.id
        r.step()
    transcript.current_line = None
    if phones is not None:
        phones.step()
    if dialers is not None:
        dialers.step()
    exchange.advance()
    app.process_commands()
    app.maintain()              # retention, on its own hourly schedule
    if exchange.now - state["last_start"] > MAX_CALL_SECONDS:
        raise LineboxError("sim: the scenario did not end (a call went on for hours)")
    return True


def main(args) -> int:
    from linebox.config import load_config
    from linebox.sim.scenario import load_scenario

    config = load_config(args.config, data_dir=args.data)
    scenario = load_scenario(args.scenario)
    web = getattr(args, "web", None)
    listen = _web_listen(web) if web else None
    realtime = bool(getattr(args, "realtime", False))
    app, exchange, transcript = build(config, scenario, sys.stdout, as_json=args.json,
                                      clock_start=time.time() if realtime else None)
    server = lock = None
    try:
        if listen is not None:
            server, lock = _start_web(app, config, listen)
            done = _stop_on_signals()
            # Stopped during the scenario: between two frames (never an exception raised
            # into the middle of one, which a call flow's own error handling could take
            # for a failure and go on); what is saved stays. After it: the serving ends.
            run(app, exchange, transcript, lock=lock, realtime=realtime, stop=done)
            sys.stdout.flush()
            while not done.wait(0.5):
                pass
        else:
            run(app, exchange, transcript, realtime=realtime)
    finally:
        if server is not None:
            server.stop()
        app.stop()
    sys.stdout.flush()
    return 0


def _web_listen(text: str) -> tuple[str, int]:
    from linebox.config import parse_listen

    hostport = parse_listen(text)
    if hostport is None:
        raise LineboxError(f'sim: --web {text!r}: must be HOST:PORT, like 127.0.0.1:8080')
    return hostport


def _start_web(app, config, listen):
    """The portal over the simulated appliance, sharing a lock with the frame loop."""
    import threading

    from linebox.config import WebConfig
    from linebox.web.server import WebServer

    lock = threading.RLock()
    server = WebServer(app, lock, config.web or WebConfig(), app.calllog, host=listen[0], port=listen[1])
    server.start()
    print(f"linebox: web portal at {server.url} (until SIGTERM or Ctrl-C)", file=sys.stderr, flush=True)
    return server, lock


def _stop_on_signals():
    """SIGTERM/SIGINT end `sim --web`: the Event they set ends the scenario between two
    frames, then the serving."""
    import signal
    import threading

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    return done
