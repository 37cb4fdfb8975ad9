"""The simulated exchange's outgoing calls: off hook -> dial tone, the digits it hears,
then the scenario callee (answers and records, busy, reorder, SIT, never answers).

A stand-in firmware drives one line here; the digits it sends are DTMF made by SoX
(an outside generator), so the exchange is not only checked against the project's own
tone generator."""

import shutil
import subprocess
from array import array
from pathlib import Path

import pytest

from linebox import FRAME, RATE
from linebox.dsp import gen
from linebox.dsp.listener import Listener
from linebox.events import Bus
from linebox.sim.exchange import SimExchange
from linebox.sim.scenario import ScenarioError, parse_scenario
from linebox.wavfile import read_wav

START = "2024-03-05T09:30:00"
SILENT = array("h", bytes(2 * FRAME))


def make(callees, plan="us", calls=(), folder=Path("."), **top):
    data = {"callee": list(callees), "start": START, **top}
    if calls:
        data["call"] = list(calls)
    sc = parse_scenario(data, folder, "test")
    bus = Bus()
    events: list[dict] = []
    bus.subscribe(events.append)
    return SimExchange(sc, {1: plan}, bus), events


def kinds(events):
    return [e["event"] for e in events]


def run(ex, send: array | None = None, seconds: float = 1.0, listener: Listener | None = None):
    """Tick line 1 for ``seconds``, sending ``send`` (then silence); what came back."""
    line = ex.line(1)
    heard = array("h")
    tones = []
    n = round(seconds * RATE / FRAME)
    for i in range(n):
        out = None
        if send is not None and (i + 1) * FRAME <= len(send):
            out = send[i * FRAME:(i + 1) * FRAME]
        tick = line.tick(out)
        heard += tick.audio
        if listener is not None:
            tones += [e["tone"] for e in listener.feed(tick.audio) if e["type"] == "tone"]
        ex.advance()
    return heard, tones


def sox_dtmf(tmp_path: Path, digits: str, on=0.1, off=0.1) -> array:
    """``digits`` as DTMF made by SoX's ``synth`` (each key's two sines mixed, ``on``
    seconds, then ``off`` seconds of silence), 8 kHz 16-bit."""
    sox = shutil.which("sox")
    if sox is None:
        pytest.skip("sox is not installed (scripts/ensure-deps --test)")
    pairs = {d: gen.dtmf_freqs(d) for d in set(digits)}
    parts = []
    for i, d in enumerate(digits):
        lo, hi = pairs[d]
        p = tmp_path / f"k{i}.wav"
        subprocess.run([sox, "-n", "-r", "8000", "-b", "16", "-c", "1", str(p),
                        "synth", str(on), "sine", str(lo), "synth", str(on), "sine", "mix", str(hi),
                        "gain", "-12", "pad", "0", str(off)], check=True)
        parts.append(str(p))
    out = tmp_path / "dialled.wav"
    subprocess.run([sox, *parts, str(out)], check=True)
    return read_wav(out)


def off_hook_and_dial(ex, audio: array):
    ex.line(1).set_hook(True)
    return run(ex, audio, len(audio) / RATE + 0.2)


def test_off_hook_hears_the_plans_dial_tone():
    ex, events = make([{"number": "5551234"}], plan="de")
    ex.line(1).set_hook(True)
    listener = Listener("de")
    _, tones = run(ex, None, 2.0, listener)
    assert tones == ["dial"]
    # Nothing was dialled: no dialled event yet, and on-hook ends it quietly.
    ex.line(1).set_hook(False)
    assert "dialled" not in kinds(events) and "callee_end" not in kinds(events)


