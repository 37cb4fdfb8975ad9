"""`linebox hwcheck --config PATH`: check each configured part, one report line per check.

Lamps blink once (watch them), each FXO line's inputs are read, its hook relay goes
off-hook and back (listen for the clicks) and, while off-hook, a 1 kHz tone is played and
what comes back is measured: through a loopback rig, or the line's hybrid echo. Modem
lines report what the modem is, in words; the serial devices found are listed (so the
right ``port`` can be picked). A failure says what to check. Exit status 1 when any
check fails.

GPIO is opened only when a pin is configured: a modem-only box needs no RPi.GPIO.
Backends are injected: ``LINEBOX_GPIO=sim`` runs on simulated pins, the ``audio``
device name can be any ALSA PCM (the tests use alsa-lib's file plugin), a modem's
``port`` any serial device (the tests use a pty emulator), and ``LINEBOX_SERIAL_BY_ID``
moves the folder searched for modems.
"""

import importlib
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from linebox.config import Config, LineConfig, load_config
from linebox.hw.audio import AlsaAudio, AudioPort
from linebox.hw.fxo import NO_SIGNAL_DBM0, FxoLine, calibrate, from_config
from linebox.hw.gpio import Pins, default_pins

# udev's stable names of USB serial devices (the tests point it elsewhere).
SERIAL_BY_ID = Path(os.environ.get("LINEBOX_SERIAL_BY_ID", "/dev/serial/by-id"))

LED_SECONDS = 0.5          # how long each lamp is lit
TONE_SECONDS = 1.0
TONE_DBM0 = -10.0


class Report:
    """Check results, printed as they come: ``OK    what: detail`` (``INFO`` lines say
what was found and are not counted)."""

    def __init__(self, out=None) -> None:
        self.out = out or sys.stdout
        self.results: list[tuple[str, str, str]] = []

    def add(self, status: str, what: str, detail: str) -> None:
        self.results.append((status, what, detail))
        print(f"{status:<5} {what}: {detail}", file=self.out, flush=True)

    def ok(self, what: str, detail: str) -> None:
        self.add("OK", what, detail)

    def fail(self, what: str, detail: str) -> None:
        self.add("FAIL", what, detail)

    def skip(self, what: str, detail: str) -> None:
        self.add("SKIP", what, detail)

    def info(self, what: str, detail: str) -> None:
        self.add("INFO", what, detail)

    @property
    def failed(self) -> bool:
        return any(status == "FAIL" for status, _, _ in self.results)

    def summary(self) -> str:
        counts = {s: sum(1 for r in self.results if r[0] == s) for s in ("OK", "FAIL", "SKIP")}
        return "hwcheck: " + ", ".join(f"{n} {s}" for s, n in counts.items())


def needs_gpio(cfg: Config) -> bool:
    """True when some configured part sits on a GPIO pin (an FXO line, a lamp)."""
    return (any(lc.driver == "fxo" for lc in cfg.lines) or cfg.device.status_led_pin is not None
            or any(b.led_pin is not None for b in cfg.boxes.values()))


def run_checks(cfg: Config, pins: Pins | None, report: Report,
               audio_factory: Callable[[str], AudioPort] = AlsaAudio,
               sleep: Callable[[float], None] = time.sleep,
               serial_dir: Path = SERIAL_BY_ID, modem_factory=None) -> Report:
    """Check every part ``cfg`` names, adding one result per check to ``report``.
    ``pins`` may be None when no part needs GPIO (see needs_gpio)."""
    if cfg.device.status_led_pin is not None:
        _check_led(pins, "status LED", cfg.device.status_led_pin, report, sleep)
    for number, box in cfg.boxes.items():
        if box.led_pin is not None:
            _check_led(pins, f"box {number} LED", box.led_pin, report, sleep)
    for lc in cfg.lines:
        if lc.driver == "fxo":
            _check_fxo(lc, pins, report, audio_factory)
        elif lc.driver == "modem":
            check_modem(lc, report, serial_dir, modem_factory)
        else:
            report.skip(f"line {lc.id}", "simulated line (driver sim)")
    sip = cfg.sip
    if sip is not None and sip.enabled and sip.trunk is not None:
        from linebox.gateway.trunk import probe
        ok, detail = probe(sip.trunk, sip.host)
        (report.ok if ok else report.fail)("PBX (sip trunk)", detail)
    found = serial_devices(serial_dir)
    if found or any(lc.driver == "modem" for lc in cfg.lines):
        for name, target in found:
            report.info("serial device", f"{name} (now {target})")
        if not found:
            report.info("serial devices", f"none in {serial_dir} (a USB modem appears there "
                                          "when it is plugged in; is it? lsusb lists it)")
    return report


