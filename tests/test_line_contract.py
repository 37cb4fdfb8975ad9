"""One contract, every `Line` backend: the simulated exchange's line, FXO through alsa-lib's
file plugin and the real pyalsaaudio, the voice modem over a pty (real pyserial against
the USR and Conexant emulators), the ``modem-sim`` backend on the virtual clock, and
`SipLine` over loopback UDP.

Each backend carries the same call: ringing, then (once answered) the caller talks, our
side plays a tone over the caller's voice, the caller presses 5, then hangs up (the busy
tone; a BYE on SIP). The contract, checked on what each backend did with that call:

- every tick is 160 signed 16-bit samples, on- and off-hook, and every fact beside the
  audio is one of the typed line events (``linebox.hw.line.LineEvent``);
- ``set_hook`` reaches the far end (the exchange, the relay pin, the modem);
- the declared capabilities are what the backend does: ``reports_dtmf`` -> the key comes
  as one ``KeyPressed`` (else only as audio the listener decodes), ``reports_hangup`` ->
  a ``HungUp`` after the caller left and none before (else none at all),
  ``full_duplex`` -> the caller is heard while we play (else silence while we play);
- faults are typed (``Fault(key, reason)``, then ``FaultCleared(key)``), several at once
  clear each on its own;
- ``close`` releases what the backend holds, and a second ``close`` is harmless.
"""

import os
import socket
import struct
import time
import typing
from array import array
from dataclasses import dataclass, field

import pytest

from linebox import FRAME
from linebox.clock import ManualClock
from linebox.dsp import gen
from linebox.dsp.dtmf import DtmfDetector
from linebox.dsp.levels import dbm0
from linebox.dsp.plans import tone_signal
from linebox.events import Bus
from linebox.hw.audio import AlsaAudio
from linebox.hw.fxo import FxoLine
from linebox.hw.gpio import SimPins
from linebox.hw.line import Fault, FaultCleared, HungUp, KeyPressed, LineEvent, RingSeen, Tick
from linebox.hw.modem import ModemLine
from linebox.hw.modem.emulator import ModemSimLine, PtyModem
from linebox.sim.exchange import CONNECTED, GONE, SimExchange
from linebox.sim.scenario import parse_scenario
from linebox.sip.rtp import SipLine
from linebox.sip.sdp import Media
from linebox.wavfile import read_wav, write_wav
from test_audio_alsa import FifoSink, alsa_file_pcm
from test_fxo import HOOK_PIN, LOOP_PIN, RING_PIN, RingSignal

F = FRAME / 8000
LINE_EVENT_TYPES = typing.get_args(LineEvent)

# -- the call every backend carries (seconds from the answer) ---------------------------
RING_SECONDS = 2.5          # on-hook, ringing, before the answer (inside the first US burst gap)
TALK = (0.3, 1.5)           # the caller talks
PLAY = (0.5, 1.1)           # ... and we play a tone over the caller's voice
HEARD_WHILE_PLAYING = (0.7, 1.05)   # where a half-duplex line has switched to playing
KEY_AT, KEY_ON, KEY_OFF, KEY = 2.0, 0.1, 0.1, "5"
HANGUP_AT = 2.6             # the caller hangs up: busy tone (analog), BYE (SIP)
CALL_END = 6.0              # we hang up (a modem reports busy after a cadence or two)


def _frames(t0: float, t1: float) -> range:
    return range(round(t0 / F), round(t1 / F))


def caller_audio(speech: array) -> array:
    """What the caller sends from the answer on, the same for every analog backend
    (the sim exchange builds the same from its scenario steps)."""
    audio = gen.silence(TALK[0]) + speech
    audio += gen.silence(KEY_AT - len(audio) / 8000)
    audio += gen.dtmf(KEY, KEY_ON, KEY_OFF, -7.0, -5.0)       # as the exchange makes a key
    audio += gen.silence(HANGUP_AT - len(audio) / 8000)
    return audio + tone_signal("us", "busy", CALL_END - HANGUP_AT + 1.0)


PLAYED = gen.tone(1000.0, PLAY[1] - PLAY[0], -10.0)


def played_frame(k: int) -> array | None:
    i = k - round(PLAY[0] / F)
    if 0 <= i < len(PLAYED) // FRAME:
        return PLAYED[i * FRAME:(i + 1) * FRAME]
    return None


