"""Calls out through a line (gateway/outbound.py) on the virtual clock: the real line
runner and listener against the simulated exchange and its callees, a stand-in phone
on the bridge's phone end (the SIP side is tested with baresip and SIPp elsewhere)."""

import logging
from array import array
from pathlib import Path

import pytest

from linebox import FRAME, RATE
from linebox.calls.engine import LineRunner
from linebox.config import ExtensionConfig, GatewayConfig
from linebox.dsp import gen
from linebox.events import Bus
from linebox.gateway.outbound import Outbound, Refused
from linebox.hw.fxo import tone_level_dbm0
from linebox.hw.line import SILENT_FRAME, Line, Tick
from linebox.sim.exchange import SimExchange
from linebox.sim.scenario import parse_scenario
from linebox.wavfile import write_wav


class Config:
    def __init__(self, **gateway) -> None:
        self.gateway = GatewayConfig(**gateway)


def ext(lines=(1,), dial=None, number="201") -> ExtensionConfig:
    return ExtensionConfig(number=number, name="Alice", ha1="0" * 32, lines=tuple(lines), dial=dial)


class Phone:
    """The phone side of an outbound call: says ``voice`` from ``speak_at`` (seconds),
    records what it hears, one frame per line frame."""

    def __init__(self, call, voice: array | None = None) -> None:
        self.call = call
        self.voice = voice
        self.heard = array("h")
        self.states: list[str] = []
        self.i = 0
        call.on_change(lambda c: self.states.append(c.state))

    def tick(self) -> None:
        end = self.call.phone_end
        if end.closed:
            return
        self.heard += end.pull()
        if self.voice is not None and self.call.state == "answered" and self.i + FRAME <= len(self.voice):
            end.push(self.voice[self.i:self.i + FRAME])
            self.i += FRAME
        else:
            end.push(SILENT_FRAME)


class World:
    def __init__(self, tmp_path: Path, callees, lines=(1,), plan="us", **gateway) -> None:
        sc = parse_scenario({"callee": callees, "start": "2024-03-05T09:30:00"}, tmp_path, "test")
        self.bus = Bus()
        self.events: list[dict] = []
        self.bus.subscribe(self.events.append)
        self.ex = SimExchange(sc, dict.fromkeys(lines, plan), self.bus)
        self.runners = [LineRunner(self.ex.line(i), i, plan, self.bus, lambda call: iter(()),
                                   rings_needed=lambda: 4) for i in lines]
        self.out = Outbound(Config(**gateway), lambda: self.runners)
        self.phones: list[Phone] = []

    def call(self, number="5551234", extension=None, voice=None, emergency=False) -> Phone:
        oc = self.out.place(extension or ext(), number, emergency)
        phone = Phone(oc, voice)
        self.phones.append(phone)
        return phone

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds * RATE / FRAME)):
            for r in self.runners:
                r.step()
            for p in self.phones:
                p.tick()
            self.ex.advance()

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["event"] == kind]


def tone_wav(tmp_path: Path, freq: float, seconds: float) -> str:
    path = tmp_path / f"tone{freq:.0f}.wav"
    write_wav(path, gen.tone(freq, seconds, -13.0))
    return path.name


def test_a_call_out_dials_the_number_and_bridges_both_ways(tmp_path):
    w = World(tmp_path, [{"number": "5551234", "answer_after_rings": 1, "steps": [
        {"silence": 0.5}, {"say": tone_wav(tmp_path, 1000.0, 3.0)}, {"silence": 1.0},
        {"hangup": "busy"}]}])
    phone = w.call(voice=gen.tone(700.0, 3.0, -13.0))
    w.run(25.0)
    (dialled,) = w.of("dialled")
    assert dialled["number"] == "5551234" and dialled["result"] == "answer"
    assert phone.states == ["early", "answered", "ended"]
    # The callee's 1 kHz reached the phone, and the phone's 700 Hz the callee.
    (rec,) = w.ex.callee_records
    assert tone_level_dbm0(rec.audio, 700.0) > tone_level_dbm0(rec.audio, 1000.0) + 10
    assert max(tone_level_dbm0(phone.heard[i:i + 8000], 1000.0)
               for i in range(0, len(phone.heard) - 8000, 4000)) > -20.0
    # The early media carried the ringback (440 + 480 Hz) to the phone before the answer.
    ans = w.of("callee_answer")[0]["t"]
    early = phone.heard[:int(ans * RATE)]
    assert max(tone_level_dbm0(early[i:i + 4000], 440.0)
               for i in range(0, len(early) - 4000, 4000)) > -30.0
    # The callee hung up with busy tone: the line went on-hook, the phone's end closed.
    assert [e["result"] for e in w.of("outbound_end")] == ["line_busy"]
    assert w.of("onhook") and phone.call.phone_end.closed
    assert w.of("outbound_start")[0]["number"] == "5551234"
    assert not w.of("dtmf")             # our own dialling was no key press
    assert w.runners[0].idle


