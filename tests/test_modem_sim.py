"""`linebox sim` with driver = "modem-sim": the real modem driver and the call engine
against the emulated USR and Conexant modems, on the virtual clock."""

import json
import tomllib

import pytest

from conftest import run_linebox
from linebox.config import parse_config
from linebox.hw.modem.emulator import ModemSimLine
from linebox.sim.runner import build, run
from linebox.sim.scenario import load_scenario
from simkit import START, Sim, of, speech_wav

MODES = [("usr", "auto"), ("usr", "half"), ("conexant", "auto"), ("conexant", "half")]

TAKE = """
[[call]]
line = 1
at = 1.0
caller = {{ number = "5551234567", name = "JOHN DOE" }}
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]
"""

REVIEW = """
[[call]]
line = 1
at = 1.0
caller = {{ number = "5551234567" }}
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ dtmf = "#" }},
          {{ wait = "prompt:review" }}, {{ wait = {{ seconds = 1.0 }} }}, {{ dtmf = "3" }},
          {{ wait = "prompt:message_sent" }}, {{ hangup = "busy" }} ]
"""


class ModemSim(Sim):
    """A Sim whose line 1 is a modem-sim line."""

    def __init__(self, tmp_path, chipset, duplex="auto"):
        tmp_path.mkdir(parents=True, exist_ok=True)
        super().__init__(tmp_path)
        text = self.config_path.read_text().replace(
            'driver = "sim"', f'driver = "modem-sim"\nchipset = "{chipset}"\nduplex = "{duplex}"')
        self.config_path.write_text(text)
        self.config = parse_config(tomllib.loads(text), str(self.config_path))

    def run(self, scenario, start=START, hook=None):
        path = self.write_scenario(scenario)
        app, exchange, transcript = build(self.config, load_scenario(path), None, True,
                                          clock_start=start)
        self.app = app
        if hook is not None:
            hook(app, exchange)
        try:
            run(app, exchange, transcript)
        finally:
            app.close()
        return transcript.events


def modem_line(app) -> ModemSimLine:
    (runner,) = app.runners
    assert isinstance(runner.line, ModemSimLine)
    return runner.line


def inject_after(app, exchange, event, delay, code):
    """DLE ``code`` from the modem, ``delay`` s of line time after the exchange's ``event``."""
    line = modem_line(app)
    due = []
    exchange.bus.subscribe(lambda ev: ev.get("event") == event and due.append(
        line._frame_t + delay))
    tick = line.tick

    def ticking(out=None):
        if due and line._frame_t >= due[0]:
            due.pop(0)
            line.core.inject(b"\x10" + code)
        return tick(out)
    line.tick = ticking


@pytest.mark.parametrize("chipset,duplex", MODES)
def test_whole_call_through_the_modem_driver_on_the_virtual_clock(tmp_path, speech_files,
                                                                  chipset, duplex):
    sim = ModemSim(tmp_path, chipset, duplex)
    voice = speech_wav(tmp_path, speech_files[0], 4.0)
    events = sim.run(TAKE.format(voice=voice))
    kinds = [e["event"] for e in events]
    assert kinds.index("ring") < kinds.index("callerid") < kinds.index("answer")
    assert of(events, "callerid", number="5551234567", name="JOHN DOE")
    (saved,) = of(events, "message_saved")
    assert saved["caller_number"] == "5551234567"
    assert 3.5 <= saved["seconds"] <= 4.6
    assert [e["cause"] for e in of(events, "hangup_detected")] == ["busy"]
    assert not of(events, "line_fault")


@pytest.mark.parametrize("chipset,duplex", MODES)
def test_hash_reported_by_the_modem_goes_straight_to_the_review_menu(tmp_path, speech_files,
                                                                      chipset, duplex):
    sim = ModemSim(tmp_path, chipset, duplex)
    voice = speech_wav(tmp_path, speech_files[1], 3.0)
    events = sim.run(REVIEW.format(voice=voice))
    (end,) = of(events, "record_end", reason="key")
    (review,) = of(events, "prompt", name="review")
    assert review["t"] - end["t"] < 0.5          # not 5 s of silence first
    assert [e["digit"] for e in of(events, "dtmf")] == ["#", "3"]   # each key once
    (saved,) = of(events, "message_saved")
    assert 2.5 <= saved["seconds"] <= 3.5
    assert not of(events, "message_discarded")


@pytest.mark.parametrize("chipset", ["usr", "conexant"])
def test_early_modem_busy_report_still_cuts_at_the_tones_onset(tmp_path, speech_files, chipset):
    voice = speech_wav(tmp_path, speech_files[0], 4.0)
    base = ModemSim(tmp_path / "a", chipset).run(TAKE.format(voice=voice))
    early = ModemSim(tmp_path / "b", chipset).run(
        TAKE.format(voice=voice),
        hook=lambda app, ex: inject_after(app, ex, "caller_hangup", 1.5, b"b"))
    (s0,), (s1,) = of(base, "message_saved"), of(early, "message_saved")
    assert abs(s1["seconds"] - s0["seconds"]) <= 0.05
    assert [e["cause"] for e in of(early, "hangup_detected")] == ["busy"]


