"""`linebox sim` with a simulated phone calling out ([[dial]]): the gateway's outbound
route, the line's listener and the exchange's callee, all on the virtual clock."""

import tomllib

from conftest import run_linebox
from linebox.config import parse_config
from linebox.dsp import gen
from linebox.hw.fxo import tone_level_dbm0
from linebox.sim.runner import build, run
from linebox.sim.scenario import load_scenario
from linebox.wavfile import read_wav, write_wav
from simkit import START, config_text

HA1 = "0" * 32


def setup(tmp_path, lines="[1]", dial=""):
    data = tmp_path / "data"
    extra = (f'\n[sip]\nenabled = false\n\n[[extension]]\nnumber = "201"\nname = "Alice"\n'
             f'ha1 = "{HA1}"\nlines = {lines}\n{dial}\n')
    path = tmp_path / "linebox.toml"
    path.write_text(config_text(data, attendant=extra))
    write_wav(tmp_path / "k1000.wav", gen.tone(1000.0, 2.0, -13.0))
    write_wav(tmp_path / "k700.wav", gen.tone(700.0, 2.0, -13.0))
    return path


SCENARIO = """
[[callee]]
number = "5551234"
answer_after_rings = 1
steps = [ { silence = 0.5 }, { say = "k1000.wav" }, { silence = 3.0 }, { hangup = "busy" } ]
record = "callee.wav"

[[dial]]
extension = "201"
number = "95551234"
at = 1.0
steps = [ { say = "k700.wav" } ]
record = "phone.wav"
"""


def simulate(tmp_path, cfg_path, scenario: str):
    sc = tmp_path / "sc.toml"
    sc.write_text(scenario)
    config = parse_config(tomllib.loads(cfg_path.read_text()), str(cfg_path))
    app, exchange, transcript = build(config, load_scenario(sc), None, True, clock_start=START)
    try:
        run(app, exchange, transcript)
    finally:
        app.close()
    return transcript.events, exchange


def loudest(samples, freq: float) -> float:
    return max(tone_level_dbm0(samples[i:i + 2000], freq) for i in range(0, len(samples) - 2000, 1000))


def kinds(events):
    return [e["event"] for e in events if e["event"] in (
        "phone_dial", "outbound_start", "dialled", "phone_progress", "callee_answer",
        "callee_hangup", "outbound_end", "onhook", "phone_hangup", "callee_end")]


def test_a_simulated_phone_dials_out_talks_and_the_callee_hangs_up(tmp_path):
    events, exchange = simulate(tmp_path, setup(tmp_path), SCENARIO)
    assert kinds(events) == ["phone_dial", "outbound_start", "phone_progress", "dialled",
                             "callee_answer", "phone_progress", "callee_hangup", "outbound_end",
                             "onhook", "callee_end", "phone_hangup"]
    progress = [(e["state"], e["status"]) for e in events if e["event"] == "phone_progress"]
    assert progress == [("early", 183), ("answered", 200)]
    (dialled,) = [e for e in events if e["event"] == "dialled"]
    assert dialled["number"] == "5551234" and dialled["line"] == 1
    (end,) = [e for e in events if e["event"] == "outbound_end"]
    assert end["result"] == "line_busy" and end["extension"] == "201"
    # The phone's 700 Hz reached the callee; the callee's 1 kHz reached the phone.
    (rec,) = exchange.callee_records
    assert loudest(rec.audio, 700.0) > -16.0
    assert loudest(read_wav(tmp_path / "phone.wav"), 1000.0) > -16.0
    assert read_wav(tmp_path / "callee.wav") == rec.audio      # its record file
    # Dial tone came within the 3 s, on the virtual clock.
    t = {}
    for e in events:
        t.setdefault(e["event"], e["t"])
    assert 1.0 <= t["phone_progress"] - t["phone_dial"] <= 3.0
    # 200 OK once the ringback is over (the callee answered in its silence).
    answered = [e["t"] for e in events if e["event"] == "phone_progress"][1]
    assert t["callee_answer"] < answered <= t["callee_answer"] + 6.0


def test_a_phone_that_may_not_call_out_is_refused_with_403(tmp_path):
    events, exchange = simulate(tmp_path, setup(tmp_path, lines="[]"), SCENARIO)
    (p,) = [e for e in events if e["event"] == "phone_progress"]
    assert p["state"] == "failed" and p["status"] == 403
    assert not [e for e in events if e["event"] == "outbound_start"]


def test_dial_patterns_refuse_a_number_and_an_emergency_number_still_goes_out(tmp_path):
    cfg = setup(tmp_path, lines="[1]", dial='dial = ["555XXXX"]')
    events, _ = simulate(tmp_path, cfg, SCENARIO.replace('"95551234"', '"96661234"') + """
[[callee]]
number = "911"
result = "busy"

[[dial]]
extension = "201"
number = "911"
at = 2.0
""")
    progress = [(e["state"], e["status"]) for e in events if e["event"] == "phone_progress"]
    assert progress == [("failed", 403), ("early", 183), ("failed", 486)]
    assert [e["number"] for e in events if e["event"] == "dialled"] == ["911"]


def test_linebox_sim_prints_the_call_out_in_its_transcript(tmp_path):
    cfg = setup(tmp_path)
    sc = tmp_path / "sc.toml"
    sc.write_text(SCENARIO)
    r = run_linebox("sim", str(sc), "--config", str(cfg), "--data", str(tmp_path / "d"), "--json")
    assert r.returncode == 0, r.stderr
    import json
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["event"] for e in events if e["event"] == "outbound_end"] == ["outbound_end"]
    assert any(e["event"] == "phone_progress" and e["state"] == "answered" for e in events)


def test_a_dial_for_an_extension_the_config_lacks_is_one_line_error(tmp_path):
    cfg = setup(tmp_path)
    sc = tmp_path / "sc.toml"
    sc.write_text(SCENARIO.replace('extension = "201"', 'extension = "299"'))
    r = run_linebox("sim", str(sc), "--config", str(cfg), "--data", str(tmp_path / "d"))
    assert r.returncode != 0
    assert b"[[dial]] #1: extension 299 is no [[extension]]" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_call_out_through_the_real_modem_driver_and_an_emulated_modem(tmp_path):
    # driver = "modem-sim": AT+VLS=1 seizes the line, the modem's audio carries the dial
    # tone, the DTMF and the callee; a USR's false dial-tone reports (DLE d) during the
    # call's progress are no hang-up.
    path = setup(tmp_path)
    path.write_text(path.read_text().replace('driver = "sim"', 'driver = "modem-sim"\nchipset = "usr"'))
    events, exchange = simulate(tmp_path, path, SCENARIO)
    progress = [(e["state"], e["status"]) for e in events if e["event"] == "phone_progress"]
    assert progress == [("early", 183), ("answered", 200)]
    assert [e["result"] for e in events if e["event"] == "outbound_end"] == ["line_busy"]
    (rec,) = exchange.callee_records
    assert loudest(rec.audio, 700.0) > -20.0
