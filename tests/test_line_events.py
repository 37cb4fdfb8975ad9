"""Typed line events: one key path whoever decoded the key, several faults at once."""

from array import array

import pytest

from linebox.dsp.listener import Listener
from linebox.hw.line import Fault, FaultCleared, KeyPressed, Line, Tick
from linebox.sim.runner import build, run
from simkit import Sim, of, speech_wav

CALLER = 'caller = { number = "5551234567", name = "JOHN DOE" }'


class KeysLikeAModem(Line):
    """A sim line whose keys are reported by the driver, as a voice modem reports them
    (``DLE`` + digit once the modem is sure, no onset time): the audio still carries the
    tones, as a modem's receive stream does."""

    reports_dtmf = True

    def __init__(self, inner) -> None:
        super().__init__(inner.id, inner.plan)
        self.inner = inner
        self._ears = Listener(inner.plan, callerid=False)

    def tick(self, out: array | None = None) -> Tick:
        tick = self.inner.tick(out)
        keys = tuple(KeyPressed(e["digit"]) for e in self._ears.feed(tick.audio) if e["type"] == "dtmf")
        return Tick(tick.audio, tick.ringing, tick.loop, tick.events + keys)

    def set_hook(self, off_hook: bool) -> None:
        super().set_hook(off_hook)
        self.inner.set_hook(off_hook)


def _run(sim: Sim, scenario: str, wrap) -> list[dict]:
    from linebox.sim.scenario import load_scenario

    path = sim.write_scenario(scenario)
    app, exchange, transcript = build(sim.config, load_scenario(path), None, True, clock_start=1795000000.0)
    if wrap:
        for r in app.runners:
            r.line = KeysLikeAModem(r.line)
            r.line_reports_dtmf = True
    try:
        run(app, exchange, transcript)
    finally:
        app.close()
    return transcript.events


@pytest.mark.parametrize("driver_keys", [False, True], ids=["listener-keys", "driver-keys"])
def test_hash_after_a_message_keeps_it_whoever_decoded_the_key(tmp_path, speech_files, driver_keys):
    sim = Sim(tmp_path)
    voice = speech_wav(tmp_path, speech_files[1], 6.0)
    ev = _run(sim, f'[[call]]\nline = 1\nat = 1.0\n{CALLER}\nsteps = [\n'
                   f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ silence = 0.5 }}, {{ dtmf = "#" }},\n'
                   f'{{ wait = "prompt:review" }}, {{ hangup = "busy" }}\n]\n', driver_keys)
    assert of(ev, "record_end")[0]["reason"] == "key"
    assert not of(ev, "message_discarded")
    (saved,) = of(ev, "message_saved")
    assert 5.0 <= saved["seconds"] <= 6.9
    # One key, counted once: the listener's copy of a driver-reported key is not used.
    assert [e["digit"] for e in of(ev, "dtmf")] == ["#"]


class FaultyLine(Line):
    """A line driven by a script of driver events, one tuple of events per frame."""

    def __init__(self, script) -> None:
        super().__init__(1)
        self.script = list(script)

    def tick(self, out=None) -> Tick:
        events = self.script.pop(0) if self.script else ()
        return Tick(array("h", bytes(320)), events=events)


def test_a_line_stays_in_fault_until_every_fault_is_cleared():
    from linebox.calls.engine import LineRunner
    from linebox.events import Bus

    bus, seen = Bus(), []
    bus.subscribe(seen.append)
    line = FaultyLine([
        (Fault("audio", "sound card: gone"),),
        (Fault("line", "no line voltage"),),
        (FaultCleared("audio"),),
        (),
        (FaultCleared("line"),),
        (),
    ])
    runner = LineRunner(line, 1, "us", bus, flow_factory=None, rings_needed=lambda: 2)
    states = []
    for _ in range(6):
        runner.step()
        states.append(runner.state)
    assert states == ["fault", "fault", "fault", "fault", "idle", "idle"]
    faults = [(e["event"], e.get("reason")) for e in seen if "fault" in e["event"]]
    assert faults == [("line_fault", "sound card: gone"), ("line_fault", "no line voltage"),
                      ("line_fault_cleared", "sound card: gone"),
                      ("line_fault_cleared", "no line voltage")]
    assert runner.faults == {}


def test_caller_id_text_is_cleaned_at_the_source():
    from linebox.caller import CallerId

    cid = CallerId.from_fields({"number": "555\x1b[2J1234", "name": "EVIL\r\nBcc: x@y\u2028",
                                "number_absent": "X", "name_absent": "P"})
    assert cid.number == "555[2J1234" and cid.name == "EVILBcc: x@y"
    assert cid.number_absent is None and cid.name_absent == "P"
    assert CallerId.from_fields({"number": "\x00\x07"}).number is None