@pytest.fixture(scope="module")
def speech(speech_files) -> array:
    """1.2 s of a recorded voice, loud all through the window checked while we play."""
    voice = read_wav(speech_files[1])
    n = round((TALK[1] - TALK[0]) * 8000)
    skip = round((HEARD_WHILE_PLAYING[0] - TALK[0]) * 8000)
    width = round((HEARD_WHILE_PLAYING[1] - HEARD_WHILE_PLAYING[0]) * 8000)
    for start in range(0, len(voice) - n, 800):
        seg = voice[start:start + n]
        window = seg[skip:skip + width]
        if all(dbm0(window[i:i + 800]) > -35.0 for i in range(0, len(window) - 799, 800)):
            return seg
    raise AssertionError("no voiced stretch in the test speech")


# -- the backends ------------------------------------------------------------------------
class Backend:
    """One Line backend and its far end. ``tick(out, k)`` moves the far end's world one
    frame (k: frames since the answer, negative while ringing) around ``line.tick``."""

    name = ""
    ring_seconds = RING_SECONDS
    rings = True                # the far end can ring this line

    line = None

    def before(self, k: int) -> None:
        """The far end's part of frame ``k`` before the line ticks."""

    def after(self, k: int) -> None:
        """... and after."""

    def tick(self, out, k: int) -> Tick:
        self.before(k)
        tick = self.line.tick(out)
        self.after(k)
        return tick

    def answered(self) -> None:
        """The line just went off-hook."""

    def far_off_hook(self) -> bool | None:
        """Whether the far end sees us off-hook (None: it cannot tell, the hook is signalling)."""
        raise NotImplementedError

    # faults and release: each backend its own way
    expected_faults: list = []

    def fault(self) -> list:
        """Bring faults about: steps (action for ``act``, seconds to tick, event type to
        tick until)."""
        pytest.skip(f"{self.name}: no fault of its own to bring about")

    def release_check(self) -> None:
        pytest.skip(f"{self.name}: holds nothing to release")

    def shutdown(self) -> None:
        self.line.close()


def _sim_scenario(tmp_path, speech) -> dict:
    wav = tmp_path / "voice.wav"
    write_wav(wav, speech)
    talk_end = TALK[0] + len(speech) / 8000
    return {"call": [{"line": 1, "at": 0.0, "steps": [
        {"silence": TALK[0]}, {"say": wav.name}, {"silence": round(KEY_AT - talk_end, 3)},
        {"dtmf": KEY, "on": KEY_ON, "off": KEY_OFF},
        {"silence": round(HANGUP_AT - KEY_AT - KEY_ON - KEY_OFF, 3)}, {"hangup": "busy"}]}],
        "start": "2024-03-05T09:30:00", "line_noise_dbm0": -70.0, "echo_return_loss_db": 24.0}


class SimBackend(Backend):
    name = "sim"

    def __init__(self, tmp_path, speech) -> None:
        sc = parse_scenario(_sim_scenario(tmp_path, speech), tmp_path, "contract")
        self.exchange = SimExchange(sc, {1: "us"}, Bus())
        self.simline = self.exchange.line(1)
        self.line = self.simline

    def after(self, k: int) -> None:
        self.exchange.advance()

    def far_off_hook(self) -> bool:
        return self.simline.phase in (CONNECTED, GONE)


class ModemSimBackend(SimBackend):
    """``driver = "modem-sim"``: the real ModemLine, an emulated modem, the exchange's line."""

    def __init__(self, tmp_path, speech, chipset: str, duplex: str) -> None:
        super().__init__(tmp_path, speech)
        self.name = f"modem-sim-{chipset}-{duplex}"
        self.line = ModemSimLine(self.simline, 1, "us", chipset, duplex=duplex)

    def far_off_hook(self) -> bool:
        return self.line.core.offhook and super().far_off_hook()

    expected_faults = [("Fault", "modem"), ("FaultCleared", "modem")]

    def fault(self) -> list:
        # Off-hook, the emulated modem stops sending receive audio (a stalled USB modem),
        # then sends it again: the driver resets it on its next try.
        for k in range(3):
            self.tick(None, k)
        self.line.set_hook(True)
        self.line.core.streaming = False
        return [(None, 0.0, Fault), ("stream", 0.0, FaultCleared)]

    def act(self, what: str) -> None:
        if what == "stream":
            self.line.core.streaming = True

    def release_check(self) -> None:
        line = self.line
        for k in range(5):
            self.tick(None, k)
        line.set_hook(True)
        for k in range(5, 10):
            self.tick(None, k)
        drops = line.core.dtr_drops
        line.close()
        line.close()
        assert not line.core.offhook                 # hung up (ATH) ...
        assert line.core.dtr_drops > drops           # ... and the port let go (DTR dropped)
        assert line.driver.state == "closed" and line.driver._port is None


