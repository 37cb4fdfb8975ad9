"""`linebox run`: the appliance daemon, one thread per line paced by its hardware, the
housekeeping beat, the systemd watchdog and the status lamp."""

import logging
import time

from linebox import sdnotify
from linebox.app import Appliance
from linebox.errors import LineboxError

log = logging.getLogger(__name__)
REPORTER_GRACE = 30.0      # seconds a dead MQTT reporter may take to come back
REPORTER_RETRY = 5.0       # seconds between attempts to restart it
WEB_RETRY = 10.0           # seconds between attempts to restart a portal process that died


def make_line(cfg, pins):
    """The driver for one configured line."""
    if cfg.driver == "fxo":
        from linebox.hw import fxo
        return fxo.from_config(cfg, pins)
    if cfg.driver == "modem":
        from linebox.hw.modem import from_config
        return from_config(cfg)
    raise LineboxError(f"line {cfg.id}: driver \"{cfg.driver}\" lines run only in `linebox sim`")


class Daemon:
    """`linebox run`: one thread per line, each paced by its own hardware.

    A line's blocking read happens outside the lock; what the firmware does with the
    frame happens inside it, so the store, the bus and its subscribers see one thread
    at a time."""

    def __init__(self, config, pins=None, led_backend=None) -> None:
        import threading

        from linebox.events import Bus

        self.config = config
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.pins = pins
        self.app = Appliance(config, Bus(), led_backend=led_backend)
        self.lines = []
        self.threads = []
        self.last_step: dict[int, float] = {}
        self.reporter_down_since: float | None = None   # monotonic; None while it runs
        self.reporter_restarts = 0
        self._next_reporter_try = 0.0
        self.web = None
        self.web_restarts = 0
        self._next_web_try = 0.0
        self.sip = None

    def start(self) -> None:
        import threading

        app = self.app
        app.start(warm_prompts=True)
        web = self.config.web
        if web is not None and web.enabled:
            from linebox.web.server import WebServer
            self.web = WebServer(app, self.lock, web, app.calllog)
            self.web.start()
        for cfg in self.config.lines:
            line = make_line(cfg, self.pins)
            self.lines.append(line)
            runner = app.add_line(line, cfg)
            t = threading.Thread(target=self._line_loop, args=(runner,), name=f"line-{cfg.id}", daemon=True)
            self.threads.append(t)
        for t in self.threads:
            t.start()
        if self.config.sip is not None and self.config.sip.enabled:
            from linebox.sip.server import SipService  # the IP phones' server
            self.sip = SipService(self.config, app, self.lock)
            self.sip.start()

    def _line_loop(self, runner) -> None:
        while not self.stopping.is_set():
            tick = runner.line.tick(runner.out)
            with self.lock:
                runner.process(tick)
            self.last_step[runner.id] = time.monotonic()

    def healthy(self, stale: float = 5.0) -> bool:
        """Every line loop went round recently and the MQTT reporter runs, or is being
        restarted since less than REPORTER_GRACE (the watchdog is fed only then)."""
        now = time.monotonic()
        lines = all(now - self.last_step.get(r.id, 0.0) < stale for r in self.app.runners)
        down = self.reporter_down_since
        return lines and (down is None or now - down < REPORTER_GRACE)

    def summary(self) -> str:
        """One line for `systemctl status`: the lines' states, the boxes' new messages."""
        with self.lock:
            new = {b: self.app.store.counts(b)["new"] for b in self.config.boxes}
            text = sdnotify.summary(self.app.line_states(), new)
        if self.reporter_down_since is not None:
            text += "; fault: MQTT reporter stopped, restarting"
        elif self.reporter_restarts:
            text += f"; MQTT reporter restarted {self.reporter_restarts}x"
        return text

    def housekeeping(self) -> None:
        with self.lock:
            self.app.maintain()
            self.app.process_commands()
            self.check_reporter()
        self.check_web()           # outside the lock: starting a portal process takes a while

    def check_web(self) -> None:
        """The portal runs in a process of its own (web/server.py): one that died (a bug,
        the kernel's OOM killer) is a fault, logged and started again; the phones and
        the lines never notice."""
        w = self.web
        if w is None or w.alive():
            return
        now = time.monotonic()
        if now < self._next_web_try:
            return
        self._next_web_try = now + WEB_RETRY
        log.error("fault: the web portal process stopped; restarting it")
        w.stop()
        try:
            w.start()
        except LineboxError as e:
            log.error("restarting the web portal failed: %s", e)
            return
        self.web_restarts += 1

    def check_reporter(self) -> None:
        """A reporter whose threads died (a bug, an exception paho let through) is a
        fault: logged, shown in the status, restarted; the watchdog stops being fed if
        it stays down (systemd then restarts the whole appliance)."""
        r = self.app.reporter
        if r is None:
            return
        why = r.dead()
        if why is None:
            self.reporter_down_since = None
            return
        now = time.monotonic()
        if self.reporter_down_since is None:
            self.reporter_down_since = now
        elif now < self._next_reporter_try:
            return
        self._next_reporter_try = now + REPORTER_RETRY
        log.error("fault: the MQTT reporter stopped (%s); restarting it", why)
        try:
            r.restart()
        except Exception as e:          # noqa: BLE001 - tried again next round
            log.error("restarting the MQTT reporter failed: %s", e)
            return
        self.reporter_restarts += 1
        self.reporter_down_since = None if r.dead() is None else self.reporter_down_since

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()
            self.web = None
        self.stopping.set()
        if self.sip is not None:
            self.sip.stop()           # SIP calls hang up (recordings saved) before the store closes
        for t in self.threads:
            t.join(timeout=2.0)
        with self.lock:
            for runner in self.app.runners:
                if runner.flow is not None:
                    runner.hang_up()      # a recording in progress is saved as it stands
            for line in self.lines:
                try:
                    line.close()
                except Exception as e:  # noqa: BLE001 - closing must go on for the others
                    log.warning("closing line %s: %s", getattr(line, "id", "?"), e)
            self.app.stop()


