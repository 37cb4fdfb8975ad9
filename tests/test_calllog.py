"""The call log: built from the bus while the real firmware takes simulated calls, kept
durably (appended, fsynced, bounded) in the data folder."""

import json

from linebox.events import Bus
from linebox.voicemail.calllog import FILE_NAME, CallLog
from simkit import PIN, START, Sim, speech_wav

JOHN = '{ number = "5551234567", name = "JOHN DOE" }'


def _call(steps: str, caller: str = JOHN, when: str = "at = 1", extra: str = "") -> str:
    return f"[[call]]\nline = 1\n{when}\ncaller = {caller}\n{extra}steps = [ {steps} ]\n"


def test_each_outcome_is_logged_with_caller_box_and_length(tmp_path, speech_files):
    voice = speech_wav(tmp_path, speech_files[0], 3.0)
    sim = Sim(tmp_path)
    scen = (_call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }}')
            + _call('{ wait = "prompt:greeting" }, { hangup = "busy" }', '{ number = "5550002" }', "after = 5")
            + _call('{ wait = "prompt:greeting" }, { wait = { seconds = 0.5 } }, { dtmf = "*" }, '
                    f'{{ wait = "prompt:pin" }}, {{ dtmf = "{PIN}#" }}, {{ wait = "prompt:menu" }}, '
                    '{ hangup = "busy" }', '{ number = "5550003" }', "after = 5")
            + _call("", '{ number = "5550004", name = "GIVES UP" }', "after = 5",
                    "give_up_after_rings = 1\n"))
    ev = sim.run(scen)
    saved = [e for e in ev if e["event"] == "message_saved"][0]
    log = CallLog(Bus(), sim.data, clock=lambda: START)        # read back from the file
    calls = log.calls()
    assert [(c["caller_number"], c["outcome"], c["box"]) for c in calls] == [
        ("5550004", "missed", None),
        ("5550003", "login", "100"),
        ("5550002", "hung_up", "100"),          # before the beep, on a line routed to box 100
        ("5551234567", "message", "100"),
    ]
    msg = calls[-1]
    assert msg["caller_name"] == "JOHN DOE" and msg["line"] == 1 and msg["message"] == saved["id"]
    assert msg["seconds"] > saved["seconds"]                     # ring to hang-up, not just the message
    assert msg["t"][-6] in "+-" and abs(msg["ts"] - (START + 1)) < 1
    assert calls[0]["caller_name"] == "GIVES UP"


def test_a_line_that_does_not_answer_logs_missed_calls(tmp_path):
    sim = Sim(tmp_path, line_extra="answer = false")
    sim.run(_call("", extra="give_up_after_rings = 3\n"))
    (c,) = CallLog(Bus(), sim.data, clock=lambda: 0).calls()
    assert (c["outcome"], c["caller_number"], c["caller_name"]) == ("missed", "5551234567", "JOHN DOE")


def _fake_call(bus: Bus, line: int, number: str) -> None:
    bus.publish({"event": "ring", "n": 1, "line": line, "t": 0.0})
    bus.publish({"event": "callerid", "line": line, "number": number, "name": None, "t": 1.0})
    bus.publish({"event": "missed_call", "line": line, "rings": 3, "t": 12.0})


def test_the_file_is_bounded_and_survives_a_torn_last_line(tmp_path):
    bus = Bus()
    log = CallLog(bus, tmp_path, clock=lambda: 1e9, limit=4)
    for i in range(11):
        _fake_call(bus, 1, f"555000{i:02d}")
    rows = (tmp_path / FILE_NAME).read_text().splitlines()
    assert len(rows) <= 4 + 4 // 4 + 1
    assert [c["caller_number"] for c in log.calls()] == ["55500010", "55500009", "55500008", "55500007"]
    with open(tmp_path / FILE_NAME, "a") as f:
        f.write('{"t": "2001-01-01T00:00:00+00:00", "outc')           # a power cut mid-write
    again = CallLog(Bus(), tmp_path, clock=lambda: 0, limit=4)
    assert [c["caller_number"] for c in again.calls()] == ["55500010", "55500009", "55500008", "55500007"]
    assert all(json.loads(r)["outcome"] == "missed" for r in rows)