def serial_devices(folder: Path = SERIAL_BY_ID) -> list[tuple[str, str]]:
    """The USB serial devices udev names by id: (stable name, the tty it points to)."""
    try:
        names = sorted(folder.iterdir())
    except OSError:
        return []
    return [(str(p), os.path.realpath(p)) for p in names]


def _check_led(pins: Pins, name: str, pin: int, report: Report, sleep) -> None:
    what = f"{name} (GPIO {pin})"
    try:
        pins.setup_output(pin, False)
        pins.write(pin, True)
        sleep(LED_SECONDS)
        pins.write(pin, False)
        pins.release(pin)
    except Exception as e:  # noqa: BLE001 - one failing part must not stop the others
        report.fail(what, str(e))
        return
    report.ok(what, f"lit for {LED_SECONDS:g} s (did you see it?)")


def _check_fxo(lc: LineConfig, pins: Pins, report: Report, audio_factory) -> None:
    name = f"line {lc.id}"
    try:
        line = from_config(lc, pins, audio_factory=lambda: audio_factory(lc.audio))
    except Exception as e:  # noqa: BLE001
        report.fail(f"{name} GPIO", str(e))
        return
    try:
        ringing = _check_inputs(line, lc, report)
        _check_hook_and_audio(line, lc, report, ringing)
    finally:
        line.close()


def _check_inputs(line: FxoLine, lc: LineConfig, report: Report) -> bool:
    """Ring and line-voltage inputs; True when the ring input is active now."""
    name = f"line {lc.id}"
    ring = line.pins.read(lc.ring_pin) != lc.ring_active_low
    what = f"{name} ring input (GPIO {lc.ring_pin})"
    if ring:
        report.fail(what, "active, as if ringing (if the line is not ringing: check "
                          "ring_active_low and the wiring)")
    else:
        report.ok(what, "idle")
    what = f"{name} line voltage"
    if lc.loop_pin is None:
        report.skip(what, "no loop_pin configured")
    elif line.pins.read(lc.loop_pin) != lc.loop_active_low:
        report.ok(f"{what} (GPIO {lc.loop_pin})", "present")
    else:
        report.fail(f"{what} (GPIO {lc.loop_pin})",
                    "no line voltage (line unplugged or dead? check loop_active_low)")
    return ring


def _check_hook_and_audio(line: FxoLine, lc: LineConfig, report: Report, ringing: bool) -> None:
    name = f"line {lc.id}"
    what = f"{name} sound card ({lc.audio})"
    if line.audio is None:
        report.fail(what, line.faults.get("audio", "cannot open"))
    else:
        report.ok(what, "open, 8000 Hz mono")
    what = f"{name} hook relay (GPIO {lc.hook_pin})"
    if ringing:
        report.skip(what, "not taken off-hook while the ring input is active")
        return
    line.set_hook(True)
    result = None
    try:
        if line.audio is not None:
            result = calibrate(line, TONE_SECONDS, 1000.0, TONE_DBM0)
    finally:
        line.set_hook(False)
    report.ok(what, "off-hook, then on-hook again (listen for two clicks)")
    what = f"{name} audio loopback"
    if result is None:
        report.skip(what, "no sound card")
    elif line.audio is None:
        report.fail(what, line.faults.get("audio", "the sound card failed"))
    elif result["rx_dbm0"] is None or result["rx_dbm0"] <= NO_SIGNAL_DBM0:
        report.fail(what, f"1 kHz at {TONE_DBM0:.1f} dBm0 out, nothing came back "
                          "(audio wiring? loopback rig or line connected?)")
    else:
        report.ok(what, _describe_loopback(result))


def _describe_loopback(r: dict) -> str:
    noise = r["noise_dbm0"]
    noise_text = "digital silence" if noise is None else f"{noise:.1f} dBm0"
    text = (f"1 kHz at {r['tx_dbm0']:.1f} dBm0 out, {r['rx_dbm0']:.1f} dBm0 back, "
            f"noise {noise_text}")
    gain = r["suggested_rx_gain_db"]
    if gain is not None and not math.isclose(gain, r["rx_gain_db"]):
        text += f"; rx_gain_db = {gain:.1f} would bring it back at the level sent"
    return text