def main(args) -> int:
    """`linebox run`: the appliance daemon."""
    import signal
    import sys

    from linebox import log as logmod
    from linebox.config import load_config
    from linebox.hw.gpio import default_pins
    from linebox.hw.gpio_leds import GpioLedBackend, StatusLed

    logmod.setup(args.log_level if hasattr(args, "log_level") else "info", sys.stdout)
    cfg = load_config(args.config)
    needs_gpio = any(line.driver == "fxo" for line in cfg.lines) or cfg.device.status_led_pin is not None \
        or any(b.led_pin is not None for b in cfg.boxes.values())
    pins = default_pins() if needs_gpio else None
    leds = GpioLedBackend(pins) if pins is not None else None
    status = StatusLed(leds, cfg.device.status_led_pin) if leds and cfg.device.status_led_pin is not None else None
    if leds is not None:
        leds.start()
    if status:
        status.set("starting")
    daemon = Daemon(cfg, pins, leds)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    wd = sdnotify.watchdog_interval()
    beat = min(1.0, wd / 2) if wd else 1.0
    next_status = 0.0
    try:
        daemon.start()
        log.info("running: %d line(s), %d box(es)", len(cfg.lines), len(cfg.boxes))
        sdnotify.ready(daemon.summary())
        if status:
            status.set("ready")
        while not stop:
            time.sleep(beat)
            daemon.housekeeping()
            healthy = daemon.healthy()
            if wd and healthy:
                sdnotify.watchdog()      # a stuck line loop stops this: systemd restarts us
            if time.monotonic() >= next_status:
                sdnotify.status(daemon.summary())
                next_status = time.monotonic() + 5.0
            if status:
                faulty = not healthy or any(r.fault for r in daemon.app.runners)
                status.set("fault" if faulty else "ready")
    except KeyboardInterrupt:
        pass
    finally:
        sdnotify.stopping("stopping")
        daemon.stop()
        if leds is not None:
            leds.close()
        if pins is not None:
            pins.close()
    return 0