def test_the_exchange_hears_sox_dtmf_and_the_callee_answers_and_records(tmp_path):
    ex, events = make([{"number": "5551234", "answer_after_rings": 1,
                        "steps": [{"silence": 1.5}, {"hangup": "busy"}]}])
    digits = sox_dtmf(tmp_path, "5551234")
    listener = Listener("us")
    ex.line(1).set_hook(True)
    _, tones = run(ex, digits, len(digits) / RATE + 0.1, listener)
    (dialled,) = [e for e in events if e["event"] == "dialled"]
    assert dialled["number"] == "5551234" and dialled["result"] == "answer"
    assert dialled["callee"] == 1
    # En bloc: the number is complete with its last digit, not after a timeout.
    assert dialled["t"] < len(digits) / RATE + 0.1
    # Ringback for one ring (6 s in the us plan), then the answer.
    _, more = run(ex, None, 6.6, listener)
    tones += more
    assert tones == ["ringback"]           # (dialling at once: the dial tone was short)
    (ans,) = [e for e in events if e["event"] == "callee_answer"]
    assert 6.0 <= ans["t"] - dialled["t"] <= 6.6
    # The callee hears what the firmware sends: a 700 Hz tone.
    tone = gen.tone(700.0, 0.4, -13.0)
    run(ex, tone, 0.4)
    _, after = run(ex, None, 4.0, listener)
    (rec,) = ex.callee_records
    assert rec.number == "5551234"
    start = next(i for i, v in enumerate(rec.audio) if v) - 1    # (the sine starts at 0)
    assert start % FRAME == 0 and start > 0             # silence from the answer on
    assert rec.audio[start:start + len(tone)] == tone   # then the tone, sample for sample
    hang = [e for e in events if e["event"] == "callee_hangup"]
    assert hang and hang[0]["how"] == "busy"
    assert "busy" in after
    ex.line(1).set_hook(False)
    assert kinds(events)[-1] == "callee_end"


@pytest.mark.parametrize("result, tone", [("busy", "busy"), ("reorder", "reorder"), ("sit", "sit")])
def test_busy_reorder_and_sit_callees_give_their_tone(result, tone):
    ex, events = make([{"number": "5550000", "result": result}])
    listener = Listener("us")
    off_hook_and_dial(ex, gen.dtmf_string("5550000", 0.08, 0.08))
    _, tones = run(ex, None, 5.0, listener)
    assert tones == [tone]
    assert [e["result"] for e in events if e["event"] == "dialled"] == [result]
    assert not ex.callee_records


def test_an_unknown_number_gets_sit_after_the_inter_digit_timeout():
    ex, events = make([{"number": "5551234"}])
    sent = gen.dtmf_string("555", 0.08, 0.08)
    off_hook_and_dial(ex, sent)
    run(ex, None, 3.0)
    assert "dialled" not in kinds(events)          # still waiting for more digits
    _, tones = run(ex, None, 5.0, Listener("us"))
    (d,) = [e for e in events if e["event"] == "dialled"]
    assert d["number"] == "555" and d["result"] == "unknown"
    assert tones == ["sit"]


def test_no_answer_rings_on_and_dialling_nothing_gets_reorder():
    ex, events = make([{"number": "12", "result": "no_answer"}])
    off_hook_and_dial(ex, gen.dtmf_string("12"))
    _, tones = run(ex, None, 30.0, Listener("us"))
    assert tones == ["ringback"] and not ex.callee_records
    ex.line(1).set_hook(False)
    ex.line(1).set_hook(True)
    listener = Listener("us")
    _, tones = run(ex, None, 13.0, listener)
    assert tones == ["dial", "reorder"]
    assert [e["result"] for e in events if e["event"] == "dialled"][-1] == "timeout"


def test_a_busy_outgoing_line_holds_back_an_incoming_call():
    ex, events = make([{"number": "12"}], calls=[{"line": 1, "at": 0.5}])
    ex.line(1).set_hook(True)              # seized at t=0, before the call is due
    run(ex, None, 2.0)
    assert "incoming" not in kinds(events)
    ex.line(1).set_hook(False)
    run(ex, None, 0.1)
    assert "incoming" in kinds(events)


@pytest.mark.parametrize("callee, message", [
    ({}, "[[callee]] #1 key 'number': missing"),
    ({"number": 5551234}, "key 'number': must be 1 to 20 characters"),
    ({"number": "1", "result": "maybe"}, "key 'result': must be one of answer, busy"),
    ({"number": "1", "result": "busy", "steps": []}, "key 'steps': only with result = \"answer\""),
    ({"number": "1", "result": "sit", "record": "x.wav"}, "key 'record': only with result"),
    ({"number": "1", "record": 3}, "key 'record': must be the path of a WAV file"),
    ({"number": "1", "steps": [{"wait": "beep"}]}, "a callee can only wait { seconds = N }"),
    ({"number": "1", "answer_after_rings": -1}, "'answer_after_rings': must be an integer"),
    ({"number": "1", "colour": "red"}, "unknown key 'colour'"),
])
def test_bad_callees_are_one_line_errors(callee, message):
    with pytest.raises(ScenarioError) as e:
        parse_scenario({"callee": [callee]}, Path("."), "test")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_two_callees_with_one_number_are_refused():
    with pytest.raises(ScenarioError, match="more than one"):
        parse_scenario({"callee": [{"number": "1"}, {"number": "1"}]}, Path("."), "test")