@pytest.mark.parametrize("result, status", [("busy", 486), ("reorder", 503), ("sit", 404)])
def test_busy_reorder_and_sit_give_the_phone_its_final_status(tmp_path, result, status):
    w = World(tmp_path, [{"number": "5551234", "result": result}])
    phone = w.call()
    w.run(12.0)
    assert phone.states == ["early", "failed"]
    assert phone.call.status == status
    assert w.of("onhook") and w.of("callee_end")
    # The phone heard the tone itself (early media) before its final response.
    assert max(phone.heard) > 300


def test_an_unknown_number_is_sit_and_404(tmp_path):
    w = World(tmp_path, [{"number": "5551234"}])
    phone = w.call("5550000")
    w.run(14.0)
    assert phone.call.status == 404 and phone.call.result == "sit"


class DeadLine(Line):
    """Off-hook, loop current, but no dial tone (a line the exchange does not serve)."""

    def tick(self, out=None) -> Tick:
        return Tick(SILENT_FRAME, loop=self.off_hook or None)


def test_no_dial_tone_in_3_s_is_503_and_a_log_line_naming_the_line(tmp_path, caplog):
    w = World(tmp_path, [{"number": "1"}])
    w.runners = [LineRunner(DeadLine(2), 2, "us", w.bus, lambda c: iter(()), rings_needed=lambda: 4)]
    caplog.set_level(logging.WARNING, logger="linebox")
    phone = w.call(extension=ext(lines=(2,)))
    w.run(3.5)
    assert phone.states == ["failed"] and phone.call.status == 503
    assert phone.call.result == "no_dial_tone"
    assert any("line 2: no dial tone within 3 s" in r.getMessage() for r in caplog.records)
    assert not w.runners[0].line.off_hook


def test_the_phone_hanging_up_during_ringback_puts_the_line_on_hook(tmp_path):
    w = World(tmp_path, [{"number": "5551234", "result": "no_answer"}])
    phone = w.call()
    w.run(6.0)
    assert phone.states == ["early"]
    phone.call.hang_up("cancel")
    w.run(0.1)
    assert not w.ex.line(1).off_hook and w.of("callee_end")
    assert w.of("outbound_end")[-1]["result"] == "cancelled"


def test_all_permitted_lines_busy_is_486_and_a_second_line_is_taken(tmp_path):
    w = World(tmp_path, [{"number": "5551234", "result": "no_answer"}], lines=(1, 2))
    first = w.call(extension=ext(lines=(1, 2)))
    w.run(0.1)
    second = w.call(extension=ext(lines=(1, 2)))
    w.run(0.1)
    assert (first.call.line_id, second.call.line_id) == (1, 2)
    with pytest.raises(Refused) as e:
        w.call(extension=ext(lines=(1, 2)))
    assert e.value.status == 486


def test_dial_restrictions_and_emergency_numbers(tmp_path):
    w = World(tmp_path, [{"number": "911", "result": "no_answer"}], lines=(1, 2))
    with pytest.raises(Refused) as e:
        w.call(extension=ext(lines=()))
    assert e.value.status == 403 and "may not call out" in str(e.value)
    with pytest.raises(Refused) as e:
        w.call("6661234", extension=ext(dial=["555XXXX"]))
    assert e.value.status == 403 and "not in its dial patterns" in str(e.value)
    # An emergency number goes out whatever the patterns, even for a phone with no lines.
    phone = w.call("911", extension=ext(lines=(), dial=[]), emergency=True)
    w.run(3.0)
    assert phone.states == ["early"] and w.of("dialled")[0]["number"] == "911"


def test_a_half_duplex_line_is_never_used(tmp_path):
    w = World(tmp_path, [{"number": "1"}])
    w.runners[0].line.full_duplex = False
    with pytest.raises(Refused) as e:
        w.call()
    assert e.value.status == 503 and "half-duplex" in str(e.value)


@pytest.mark.parametrize("prefix, dialled, expected", [
    ("9", "95551234", ("5551234", False)),
    ("9", "5551234", None),
    ("9", "9", None),
    ("9", "911", ("911", True)),          # dialled directly (47 CFR 9.16)
    ("9", "9911", ("911", True)),
    ("", "5551234", ("5551234", False)),
    ("0", "0112", ("112", True)),
])
def test_the_number_behind_the_prefix(prefix, dialled, expected):
    out = Outbound(Config(outbound_prefix=prefix), lambda: [])
    assert out.number_for(dialled) == expected


def test_the_dialled_dtmf_is_read_back_by_multimon_ng(tmp_path):
    # An outside decoder (multimon-ng, C, its own Goertzel DTMF demodulator) reads the
    # digits Linebox sends down the line.
    import shutil
    import subprocess

    from linebox.gateway.outbound import dial_audio

    if not (shutil.which("multimon-ng") and shutil.which("sox")):
        pytest.skip("multimon-ng or sox is not installed (scripts/ensure-deps --test)")
    write_wav(tmp_path / "dial.wav", dial_audio("5551234*#0"))
    raw = tmp_path / "dial.raw"            # multimon-ng reads raw 22.05 kHz
    subprocess.run(["sox", str(tmp_path / "dial.wav"), "-t", "raw", "-r", "22050", "-e", "signed",
                    "-b", "16", "-c", "1", str(raw)], check=True)
    out = subprocess.run(["multimon-ng", "-q", "-a", "DTMF", "-t", "raw", str(raw)],
                         capture_output=True, text=True, timeout=30).stdout
    assert "".join(line.split(": ")[1] for line in out.splitlines() if line.startswith("DTMF: ")) \
        == "5551234*#0"