def test_calls_on_two_lines_at_once_are_kept_apart(tmp_path):
    bus = Bus()
    log = CallLog(bus, tmp_path, clock=lambda: 1e9)
    bus.publish({"event": "ring", "n": 1, "line": 1, "t": 0.0})
    bus.publish({"event": "ring", "n": 1, "line": 2, "t": 0.0})
    bus.publish({"event": "callerid", "line": 2, "number": "222", "name": None, "t": 1.0})
    bus.publish({"event": "answer", "line": 1, "t": 8.0})
    bus.publish({"event": "missed_call", "line": 2, "t": 20.0})
    bus.publish({"event": "onhook", "line": 1, "t": 30.0})
    assert [(c["line"], c["caller_number"], c["outcome"], c["seconds"]) for c in log.calls()] == [
        (1, None, "hung_up", 30.0), (2, "222", "missed", 20.0)]


def test_a_blocked_caller_is_hung_up_on_and_logged_blocked(tmp_path):
    sim = Sim(tmp_path, rings=4, line_extra='block = ["5551234567", "1900*"]')
    ev = sim.run(_call('{ wait = "prompt:greeting" }, { hangup = "busy" }')
                 + _call('{ wait = "prompt:greeting" }, { hangup = "busy" }',
                         '{ number = "19005550100", name = "PREMIUM" }', "after = 5")
                 + _call('{ wait = "prompt:greeting" }, { hangup = "busy" }', '{ number = "5550002" }', "after = 5"))
    blocked = [e for e in ev if e["event"] == "call_blocked"]
    assert [(e["pattern"], e["caller_number"]) for e in blocked] == [("5551234567", "5551234567"),
                                                                    ("1900*", "19005550100")]
    # Answered at the first ring gap (not after 4 rings), no greeting, on hook a moment later.
    for b in blocked:
        after = [e for e in ev if e.get("line") == 1 and e["t"] >= b["t"]]
        answer = next(e for e in after if e["event"] == "answer")
        onhook = next(e for e in after if e["event"] == "onhook")
        assert answer["after_rings"] == 1
        assert not [e for e in after if e["event"] == "prompt" and e["t"] < onhook["t"]]
        assert 0.9 <= onhook["t"] - answer["t"] <= 1.2
    assert not [e for e in ev if e["event"] == "message_saved"]
    calls = CallLog(Bus(), sim.data, clock=lambda: START).calls()
    assert [(c["caller_number"], c["outcome"]) for c in calls] == [
        ("5550002", "hung_up"), ("19005550100", "blocked"), ("5551234567", "blocked")]


def test_withheld_numbers_can_be_blocked():
    from linebox.caller import CallerId, blocked_by

    assert blocked_by(CallerId(number=None, number_absent="P"), ("withheld",)) == "withheld"
    assert blocked_by(CallerId(number="5551234567"), ("withheld",)) is None
    assert blocked_by(CallerId(number="+1 (555) 123-4567"), ("15551234567",)) == "15551234567"
    assert blocked_by(CallerId(number="5551234567"), ("555123456",)) is None     # whole numbers only
    assert blocked_by(CallerId(number="5551234567"), ("555*",)) == "555*"
    assert blocked_by(None, ("555*",)) is None


def test_a_call_from_an_ip_phone_is_logged_with_its_extension(tmp_path):
    bus = Bus()
    now = [1_000_000.0]
    CallLog(bus, tmp_path, clock=lambda: now[0])   # kept alive by its subscription
    # As sip/server.py and the runner of a SIP call publish them (line None, extension).
    bus.publish({"event": "sip_call", "caller_number": "201", "caller_name": "Front desk",
                 "dialled": "100", "line": None, "extension": "201"})
    bus.publish({"event": "record_start", "box": "100", "line": None, "extension": "201", "t": 2.0})
    bus.publish({"event": "sip_call", "caller_number": "202", "caller_name": "Workshop",
                 "dialled": "*97", "line": None, "extension": "202"})
    bus.publish({"event": "login", "box": "101", "ok": True, "line": None, "extension": "202", "t": 3.0})
    # The store publishes the saved message without the extension, with it as the caller.
    bus.publish({"event": "message_saved", "box": "100", "id": "000009", "line": None, "caller_number": "201",
                 "caller_name": "Front desk"})
    now[0] += 12
    bus.publish({"event": "onhook", "line": None, "extension": "201", "t": 12.0})
    bus.publish({"event": "onhook", "line": None, "extension": "202", "t": 12.0})
    calls = CallLog(Bus(), tmp_path, clock=lambda: 0).calls()         # as kept in the file
    assert [(c["extension"], c["line"], c["caller_name"], c["outcome"], c["box"], c["message"]) for c in calls] == [
        ("202", None, "Workshop", "login", "101", None),
        ("201", None, "Front desk", "message", "100", "000009")]
    assert calls[1]["seconds"] == 12.0
