"""An analog line through an FXO module: a hook relay, a ring detector and a line-voltage
sensor on GPIO, the line's audio on a sound card.

The ring detector's optocoupler pulses at the ring frequency (16-60 Hz) while ringing;
edges are timestamped where they happen (an edge callback) and integrated into one
"ringing during this frame" boolean per 20 ms tick. Counting rings from those booleans
is RingCounter's job, the same as on a simulated line.

The line is clocked by its audio, on- and off-hook alike (caller ID arrives between the
first and second ring, while on-hook). When the sound card disappears the line reports a
fault once, keeps ticking on a monotonic clock with silence, and tries the card again
with exponential backoff; nothing ever raises out of ``tick``.
"""

import logging
import math
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable

from linebox import FRAME, RATE
from linebox.backoff import Backoff
from linebox.clock import FRAME_SECONDS
from linebox.dsp import gen
from linebox.dsp.levels import DBM0_PEAK, dbm0
from linebox.errors import LineboxError
from linebox.hw.audio import AlsaAudio, AudioGone, AudioPort
from linebox.hw.gpio import Pins
from linebox.hw.line import SILENT_FRAME, Fault, FaultCleared, Line, LineEvent, LineReversal, Tick

log = logging.getLogger(__name__)


# Ring detection. A half-wave optocoupler at 16 Hz gives a pulse every 62.5 ms, so one
# pulse keeps the line "ringing" for a little longer than that.
RING_HOLD = 0.07
# Ringing starts after this many pulses within RING_START_WINDOW: one spike is noise
# (a parallel phone's dial pulse, a lightning click), ring voltage is a train.
RING_MIN_PULSES = 2
RING_START_WINDOW = 0.2
# Detectors with an RC filter give a steady level instead of pulses: held this long, it rings.
RING_STEADY = 0.1
# Active for longer than any ring burst (the longest cadence burst is 2 s): a wiring fault.
RING_STUCK = 10.0

# On-hook without line voltage this long: the line is unplugged or dead.
DEAD_LINE_SECONDS = 10.0
# Reopening a vanished sound card: first after 1 s, doubling up to once a minute.
REOPEN_FIRST = 1.0
REOPEN_MAX = 60.0
# Pacing silent ticks: when more than this behind, start counting again from now.
PACE_SLACK = 1.0
# How often the fallback poller samples a ring input whose backend has no edge callbacks.
POLL_INTERVAL = 0.001
# Line reversal (caller ID before the first ring: BT SIN 227, ETSI EN 300 659-1): a
# line-voltage input behind a bridge rectifier sees the voltage pass through zero as the
# exchange swaps the wires, a drop of a few milliseconds. A drop no longer than this,
# on-hook and away from ringing (whose voltage makes the input flicker), is a reversal.
# ASSUMED: nothing else on a line drops its voltage that briefly. Needs edge callbacks
# on the loop pin (a per-frame read cannot see it).
REVERSAL_MAX_DROP = 0.1
REVERSAL_RING_QUIET = 1.0


class RingDetector:
    """Turns ring-input edges into one ringing boolean per frame.

    ``edge(t, active)`` may be called from any thread (it only appends); ``frame(now,
    active_now)`` runs in the line's thread once per tick.
    """

    def __init__(self) -> None:
        self._edges: deque[tuple[float, bool]] = deque()
        self._pulses: deque[float] = deque()
        self.active = False
        self.active_since = 0.0
        self.last_active = -math.inf
        self.ringing = False

    def edge(self, t: float, active: bool) -> None:
        self._edges.append((t, active))

    def frame(self, now: float, active_now: bool) -> bool:
        """Was it ringing during the frame that ends ``now``?"""
        while self._edges:
            self._apply(*self._edges.popleft())
        if active_now != self.active:          # an edge the callback missed (or no callbacks)
            self._apply(now, active_now)
        if self.active:
            self.last_active = now
        while self._pulses and self._pulses[0] < now - RING_START_WINDOW:
            self._pulses.popleft()
        if now - self.last_active > RING_HOLD:
            self.ringing = False
        elif not self.ringing:
            self.ringing = (len(self._pulses) >= RING_MIN_PULSES
                            or (self.active and now - self.active_since >= RING_STEADY))
        return self.ringing and not self.stuck(now)

    def stuck(self, now: float) -> bool:
        return self.active and now - self.active_since >= RING_STUCK

    def _apply(self, t: float, active: bool) -> None:
        if active == self.active:
            return
        self.active = active
        if active:
            self.active_since = t
            self._pulses.append(t)
        else:
            self.last_active = t