def test_a_one_digit_number_is_not_taken_for_dial_tone_coming_back(tmp_path):
    # The dial tone heard before dialling is still "current" just after one short
    # digit: that is no reorder.
    w = World(tmp_path, [{"number": "0", "answer_after_rings": 1}])
    phone = w.call("0")
    w.run(14.0)
    assert phone.states[:2] == ["early", "answered"]


class DeafExchangeLine(Line):
    """Dial tone that never stops: an exchange that takes no DTMF (pulse dialling only)."""

    def __init__(self, line_id):
        super().__init__(line_id)
        from linebox.dsp.plans import tone_signal
        self.tone = tone_signal("us", "dial", 1.0)
        self.i = 0

    def tick(self, out=None) -> Tick:
        if not self.off_hook:
            return Tick(SILENT_FRAME)
        frame = self.tone[self.i:self.i + FRAME]
        self.i = (self.i + FRAME) % len(self.tone)
        return Tick(frame, loop=True)


def test_dial_tone_that_never_stops_after_dialling_is_503(tmp_path):
    w = World(tmp_path, [{"number": "1"}])
    w.runners = [LineRunner(DeafExchangeLine(3), 3, "us", w.bus, lambda c: iter(()), rings_needed=lambda: 4)]
    phone = w.call(extension=ext(lines=(3,)))
    w.run(10.0)
    assert phone.states == ["early", "failed"]
    assert phone.call.status == 503 and phone.call.result == "reorder"


def test_a_number_longer_than_20_digits_is_no_outside_number():
    out = Outbound(Config(), lambda: [])
    assert out.number_for("9" + "1" * 20) == ("1" * 20, False)
    assert out.number_for("9" + "1" * 21) is None


@pytest.mark.parametrize("plan", ["us", "uk", "de", "fr", "eu"])
def test_every_plan_dial_tone_ringback_answer_and_busy(tmp_path, plan):
    w = World(tmp_path, [{"number": "5551234", "answer_after_rings": 2, "steps": [
        {"say": tone_wav(tmp_path, 1000.0, 3.0)}, {"hangup": "reorder"}]},
        {"number": "5550000", "result": "busy"}], plan=plan)
    phone = w.call()
    marks = {}
    phone.call.on_change(lambda c: marks.setdefault(c.state, w.ex.now))
    w.run(25.0)
    assert phone.states == ["early", "answered", "ended"], plan
    # Answered on hearing the answer (the end of ringback or the voice), not before it.
    (ans,) = w.of("callee_answer")
    assert ans["t"] < marks["answered"] < ans["t"] + 6.0, (plan, ans, marks)
    assert phone.call.result == "line_reorder"
    busy = w.call("5550000")
    w.run(12.0)
    assert busy.states == ["early", "failed"] and busy.call.status == 486, plan


def test_an_emergency_call_takes_any_free_line_when_the_phones_own_are_busy(tmp_path):
    w = World(tmp_path, [{"number": "911", "result": "no_answer"},
                         {"number": "5551234", "result": "no_answer"}], lines=(1, 2))
    first = w.call(extension=ext(lines=(1,)))
    w.run(0.1)
    with pytest.raises(Refused):
        w.call(extension=ext(lines=(1,)))           # its only line is busy
    sos = w.call("911", extension=ext(lines=(1,)), emergency=True)
    w.run(3.0)
    assert (first.call.line_id, sos.call.line_id) == (1, 2)
    assert sos.states == ["early"]


def test_a_loop_drop_after_the_answer_ends_the_call(tmp_path):
    w = World(tmp_path, [{"number": "5551234", "answer_after_rings": 1, "steps": [
        {"say": tone_wav(tmp_path, 1000.0, 2.0)}, {"hangup": "loop"}]}])
    phone = w.call()
    w.run(20.0)
    assert phone.states == ["early", "answered", "ended"]
    assert phone.call.result == "line_loop" and phone.call.phone_end.closed


def test_the_phone_hanging_up_after_the_answer_puts_the_line_on_hook(tmp_path):
    w = World(tmp_path, [{"number": "5551234", "answer_after_rings": 1, "steps": [
        {"say": tone_wav(tmp_path, 1000.0, 30.0)}]}])
    phone = w.call()
    w.run(14.0)
    assert phone.states == ["early", "answered"]
    phone.call.hang_up("bye")
    w.run(0.1)
    assert phone.states[-1] == "ended" and phone.call.result == "phone_bye"
    assert not w.ex.line(1).off_hook and w.of("callee_end")