@pytest.mark.parametrize("chipset", ["usr", "conexant"])
def test_false_dial_tone_report_while_the_caller_talks_does_not_cut_the_message(
        tmp_path, speech_files, chipset):
    voice = speech_wav(tmp_path, speech_files[0], 6.0)
    events = ModemSim(tmp_path, chipset).run(
        TAKE.format(voice=voice),
        hook=lambda app, ex: inject_after(app, ex, "record_start", 1.5, b"d"))
    (saved,) = of(events, "message_saved")
    assert saved["seconds"] >= 5.5
    assert [e["cause"] for e in of(events, "hangup_detected")] == ["busy"]


def test_linebox_sim_runs_a_modem_sim_line_from_the_command_line(tmp_path, speech_files):
    sim = ModemSim(tmp_path, "conexant")
    voice = speech_wav(tmp_path, speech_files[2], 3.0)
    res = run_linebox("sim", sim.write_scenario(TAKE.format(voice=voice)), "--config",
                      sim.config_path, "--data", sim.data, "--json", timeout=300)
    assert res.returncode == 0, res.stderr.decode()
    events = [json.loads(x) for x in res.stdout.decode().splitlines()]
    assert of(events, "message_saved", line=1)


@pytest.mark.parametrize("old,new,needle", [
    ('chipset = "conexant"', 'chipset = "zyxel"', "chipset"),
    ('duplex = "auto"', 'duplex = "both"', "duplex"),
    ('duplex = "auto"', 'init = "ATZ\\nATH"', "init"),
    ('duplex = "auto"', 'init = "+GCI=B5"', "init")])
def test_bad_modem_sim_keys_are_one_line_errors(tmp_path, old, new, needle):
    sim = ModemSim(tmp_path, "conexant")
    sim.config_path.write_text(sim.config_path.read_text().replace(old, new))
    res = run_linebox("config", "check", "--config", sim.config_path)
    assert res.returncode == 2
    err = res.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("linebox: error: ") and needle in err, err


def test_modem_keys_are_refused_on_other_drivers(tmp_path):
    sim = Sim(tmp_path)
    sim.config_path.write_text(sim.config_path.read_text().replace(
        'driver = "sim"', 'driver = "sim"\nchipset = "usr"'))
    res = run_linebox("config", "check", "--config", sim.config_path)
    assert res.returncode == 2 and 'only for driver "modem-sim"' in res.stderr.decode()


@pytest.mark.parametrize("chipset", ["usr", "conexant"])
def test_false_dial_tone_report_before_a_hash_does_not_end_the_call(tmp_path, speech_files,
                                                                    chipset):
    voice = speech_wav(tmp_path, speech_files[1], 3.0)
    events = ModemSim(tmp_path, chipset).run(
        REVIEW.format(voice=voice),
        hook=lambda app, ex: inject_after(app, ex, "record_start", 1.0, b"d"))
    assert of(events, "prompt", name="review") and of(events, "prompt", name="message_sent")
    (saved,) = of(events, "message_saved")
    assert 2.5 <= saved["seconds"] <= 3.5
    # The false report ended nothing: no hang-up was taken before the message was sent
    # (the caller's real busy tone may still be heard while the goodbye plays).
    sent = of(events, "prompt", name="message_sent")[0]["t"]
    assert all(e["t"] > sent and e["cause"] == "busy" for e in of(events, "hangup_detected"))


TWO_CALLS = """
[[call]]
line = 1
at = 1.0
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]

[[call]]
line = 1
after = 20.0
caller = {{ number = "5550002222" }}
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]
"""


@pytest.mark.parametrize("chipset,duplex,state", [("usr", "auto", "duplex"),
                                                  ("conexant", "half", "transmit")])
def test_modem_that_will_not_leave_its_data_state_is_a_fault_and_the_next_call_is_answered(
        tmp_path, speech_files, chipset, duplex, state):
    voice = speech_wav(tmp_path, speech_files[0], 3.0)

    def hook(app, exchange):
        core = modem_line(app).core
        first = []

        def on(ev):
            if ev.get("event") == "record_start" and not first:
                first.append(ev)
                core.stuck = True          # ignores DLE ^ / DLE ! / DLE ETX from now on
            elif ev.get("event") == "line_fault":
                core.stuck = False         # a DTR drop got it out; it behaves again
        exchange.bus.subscribe(on)

    events = ModemSim(tmp_path, chipset, duplex).run(TWO_CALLS.format(voice=voice), hook=hook)
    (fault,) = of(events, "line_fault")
    assert f"did not leave voice {state}" in fault["reason"]
    assert of(events, "line_fault_cleared")
    # The call in progress is lost (what reached the disk is kept); the next is taken.
    assert of(events, "message_saved")[-1]["caller_number"] == "5550002222"
    assert of(events, "answer", call=2)