HALF_DUPLEX = ("half duplex means this modem plays or listens, not both at once: keys "
               "pressed during a prompt still count (the modem reports them), but the "
               "caller's voice and hang-up tones are heard only after the prompt; it cannot "
               "bridge a call to the IP phones (no ring group, no calls out on this line: "
               "use a full-duplex modem or an FXO line for those)")


def check_modem(lc: LineConfig, report: Report, serial_dir: Path = SERIAL_BY_ID,
                factory=None) -> None:
    """A modem line: the device is there and ours to open, the modem answers, and what it
    is, in words. ``factory(lc)`` builds the driver (default: linebox.hw.modem)."""
    what = f"line {lc.id} modem ({lc.port})"
    problem = _port_problem(lc.port, serial_dir)
    if problem is not None:
        report.fail(what, problem)
        return
    if factory is None:
        try:
            modem = importlib.import_module("linebox.hw.modem")
        except ModuleNotFoundError as e:
            if e.name != "linebox.hw.modem":
                raise
            report.skip(what, "the modem driver is not in this build")
            return
        factory = getattr(modem, "from_config", None) or (lambda c: modem.ModemLine(
            c.id, c.port, c.plan, baud=c.baud, rtscts=c.flow_control == "rtscts"))
    line = None
    try:
        line = factory(lc)
        info = line.identify()
    except Exception as e:  # noqa: BLE001 - one failing part must not stop the others
        report.fail(what, f"{str(e) or type(e).__name__}; check: {_modem_hints(lc)}")
        return
    finally:
        if line is not None:
            try:
                line.close()
            except Exception:  # noqa: BLE001
                pass
    report.ok(what, describe_modem(info))
    if isinstance(info, dict) and info.get("duplex") == "half":
        report.info(f"line {lc.id} modem", HALF_DUPLEX)


def _port_problem(port: str, serial_dir: Path) -> str | None:
    """Why ``port`` cannot be opened, in words with the fix, or None if it can."""
    if not os.path.exists(port):
        found = serial_devices(serial_dir)
        if found:
            names = "; ".join(f"{n} (now {t})" for n, t in found)
            return f"no such device; serial devices found: {names}: set port to the modem's"
        return (f"no such device, and no USB serial device in {serial_dir}: check the modem's "
                "USB cable (lsusb should list it)")
    if not os.access(port, os.R_OK | os.W_OK):
        from linebox.access import denied
        return denied(port, "open")
    return None


def _modem_hints(lc: LineConfig) -> str:
    return (f"the USB cable and that {lc.port} is the modem (linebox hwcheck lists the serial "
            "devices); that no other program uses it (ModemManager: sudo systemctl disable "
            f"--now ModemManager); baud = {lc.baud}, flow_control = \"{lc.flow_control}\" "
            '(try "none" for an adapter without RTS/CTS)')


def describe_modem(info) -> str:
    """The driver's identity of a modem as one sentence: "CX93001-EIS_V0.2002-V92
    (CONEXANT, chipset conexant), audio G.711U, half duplex, caller ID on"."""
    if not isinstance(info, dict):
        return str(info)
    model, maker = info.get("model"), info.get("manufacturer")
    text = model or maker or "a modem"
    inside = [x for x in (maker if maker and maker != model else None,
                          f"chipset {info['chipset']}" if info.get("chipset") else None) if x]
    if inside:
        text += f" ({', '.join(inside)})"
    parts = [text]
    if info.get("format"):
        parts.append(f"audio {info['format']}")
    if info.get("duplex"):
        parts.append(f"{info['duplex']} duplex")
    if "callerid" in info:
        parts.append("caller ID on" if info["callerid"] else "caller ID not supported (AT+VCID)")
    # What the driver explains at length (duplex, country) gets INFO lines of its own.
    known = {"port", "manufacturer", "model", "ati", "ati3", "chipset", "formats", "format",
             "format_code", "format_kind", "duplex", "callerid", "chipset_label", "quirks",
             "duplex_source", "duplex_explanation", "country_note", "init"}
    parts += [f"{k.replace('_', ' ')} {v}" for k, v in info.items()
              if k not in known and isinstance(v, str | int | float) and not isinstance(v, bool)]
    return ", ".join(parts)


def main(args) -> int:
    """`linebox hwcheck`."""
    cfg = load_config(args.config)
    pins = default_pins() if needs_gpio(cfg) else None
    report = Report()
    print(f"linebox hwcheck: {args.config}", flush=True)
    try:
        run_checks(cfg, pins, report)
    finally:
        if pins is not None:
            pins.close()
    print(report.summary())
    return 1 if report.failed else 0