class FxoBackend(Backend):
    name = "fxo"

    def __init__(self, tmp_path, speech) -> None:
        line_audio = gen.silence(self.ring_seconds) + caller_audio(speech)
        line_audio = gen.mix(line_audio, gen.white_noise(len(line_audio) / 8000, -70.0))
        self.mp = pytest.MonkeyPatch()
        self.fifo = tmp_path / "played.fifo"
        device, self.line_path, _ = alsa_file_pcm(tmp_path / "alsa", line_audio, 30.0,
                                                  monkeypatch=self.mp, played=self.fifo)
        self.sink = FifoSink(self.fifo)
        self.device = device
        self.clock = ManualClock()
        self.pins = SimPins(self.clock)
        self.line = FxoLine(1, "us", pins=self.pins, audio_factory=lambda: AlsaAudio(device),
                            hook_pin=HOOK_PIN, ring_pin=RING_PIN, loop_pin=LOOP_PIN,
                            clock=self.clock, sleep=self.clock.sleep)
        self.pins.drive_low(LOOP_PIN)                # line voltage present (active low)
        self.ring = RingSignal(self.pins, RING_PIN, self.clock, "us")
        self.ring.start()
        self.sink_open = True

    def before(self, k: int) -> None:
        self.ring.advance(F)
        self._read_played()

    def answered(self) -> None:
        self.ring.stop()                             # the exchange stops ringing on answer

    def _read_played(self) -> None:
        if not self.sink_open:
            return
        try:                                         # keep the playback pipe from filling
            os.read(self.sink.fd, 1 << 16)
        except (BlockingIOError, OSError):
            pass

    def far_off_hook(self) -> bool:
        return self.pins.levels[HOOK_PIN] is True    # hook_active_high: high = off-hook

    # Two at once: the line voltage goes first, the card second; the card comes back
    # while the voltage is still gone (issue 9: the runner must not show "idle" then).
    expected_faults = [("Fault", "line"), ("Fault", "audio"), ("FaultCleared", "audio"),
                       ("FaultCleared", "line")]

    def fault(self) -> list:
        # Line voltage lost (10 s on-hook without it), then the sound card unplugged.
        self.ring.stop()
        self.pins.drive_high(LOOP_PIN)
        return [(None, 11.0, Fault), ("unplug", 2.0, None), ("replug", 5.0, FaultCleared),
                ("voltage", 1.0, None)]

    def act(self, what: str) -> None:
        if what == "unplug":
            self.sink_open = False
            self.sink.pull_the_plug()
            self.line_path.rename(self.line_path.with_suffix(".away"))
        elif what == "replug":
            self.line_path.with_suffix(".away").rename(self.line_path)
        elif what == "voltage":
            self.pins.drive_low(LOOP_PIN)

    def release_check(self) -> None:
        line = self.line
        self.tick(None, 0)
        line.set_hook(True)
        self.tick(None, 1)
        assert line.audio is not None
        line.close()
        line.close()
        assert self.pins.levels[HOOK_PIN] is False            # the relay on-hook, still driven
        assert self.pins.modes.get(HOOK_PIN) == "out"
        assert sorted(self.pins.released) == sorted([RING_PIN, LOOP_PIN])
        assert self.pins.callbacks == {}
        assert line.audio is None                              # the sound card let go

    def shutdown(self) -> None:
        self.line.close()
        if self.sink_open:
            os.close(self.sink.fd)
        self.mp.undo()