class _Poller(threading.Thread):
    """Samples an input at ~1 kHz and reports changes, for backends without edge callbacks."""

    def __init__(self, pins: Pins, pin: int, callback) -> None:
        super().__init__(name=f"gpio-poll-{pin}", daemon=True)
        self.pins, self.pin, self.callback = pins, pin, callback
        self.stopping = threading.Event()
        self.last = pins.read(pin)          # now, so a change before the first sample counts

    def run(self) -> None:
        while not self.stopping.wait(POLL_INTERVAL):
            try:
                level = self.pins.read(self.pin)
            except Exception:  # noqa: BLE001 - the pins are closing
                return
            if level != self.last:
                self.last = level
                self.callback(self.pin, level)


def _gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


def _apply_gain(frame: array, g: float) -> array:
    if g == 1.0:
        return frame
    return array("h", [32767 if v > 32767 else -32768 if v < -32768 else v
                       for v in (int(round(s * g)) for s in frame)])


class FxoLine(Line):
    """One analog line on an FXO module (GPIO + sound card). See the module docstring.

    ``audio_factory()`` opens the line's AudioPort (an AlsaAudio on a Pi; raises
    AudioGone when it cannot). Levels: the hook relay output is high when off-hook if
    ``hook_active_high``; the ring and loop inputs are active low if ``ring_active_low``
    / ``loop_active_low`` (an optocoupler pulling a pulled-up pin down). ``loop_pin``
    senses line voltage / loop current: ``Tick.loop`` is None without it.

    Tick.events carries a ``Fault(key, reason)`` once when a fault begins and a
    ``FaultCleared(key)`` when it ends; ``faults`` holds the current ones by key.
    """

    def __init__(self, line_id: int, plan: str = "us", *, pins: Pins,
                 audio_factory: Callable[[], AudioPort], hook_pin: int, ring_pin: int,
                 loop_pin: int | None = None, hook_active_high: bool = True,
                 ring_active_low: bool = True, loop_active_low: bool = True,
                 rx_gain_db: float = 0.0, tx_gain_db: float = 0.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(line_id, plan)
        self.pins = pins
        self.audio_factory = audio_factory
        self.hook_pin, self.ring_pin, self.loop_pin = hook_pin, ring_pin, loop_pin
        self.hook_active_high = hook_active_high
        self.ring_active_low = ring_active_low
        self.loop_active_low = loop_active_low
        self.clock = clock
        self.sleep = sleep
        self.rx_gain_db = rx_gain_db
        self.tx_gain_db = tx_gain_db
        self.faults: dict[str, str] = {}
        self.audio: AudioPort | None = None
        self._events: list[LineEvent] = []
        self._retry_at = 0.0
        self._backoff = Backoff(REOPEN_FIRST, REOPEN_MAX)
        self._deadline: float | None = None
        self._dead_since: float | None = None
        self._ring = RingDetector()
        self._poller: _Poller | None = None
        self._closed = False
        self._loop_drop_at: float | None = None
        self._reversals: deque[float] = deque()

        pins.setup_output(hook_pin, self._hook_level(False))
        pins.setup_input(ring_pin, "up" if ring_active_low else "down")
        if loop_pin is not None:
            pins.setup_input(loop_pin, "up" if loop_active_low else "down")
            pins.add_edge_callback(loop_pin, self._on_loop_edge)
        if not pins.add_edge_callback(ring_pin, self._on_ring_edge):
            self._poller = _Poller(pins, ring_pin, self._on_ring_edge)
            self._poller.start()
        self._open_audio(clock())

    # -- gains --------------------------------------------------------------
    @property
    def rx_gain_db(self) -> float:
        return self._rx_db

    @rx_gain_db.setter
    def rx_gain_db(self, db: float) -> None:
        self._rx_db, self._rx = float(db), _gain(db)

    @property
    def tx_gain_db(self) -> float:
        return self._tx_db

    @tx_gain_db.setter
    def tx_gain_db(self, db: float) -> None:
        self._tx_db, self._tx = float(db), _gain(db)

    # -- the Line interface -------------------------------------------------
    def tick(self, out: array | None = None) -> Tick:
        try:
            return self._tick(out)
        except Exception as e:  # noqa: BLE001 - a line must keep ticking whatever happens
            log.exception("line %s: tick failed", self.id)
            self._fault("tick", f"line driver error: {e}")
            self._pace(self.clock())
            return Tick(array("h", SILENT_FRAME), events=self._take_events())

    def set_hook(self, off_hook: bool) -> None:
        super().set_hook(off_hook)
        try:
            self.pins.write(self.hook_pin, self._hook_level(off_hook))
        except Exception as e:  # noqa: BLE001
            log.error("line %s: hook relay: %s", self.id, e)
            self._fault("hook", f"hook relay: {e}")
        if off_hook:
            self._dead_since = None

    def close(self) -> None:
        """Go on-hook, stop watching the inputs and release the sound card. The hook pin
        stays driven on-hook (released, a floating relay driver could pick up)."""
        if self._closed:
            return
        self._closed = True
        self.set_hook(False)
        if self._poller is not None:
            self._poller.stopping.set()
            self._poller.join(1.0)
        for pin in (self.ring_pin, self.loop_pin):
            if pin is not None:
                self.pins.remove_edge_callback(pin)
                self.pins.release(pin)
        self._close_audio()

    # -- one frame ----------------------------------------------------------
    def _tick(self, out: array | None) -> Tick:
        now = self.clock()
        if self.audio is None and now >= self._retry_at:
            self._open_audio(now)
        heard = None
        if self.audio is not None:
            try:
                self.audio.write_frame(SILENT_FRAME if out is None else _apply_gain(out, self._tx))
                heard = _apply_gain(self.audio.read_frame(), self._rx)
                self._deadline = None
            except AudioGone as e:
                self._audio_lost(str(e), now)
            except Exception as e:  # noqa: BLE001
                log.exception("line %s: audio", self.id)
                self._audio_lost(f"audio error: {e}", now)
        if heard is None:
            heard = array("h", SILENT_FRAME)
            self._pace(now)
        now = self.clock()
        ringing = self._ring.frame(now, self._active(self.ring_pin, self.ring_active_low))
        self._watch_ring(now)
        loop = None if self.loop_pin is None else self._active(self.loop_pin, self.loop_active_low)
        self._watch_line(now, loop)
        if self._reversals:
            self._reversals.popleft()
            self._events.append(LineReversal())
        self._clear("tick")
        return Tick(heard, ringing, loop, self._take_events())

    def _active(self, pin: int, active_low: bool) -> bool:
        return self.pins.read(pin) != active_low

    def _hook_level(self, off_hook: bool) -> bool:
        return off_hook == self.hook_active_high

    def _on_ring_edge(self, pin: int, level: bool) -> None:
        self._ring.edge(self.clock(), level != self.ring_active_low)

    def _on_loop_edge(self, pin: int, level: bool) -> None:
        """Loop input edges (any thread): a brief drop on-hook is a line reversal."""
        t = self.clock()
        if level != self.loop_active_low:          # voltage back
            drop, self._loop_drop_at = self._loop_drop_at, None
            ring = self._ring
            if (drop is not None and t - drop <= REVERSAL_MAX_DROP and not self.off_hook
                    and not ring.ringing and drop - ring.last_active > REVERSAL_RING_QUIET):
                self._reversals.append(t)
        else:
            self._loop_drop_at = t

    def _pace(self, now: float) -> None:
        """Without a sound card to set the pace, a frame every 20 ms of the clock."""
        if self._deadline is None or now - self._deadline > PACE_SLACK:
            self._deadline = now
        self._deadline += FRAME_SECONDS
        delay = self._deadline - now
        if delay > 0:
            self.sleep(delay)

    # -- faults -------------------------------------------------------------
    def _fault(self, key: str, reason: str) -> None:
        if key not in self.faults:
            self.faults[key] = reason
            self._events.append(Fault(key, reason))
            log.warning("line %s: fault: %s", self.id, reason)

    def _clear(self, key: str) -> None:
        reason = self.faults.pop(key, None)
        if reason is not None:
            self._events.append(FaultCleared(key))
            log.info("line %s: fault cleared: %s", self.id, reason)

    def _take_events(self) -> tuple:
        events, self._events = tuple(self._events), []
        return events

    @property
    def fault(self) -> str | None:
        """The first current fault, or None when the line is healthy."""
        return next(iter(self.faults.values()), None)

    def _watch_line(self, now: float, loop: bool | None) -> None:
        if loop is None or self.off_hook:
            return
        if loop:
            self._dead_since = None
            self._clear("line")
        else:
            if self._dead_since is None:
                self._dead_since = now
            if now - self._dead_since >= DEAD_LINE_SECONDS:
                self._fault("line", "no line voltage")

    def _watch_ring(self, now: float) -> None:
        if self._ring.stuck(now):
            self._fault("ring", "ring input active for 10 s (check ring_active_low and the wiring)")
        elif not self._ring.active:
            self._clear("ring")

    # -- the sound card -----------------------------------------------------
    def _open_audio(self, now: float) -> None:
        try:
            self.audio = self.audio_factory()
        except Exception as e:  # noqa: BLE001 - AudioGone, a config error, a driver bug
            if not isinstance(e, AudioGone | LineboxError):
                log.exception("line %s: opening the sound card", self.id)
            self._fault("audio", f"sound card: {e}")
            self._retry_at = now + self._backoff.next()
            return
        self._backoff.reset()
        self._clear("audio")

    def _audio_lost(self, reason: str, now: float) -> None:
        self._close_audio()
        self._fault("audio", f"sound card: {reason}")
        self._retry_at = now + self._backoff.next()

    def _close_audio(self) -> None:
        audio, self.audio = self.audio, None
        if audio is not None:
            try:
                audio.close()
            except Exception:  # noqa: BLE001
                pass


def from_config(cfg, pins: Pins, *, audio_factory: Callable[[], AudioPort] | None = None,
                clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> FxoLine:
    """The FxoLine of one ``[[line]]`` with ``driver = "fxo"`` (a LineConfig)."""
    if cfg.driver != "fxo":
        raise ValueError(f"line {cfg.id} is a {cfg.driver} line, not fxo")
    factory = audio_factory or (lambda: AlsaAudio(cfg.audio))
    return FxoLine(cfg.id, cfg.plan, pins=pins, audio_factory=factory, hook_pin=cfg.hook_pin,
                   ring_pin=cfg.ring_pin, loop_pin=cfg.loop_pin,
                   hook_active_high=cfg.hook_active_high, ring_active_low=cfg.ring_active_low,
                   loop_active_low=cfg.loop_active_low, rx_gain_db=cfg.rx_gain_db,
                   tx_gain_db=cfg.tx_gain_db, clock=clock, sleep=sleep)


# ---------------------------------------------------------------- calibration

CALIBRATE_SETTLE = 0.2          # s skipped at the start of each part (buffers, relay bounce)
NO_SIGNAL_DBM0 = -70.0          # below this nothing came back


def tone_level_dbm0(samples, freq: float, rate: int = RATE) -> float:
    """Level in dBm0 of the ``freq`` component of ``samples`` (Goertzel), -inf if none."""
    n = len(samples)
    if n == 0:
        return -math.inf
    w = 2.0 * math.pi * freq / rate
    coeff = 2.0 * math.cos(w)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    amp = 2.0 * math.sqrt(max(power, 0.0)) / n
    return 20.0 * math.log10(amp / DBM0_PEAK) if amp > 0 else -math.inf


def _collect(line: Line, frames, settle: int) -> array:
    heard = array("h")
    for i, frame in enumerate(frames):
        tick = line.tick(frame)
        if i >= settle:
            heard.extend(tick.audio)
    return heard


def calibrate(line: FxoLine, seconds: float = 1.0, tone_hz: float = 1000.0,
              tone_dbm0: float = -10.0, expected_loss_db: float = 0.0) -> dict:
    """Play a ``tone_hz`` tone at ``tone_dbm0`` for ``seconds``, then silence, and measure
    what comes back: through a loopback rig, or the hybrid's echo on a line held off-hook.

    Returns the levels (dBm0) and ``suggested_rx_gain_db``: the rx gain that makes the
    tone come back ``expected_loss_db`` below what was sent (None when nothing came back).
    The detectors expect speech and tones around -10 to -30 dBm0.
    """
    settle = round(CALIBRATE_SETTLE * RATE / FRAME)
    n = max(1, round(seconds * RATE / FRAME))
    tone = gen.tone(tone_hz, (n + settle) * FRAME_SECONDS, tone_dbm0)
    frames = [tone[i * FRAME:(i + 1) * FRAME] for i in range(n + settle)]
    with_tone = _collect(line, frames, settle)
    quiet = _collect(line, [None] * (max(1, n // 2) + settle), settle)
    rx = tone_level_dbm0(with_tone, tone_hz)
    noise = dbm0(quiet)
    expected = tone_dbm0 - expected_loss_db
    suggested = None
    if rx > NO_SIGNAL_DBM0:
        suggested = round(max(-30.0, min(30.0, line.rx_gain_db + expected - rx)), 1)
    return {
        "tone_hz": tone_hz, "tx_dbm0": tone_dbm0,
        "rx_dbm0": _round(rx), "rx_total_dbm0": _round(dbm0(with_tone)),
        "noise_dbm0": _round(noise),
        "snr_db": _round(rx - noise) if math.isfinite(rx) else None,
        "rx_gain_db": line.rx_gain_db, "suggested_rx_gain_db": suggested,
    }


def _round(x: float) -> float | None:
    if math.isinf(x) and x > 0:
        return None
    return round(x, 1) if math.isfinite(x) else None
