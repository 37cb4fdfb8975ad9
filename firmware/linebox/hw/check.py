"""`linebox hwcheck --config PATH`: check each configured part, one report line per check.

Lamps blink once (watch them), each FXO line's inputs are read, its hook relay goes
off-hook and back (listen for the clicks) and, while off-hook, a 1 kHz tone is played and
what comes back is measured: through a loopback rig, or the line's hybrid echo. Modem
lines report their identity. Exit status 1 when any check fails.

Backends are injected: ``LINEBOX_GPIO=sim`` runs on simulated pins, and the ``audio``
device name can be any ALSA PCM (the tests use alsa-lib's file plugin).
"""

import importlib
import math
import sys
import time
from collections.abc import Callable

from linebox.config import Config, LineConfig, load_config
from linebox.hw.audio import AlsaAudio, AudioPort
from linebox.hw.fxo import NO_SIGNAL_DBM0, FxoLine, calibrate, from_config
from linebox.hw.gpio import Pins, default_pins

LED_SECONDS = 0.5          # how long each lamp is lit
TONE_SECONDS = 1.0
TONE_DBM0 = -10.0


class Report:
    """Check results, printed as they come: ``OK    what: detail``."""

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

    @property
    def failed(self) -> bool:
        return any(status == "FAIL" for status, _, _ in self.results)

    def summary(self) -> str:
        counts = {s: sum(1 for r in self.results if r[0] == s) for s in ("OK", "FAIL", "SKIP")}
        return "hwcheck: " + ", ".join(f"{n} {s}" for s, n in counts.items())


def run_checks(cfg: Config, pins: Pins, report: Report,
               audio_factory: Callable[[str], AudioPort] = AlsaAudio,
               sleep: Callable[[float], None] = time.sleep) -> Report:
    """Check every part ``cfg`` names, adding one result per check to ``report``."""
    if cfg.device.status_led_pin is not None:
        _check_led(pins, "status LED", cfg.device.status_led_pin, report, sleep)
    for number, box in cfg.boxes.items():
        if box.led_pin is not None:
            _check_led(pins, f"box {number} LED", box.led_pin, report, sleep)
    for lc in cfg.lines:
        if lc.driver == "fxo":
            _check_fxo(lc, pins, report, audio_factory)
        elif lc.driver == "modem":
            check_modem(lc, report)
        else:
            report.skip(f"line {lc.id}", "simulated line (driver sim)")
    return report


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


def check_modem(lc: LineConfig, report: Report) -> None:
    """A modem line: the modem answers and says what it is (if the driver is in the build)."""
    what = f"line {lc.id} modem ({lc.port})"
    try:
        modem = importlib.import_module("linebox.hw.modem")
    except ModuleNotFoundError as e:
        if e.name != "linebox.hw.modem":
            raise
        report.skip(what, "the modem driver is not in this build")
        return
    line = None
    try:
        build = getattr(modem, "from_config", None)
        line = build(lc) if build is not None else modem.ModemLine(
            lc.id, port=lc.port, plan=lc.plan, baud=lc.baud)
        info = line.identify()
    except Exception as e:  # noqa: BLE001
        report.fail(what, str(e) or type(e).__name__)
        return
    finally:
        if line is not None:
            try:
                line.close()
            except Exception:  # noqa: BLE001
                pass
    report.ok(what, _describe_identity(info))


def _describe_identity(info) -> str:
    if isinstance(info, dict):
        return ", ".join(f"{k}: {v}" for k, v in info.items())
    return str(info)


def main(args) -> int:
    """`linebox hwcheck`."""
    cfg = load_config(args.config)
    pins = default_pins()
    report = Report()
    print(f"linebox hwcheck: {args.config}", flush=True)
    try:
        run_checks(cfg, pins, report)
    finally:
        pins.close()
    print(report.summary())
    return 1 if report.failed else 0