class PtyModemBackend(Backend):
    """The real driver and pyserial on a pty, the emulator on wall time."""

    ring_seconds = 1.0

    def __init__(self, tmp_path, speech, chipset: str, duplex: str) -> None:
        self.name = f"modem-{chipset}-{duplex}"
        self.tmp_path = tmp_path
        self.emu = PtyModem(chipset, tmp_path / "ttyContract").__enter__()
        self.line = self._driver(duplex)
        self.duplex = duplex
        self.emu.feed_audio(caller_audio(speech))    # heard once the modem is off-hook

    def _driver(self, duplex: str) -> ModemLine:
        return ModemLine(1, self.emu.path, "us", rtscts=False, duplex=duplex,
                         command_timeout=0.5, reset_timeout=0.5, backoff=(0.05, 0.4),
                         callerid_quiet=0.15, keepalive=60.0)

    def before(self, k: int) -> None:
        if k == -round(self.ring_seconds / F) + 1:   # the modem is set up by the first tick
            self.emu.ring(2, period=0.4)

    def far_off_hook(self) -> bool:
        return self.emu.offhook

    expected_faults = [("Fault", "modem"), ("FaultCleared", "modem")]

    def fault(self) -> list:
        self.line.tick(None)
        assert self.line.state == "idle"
        return [("unplug", 0.0, Fault), ("replug", 0.0, FaultCleared)]

    def act(self, what: str) -> None:
        getattr(self.emu, what)()

    def release_check(self) -> None:
        line = self.line
        line.tick(None)
        line.set_hook(True)
        line.tick(None)
        assert self.emu.offhook
        line.close()
        line.close()
        assert self.emu.wait_for(lambda e: not e.offhook and not e._dte_open, 3.0)
        assert line._port is None and line.state == "closed"
        # The port is free: another driver opens it and sets the modem up.
        again = self._driver(self.duplex)
        try:
            again.tick(None)
            assert again.state == "idle"
        finally:
            again.close()

    def shutdown(self) -> None:
        self.line.close()
        self.emu.__exit__(None, None, None)


class SipBackend(Backend):
    """SipLine on a loopback UDP socket; the phone is a socket the test sends RTP from,
    on the line's own (virtual) clock. ``rfc4733``: the key as telephone-events."""

    rings = False
    ring_seconds = 0.0

    def __init__(self, tmp_path, speech, rfc4733: bool) -> None:
        self.name = "sip-rfc4733" if rfc4733 else "sip-inband"
        self.rfc4733 = rfc4733
        self.audio = caller_audio(speech)
        ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ours.bind(("127.0.0.1", 0))
        self.phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.phone.bind(("127.0.0.1", 0))
        self.phone.setblocking(False)
        self.to = ours.getsockname()
        media = Media("127.0.0.1", self.phone.getsockname()[1], "PCMU", 0,
                      101 if rfc4733 else None, "sendrecv")
        self.clock = ManualClock(1000.0)
        self.line = SipLine(ours, media, "127.0.0.1", clock=self.clock, sleep=self.clock.sleep)
        self.ended = False

    def before(self, k: int) -> None:
        from linebox.dsp import g711

        try:                       # what the line sent us: read it, the phone's buffer stays small
            while self.phone.recv(2048):
                pass
        except BlockingIOError:
            pass
        if k < 0:
            return
        if k * F >= HANGUP_AT:
            if not self.ended:
                self.ended = True
                self.line.end("bye")
            return
        ts = 4000 + k * FRAME
        key = _frames(KEY_AT, KEY_AT + KEY_ON + KEY_OFF)
        if self.rfc4733 and k in key:
            # RFC 4733 §2.5: every packet of the event carries its start timestamp; the
            # last three are the end packets. Audio stays silent meanwhile.
            i = k - key.start
            on = round(KEY_ON / F)
            end = 0x80 if i >= on - 1 else 0
            if i < on + 2:
                dur = FRAME * min(i + 1, on)
                self.phone.sendto(struct.pack("!BBHII", 0x80, 101, k, 4000 + key.start * FRAME, 77)
                                  + struct.pack("!BBH", int(KEY), end | 10, dur), self.to)
            frame = gen.silence(F)
        else:
            frame = self.audio[k * FRAME:(k + 1) * FRAME]
        self.phone.sendto(struct.pack("!BBHII", 0x80, 0, k, ts, 77) + g711.ulaw_encode(frame), self.to)

    def far_off_hook(self) -> None:
        return None

    def release_check(self) -> None:
        port = self.line.sock.getsockname()
        self.line.tick(None)
        self.line.close()
        self.line.close()
        assert self.line.sock.fileno() == -1
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(port)                 # the RTP port is free again
        finally:
            s.close()

    def shutdown(self) -> None:
        self.line.close()
        self.phone.close()


BACKENDS = {
    "sim": lambda tmp, sp: SimBackend(tmp, sp),
    "fxo-alsa-file": lambda tmp, sp: FxoBackend(tmp, sp),
    "modem-pty-usr": lambda tmp, sp: PtyModemBackend(tmp, sp, "usr", "auto"),
    "modem-pty-conexant-half": lambda tmp, sp: PtyModemBackend(tmp, sp, "conexant", "half"),
    "modem-sim-usr": lambda tmp, sp: ModemSimBackend(tmp, sp, "usr", "auto"),
    "modem-sim-conexant-half": lambda tmp, sp: ModemSimBackend(tmp, sp, "conexant", "half"),
    "sip-inband": lambda tmp, sp: SipBackend(tmp, sp, False),
    "sip-rfc4733": lambda tmp, sp: SipBackend(tmp, sp, True),
}


# -- the call, recorded once per backend -------------------------------------------------
@dataclass
class Record:
    name: str
    ticks: list = field(default_factory=list)     # (t from the answer, off_hook, Tick)
    far: list = field(default_factory=list)       # (t, the far end's view of the hook)
    declared: dict = field(default_factory=dict)

    def during(self, t0: float, t1: float, off_hook: bool | None = True) -> list[Tick]:
        return [tk for t, oh, tk in self.ticks
                if t0 <= t < t1 and (off_hook is None or oh == off_hook)]

    def events(self, kind=None) -> list[tuple[float, object]]:
        return [(t, e) for t, _, tk in self.ticks for e in tk.events
                if kind is None or isinstance(e, kind)]


def run_call(backend: Backend) -> Record:
    rec = Record(backend.name)
    line = backend.line
    rec.far.append((None, backend.far_off_hook()))
    for k in range(-round(backend.ring_seconds / F), 0):
        rec.ticks.append((k * F, line.off_hook, backend.tick(None, k)))
    line.set_hook(True)
    backend.answered()
    rec.far.append((0.0, backend.far_off_hook()))
    for k in _frames(0.0, CALL_END):
        rec.ticks.append((k * F, line.off_hook, backend.tick(played_frame(k), k)))
    line.set_hook(False)
    for k in _frames(CALL_END, CALL_END + 0.2):
        rec.ticks.append((k * F, line.off_hook, backend.tick(None, k)))
    rec.far.append((CALL_END, backend.far_off_hook()))
    rec.declared = {name: getattr(line, name) for name in ("reports_dtmf", "reports_hangup",
                                                           "full_duplex")}
    return rec


@pytest.fixture(scope="module", params=list(BACKENDS))
def call(request, tmp_path_factory, speech) -> Record:
    backend = BACKENDS[request.param](tmp_path_factory.mktemp(request.param), speech)
    try:
        return run_call(backend)
    finally:
        backend.shutdown()


@pytest.fixture(params=list(BACKENDS))
def backend(request, tmp_path, speech):
    b = BACKENDS[request.param](tmp_path, speech)
    yield b
    b.shutdown()


# -- the contract ----------------------------------------------------------------------------
def test_every_tick_is_160_samples_and_every_fact_a_typed_line_event(call):
    assert len(call.ticks) > 250
    for t, _, tick in call.ticks:
        assert isinstance(tick, Tick)
        assert isinstance(tick.audio, array) and tick.audio.typecode == "h", t
        assert len(tick.audio) == FRAME, (t, len(tick.audio))
        assert isinstance(tick.ringing, bool) and tick.loop in (None, True, False)
        assert isinstance(tick.events, tuple)
        for ev in tick.events:
            assert isinstance(ev, LINE_EVENT_TYPES), (t, ev)
    assert all(isinstance(v, bool) for v in call.declared.values()), call.declared


def test_set_hook_reaches_the_far_end(call):
    on_hook = [oh for t, oh, _ in call.ticks if t < 0 or t >= CALL_END]
    off_hook = [oh for t, oh, _ in call.ticks if 0 <= t < CALL_END]
    assert off_hook and all(off_hook)
    if call.name.startswith("sip"):
        # A SIP call's line is off-hook from the start: the hook is the signalling's.
        assert call.far == [(None, None), (0.0, None), (CALL_END, None)]
        return
    assert not any(on_hook)
    assert call.far == [(None, False), (0.0, True), (CALL_END, False)]


def test_a_ringing_line_shows_it_on_hook(call):
    if call.name.startswith("sip"):
        pytest.skip("a SIP call does not ring its line (the INVITE rings)")
    ringing = call.during(-RING_SECONDS, 0.0, off_hook=False)
    assert any(tk.ringing for tk in ringing)
    rings = call.events(RingSeen)
    assert all(t < 0 for t, _ in rings)        # only while on-hook
    assert not any(tk.ringing for tk in call.during(0.2, CALL_END))


def _keys_heard(ticks: list[Tick]) -> list[str]:
    det = DtmfDetector()
    keys = []
    for tk in ticks:
        keys += det.feed(tk.audio, sum(x * x for x in tk.audio))
    keys += det.flush()
    return [k["digit"] for k in keys]


def test_reports_dtmf_says_whether_the_key_comes_as_key_pressed(call):
    pressed = call.events(KeyPressed)
    if call.declared["reports_dtmf"]:
        assert [e.digit for _, e in pressed] == [KEY]
        (t, _), = pressed
        assert KEY_AT <= t <= KEY_AT + 0.5, t
    else:
        assert pressed == []
        # The key then reaches the flow only as audio: the listener's own detector finds it.
        assert _keys_heard(call.during(KEY_AT - 0.5, KEY_AT + 0.6)) == [KEY]


def test_reports_hangup_says_whether_the_caller_leaving_comes_as_hung_up(call):
    hung = call.events(HungUp)
    if call.declared["reports_hangup"]:
        assert hung, "declares reports_hangup but never reported one"
        assert all(t >= HANGUP_AT for t, _ in hung), hung
        assert all(isinstance(e.cause, str) and e.cause for _, e in hung)
        if call.name.startswith("sip"):
            assert [e.cause for _, e in hung] == ["bye"]
    else:
        assert hung == []
        # The caller's leaving is on the line for the listener: the busy tone.
        assert dbm0(_audio(call.during(HANGUP_AT + 0.2, CALL_END))) > -40.0


def _audio(ticks: list[Tick]) -> array:
    out = array("h")
    for tk in ticks:
        out.extend(tk.audio)
    return out


def test_full_duplex_says_whether_the_caller_is_heard_while_we_play(call):
    while_playing = _audio(call.during(*HEARD_WHILE_PLAYING))
    before = _audio(call.during(TALK[0] + 0.05, PLAY[0]))
    assert dbm0(before) > -40.0                  # the caller is heard while we are quiet
    if call.declared["full_duplex"]:
        assert dbm0(while_playing) > -40.0
    else:
        assert max(map(abs, while_playing)) == 0    # a half-duplex modem plays or records


def test_faults_are_typed_and_each_clears_with_its_own_key(backend):
    facts = []
    k = 0
    for act, seconds, until in backend.fault():
        if act is not None:
            backend.act(act)
        first, n, deadline = len(facts), round(seconds / F), time.monotonic() + 20.0
        while n > 0 or (until is not None and not any(isinstance(e, until) for e in facts[first:])):
            assert time.monotonic() < deadline, f"no {until.__name__} after {act}: {facts}"
            facts += backend.tick(None, k).events
            k += 1
            n -= 1
    assert all(isinstance(e, LINE_EVENT_TYPES) for e in facts), facts
    faults = [e for e in facts if isinstance(e, Fault | FaultCleared)]
    for e in faults:
        assert isinstance(e.key, str) and e.key
        if isinstance(e, Fault):
            assert isinstance(e.reason, str) and e.reason
    # Every fault begins once and clears once, with its own key, in that order.
    for key in {e.key for e in faults}:
        assert [type(e) for e in faults if e.key == key] == [Fault, FaultCleared], (key, faults)
    assert [(type(e).__name__, e.key) for e in faults] == backend.expected_faults


def test_close_releases_what_the_line_holds_and_twice_is_harmless(backend):
    backend.release_check()
