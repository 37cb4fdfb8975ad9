"""Inbound ring groups on the virtual clock: `linebox sim` with scenario phones.

An analog call on line 1 rings extensions 201 and 202 (scenario ``[[phone]]``s); the
first to answer talks to the caller through the bridge (the simulated exchange's
hybrid echo included), the other stops ringing; nobody answering lets the voicemail
route answer after ``ring_rings``; a phone's blind transfer moves the caller to a box
or to another phone."""

from array import array

import pytest

from linebox import FRAME
from linebox.hw.fxo import tone_level_dbm0
from linebox.sim.exchange import SimLine
from linebox.sip.auth import ha1
from simkit import Sim, of, tone_wav

EXTENSIONS = "".join(
    f'[[extension]]\nnumber = "{n}"\nname = "{name}"\nha1 = "{ha1(n, "office", "pw" + n)}"\n\n'
    for n, name in (("201", "Alice"), ("202", "Bob"), ("203", "Carol")))
SIP = f'[sip]\nlisten = "127.0.0.1:5099"\nrealm = "office"\n\n{EXTENSIONS}'


@pytest.fixture
def played(monkeypatch):
    """What the firmware played on each simulated line (what the caller heard)."""
    out: dict[int, array] = {}
    original = SimLine.tick

    def tick(self, frame=None):
        out.setdefault(self.id, array("h")).extend(frame if frame is not None else bytes(2 * FRAME))
        return original(self, frame)
    monkeypatch.setattr(SimLine, "tick", tick)
    return out


def _sim(tmp_path, ring_rings=3, boxes=("100",)):
    return Sim(tmp_path, rings=2, boxes=boxes, attendant=SIP,
               line_extra=f'ring = ["201", "202"]\nring_rings = {ring_rings}\n')


def peak_level(samples, freq, window=4000):
    """The loudest ``freq`` level over half-second windows of ``samples``."""
    return max((tone_level_dbm0(samples[i:i + window], freq)
                for i in range(0, max(1, len(samples) - window + 1), window)), default=-999)


def _phones(sim):
    return sim.app.phones.by_extension


def test_the_first_phone_to_answer_talks_with_the_caller_and_the_other_stops_ringing(tmp_path, played):
    sim = _sim(tmp_path)
    k1 = tone_wav(tmp_path, 1000, 3.0, "k1.wav")
    h700 = tone_wav(tmp_path, 700, 2.0, "h700.wav")
    events = sim.run(f"""
[[call]]
line = 1
at = 1.0
caller = {{ number = "5551234567", name = "JOHN DOE" }}
steps = [ {{ wait = "answer" }}, {{ silence = 0.5 }}, {{ say = "{k1}" }}, {{ silence = 3.0 }}, {{ hangup = "busy" }} ]

[[phone]]
extension = "201"
answer_after = 7.0
steps = [ {{ silence = 1.0 }}, {{ say = "{h700}" }} ]

[[phone]]
extension = "202"
""")
    assert [e["extensions"] for e in of(events, "ring_group")] == [["201", "202"]]
    ringing = of(events, "phone_ringing")
    assert [e["extension"] for e in ringing] == ["201", "202"]
    # The INVITEs go out on the first ring, before caller ID: the phones show the line.
    assert ringing[0]["caller_name"] == "Line 1"
    (answer,) = of(events, "phone_answer")
    assert answer["extension"] == "201"
    (stopped,) = of(events, "phone_ring_stopped")
    assert (stopped["extension"], stopped["reason"]) == ("202", "answered_elsewhere")
    (bridged,) = of(events, "bridged")
    assert bridged["extension"] == "201"
    assert of(events, "answer")[0]["caller_number"] == "5551234567"
    assert not of(events, "record_start")             # no voicemail
    # The caller's 1 kHz reached the phone; the phone's 700 Hz reached the line.
    heard = _phones(sim)["201"].heard
    assert tone_level_dbm0(heard, 1000) > -25
    assert peak_level(played[1], 700) > -18            # sent at -15 dBm0
    # Busy tone from the exchange: the bridge ends within 3.5 s of the caller's hang-up.
    (gone,) = of(events, "caller_hangup")
    (hup,) = of(events, "phone_hangup")
    assert hup["cause"] == "line:busy"
    assert hup["t"] - gone["t"] <= 3.5
    assert of(events, "onhook")


def test_nobody_answering_lets_the_voicemail_route_answer_after_ring_rings(tmp_path, played):
    sim = _sim(tmp_path, ring_rings=3)
    voice = tone_wav(tmp_path, 500, 3.0, "v.wav")
    events = sim.run(f"""
[[call]]
line = 1
at = 1.0
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]

[[phone]]
extension = "201"

[[phone]]
extension = "202"
""")
    (answer,) = of(events, "answer")
    assert answer["after_rings"] == 3                 # ring_rings, not the line's 2 rings
    assert [e["reason"] for e in of(events, "ring_group_end")] == ["voicemail"]
    stops = of(events, "phone_ring_stopped")
    assert sorted((e["extension"], e["reason"]) for e in stops) == [("201", "voicemail"),
                                                                     ("202", "voicemail")]
    assert not of(events, "phone_answer")
    assert len(sim.messages("100")) == 1


def test_the_caller_giving_up_stops_the_phones_and_is_a_missed_call(tmp_path, played):
    sim = _sim(tmp_path, ring_rings=6)
    events = sim.run("""
[[call]]
line = 1
at = 1.0
give_up_after_rings = 2

[[phone]]
extension = "201"
""")
    assert of(events, "missed_call")
    assert [e["reason"] for e in of(events, "phone_ring_stopped")] == ["caller_gone"]
    assert not of(events, "answer")


def test_a_phone_hanging_up_puts_the_line_on_hook(tmp_path, played):
    sim = _sim(tmp_path)
    events = sim.run("""
[[call]]
line = 1
at = 1.0
steps = [ { wait = "answer" }, { silence = 20.0 } ]

[[phone]]
extension = "202"
answer_after = 1.0
steps = [ { silence = 2.0 }, { hangup = "bye" } ]
""")
    (hup,) = of(events, "phone_hangup")
    assert hup["cause"] == "bye"
    (onhook,) = of(events, "onhook")
    assert onhook["t"] - hup["t"] <= 0.05


def test_a_blind_transfer_to_a_box_lets_the_caller_leave_a_message_there(tmp_path, played):
    sim = _sim(tmp_path, boxes=("100", "101"))
    voice = tone_wav(tmp_path, 500, 3.0, "v.wav")
    events = sim.run(f"""
[[call]]
line = 1
at = 1.0
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]

[[phone]]
extension = "201"
answer_after = 1.0
steps = [ {{ silence = 1.0 }}, {{ transfer = "101" }} ]
""")
    (t,) = of(events, "transfer")
    assert (t["extension"], t["kind"], t["to"]) == ("201", "box", "101")
    assert len(sim.messages("101")) == 1 and not sim.messages("100")


def test_a_blind_transfer_to_another_extension_rings_it_and_bridges_again(tmp_path, played):
    sim = Sim(tmp_path, rings=2, attendant=SIP, line_extra='ring = ["201"]\n')
    k1 = tone_wav(tmp_path, 1000, 4.0, "k1.wav")
    events = sim.run(f"""
[[call]]
line = 1
at = 1.0
steps = [ {{ wait = "answer" }}, {{ silence = 6.0 }}, {{ say = "{k1}" }}, {{ hangup = "busy" }} ]

[[phone]]
extension = "201"
answer_after = 1.0
steps = [ {{ silence = 1.0 }}, {{ transfer = "203" }} ]

[[phone]]
extension = "203"
answer_after = 2.0
""")
    assert [e["extension"] for e in of(events, "bridged")] == ["201", "203"]
    assert [e["extensions"] for e in of(events, "ring_group")] == [["201"], ["203"]]
    assert tone_level_dbm0(_phones(sim)["203"].heard, 1000) > -25
    assert tone_level_dbm0(_phones(sim)["201"].heard, 1000) < -50


@pytest.mark.parametrize("ring, message", [
    ('["209"]', 'key \'ring\': no [[extension]] with number "209"'),
    ('"201"', "key 'ring': must be a list of extension numbers"),
    ('["201", "201"]', "key 'ring': names an extension twice"),
])
def test_a_bad_ring_group_is_one_clear_config_error(tmp_path, ring, message):
    from linebox.config import ConfigError
    with pytest.raises(ConfigError) as e:
        Sim(tmp_path, attendant=SIP, line_extra=f"ring = {ring}\n")
    assert message in str(e.value) and "[[line]] #1" in str(e.value)
    assert "\n" not in str(e.value)


def _echo_heard(tmp_path, monkeypatch, erl, suppressor, voice):
    """The phone talks (the caller is silent): what the phone hears back through the
    simulated hybrid, and what it sent, as a phone's recording."""
    import linebox.gateway.phones as phones_mod
    from linebox.gateway.bridge import Bridge
    if not suppressor:
        monkeypatch.setattr(phones_mod, "Bridge", lambda: Bridge(echo=None))
    tmp_path.mkdir()
    sim = Sim(tmp_path, rings=2, attendant=SIP, line_extra='ring = ["201"]\n')
    sim.run(f"""
echo_return_loss_db = {erl}
[[call]]
line = 1
at = 1.0
steps = [ {{ wait = "answer" }}, {{ silence = 12.0 }}, {{ hangup = "busy" }} ]

[[phone]]
extension = "201"
answer_after = 1.0
steps = [ {{ silence = 1.0 }}, {{ say = "{voice}" }} ]
""")
    return _phones(sim)["201"].heard


def _power_db(samples) -> float:
    import math
    ms = sum(s * s for s in samples) / max(1, len(samples))
    return 10 * math.log10(max(ms, 1e-3))


@pytest.mark.parametrize("erl", [12, 24])
def test_the_echo_suppressor_removes_the_hybrid_echo_of_the_phone_user_s_voice(
        tmp_path, monkeypatch, speech_files, erl):
    from linebox.wavfile import read_wav
    from simkit import speech_wav
    voice = speech_wav(tmp_path, speech_files[1], 8.0)
    sent = read_wav(voice)
    span = slice(8000 * 1 + 800, 8000 * 9 - 800)       # while the phone talks
    plain = _echo_heard(tmp_path / "a", monkeypatch, erl, False, voice)[span]
    monkeypatch.undo()
    with_es = _echo_heard(tmp_path / "b", monkeypatch, erl, True, voice)[span]
    erl_plain = _power_db(sent) - _power_db(plain)
    erl_es = _power_db(sent) - _power_db(with_es)
    print(f"echo heard by the phone user, hybrid {erl} dB: ERL {erl_plain:.1f} dB without, "
          f"{erl_es:.1f} dB with the suppressor")
    assert abs(erl_plain - erl) < 2.0          # the simulator's hybrid, measured
    assert erl_es >= erl_plain + 25.0


def test_answering_off_lets_the_phones_ring_until_the_caller_gives_up(tmp_path, played):
    sim = Sim(tmp_path, rings=2, attendant=SIP, line_extra='ring = ["201"]\nring_rings = 2\nanswer = false\n')
    events = sim.run("""
[[call]]
line = 1
at = 1.0
give_up_after_rings = 5

[[phone]]
extension = "201"
""")
    assert not of(events, "answer")
    assert of(events, "missed_call")[0]["rings"] == 5
    assert [e["reason"] for e in of(events, "phone_ring_stopped")] == ["caller_gone"]


def test_the_toll_saver_still_answers_sooner_while_a_box_holds_a_new_message(tmp_path, played):
    sim = Sim(tmp_path, rings=3, toll_saver=1, attendant=SIP,
              line_extra='ring = ["201"]\nring_rings = 4\n')
    voice = tone_wav(tmp_path, 500, 3.0, "v.wav")
    leave = f'steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]'
    events = sim.run(f"""
[[call]]
line = 1
at = 1.0
{leave}

[[call]]
line = 1
after = 10.0
{leave}

[[phone]]
extension = "201"
""")
    assert [e["after_rings"] for e in of(events, "answer")] == [4, 1]


def test_the_bridged_event_is_reported_over_mqtt_with_the_extension():
    from linebox.report.mqtt import report_for
    assert report_for({"event": "bridged", "line": 1, "extension": "201", "t": 3.0}) == {
        "type": "call_bridged", "line": 1, "extension": "201"}


@pytest.mark.parametrize("how", ["busy", "reorder", "dial", "loop"])
def test_the_caller_hanging_up_ends_the_phone_s_call_within_3_5_seconds(tmp_path, played, how):
    sim = Sim(tmp_path, rings=2, attendant=SIP, line_extra='ring = ["201"]\n')
    events = sim.run(f"""
[[call]]
line = 1
at = 1.0
steps = [ {{ wait = "answer" }}, {{ silence = 2.0 }}, {{ hangup = "{how}" }} ]

[[phone]]
extension = "201"
answer_after = 1.0
""")
    (gone,) = of(events, "caller_hangup")
    (hup,) = of(events, "phone_hangup")
    assert hup["cause"] == f"line:{how}"
    assert 0 < hup["t"] - gone["t"] <= 3.5


def test_a_silent_hang_up_ends_the_call_after_30_s_with_nobody_talking(tmp_path, played):
    from linebox.gateway.bridge import SILENCE_END_SECONDS
    sim = Sim(tmp_path, rings=2, attendant=SIP, line_extra='ring = ["201"]\n')
    events = sim.run("""
[[call]]
line = 1
at = 1.0
steps = [ { wait = "answer" }, { silence = 2.0 }, { hangup = "silent" } ]

[[phone]]
extension = "201"
answer_after = 1.0
""")
    (gone,) = of(events, "caller_hangup")
    (hup,) = of(events, "phone_hangup")
    assert hup["cause"] == "line:silence"
    assert of(events, "hangup_detected")[0]["cause"] == "silence"
    assert SILENCE_END_SECONDS <= hup["t"] - of(events, "bridged")[0]["t"] <= SILENCE_END_SECONDS + 1


def test_the_call_log_says_which_extension_answered(tmp_path, played):
    sim = Sim(tmp_path, rings=2, attendant=SIP, line_extra='ring = ["201", "202"]\n')
    sim.run("""
[[call]]
line = 1
at = 1.0
caller = { number = "5551234567" }
steps = [ { wait = "answer" }, { silence = 2.0 }, { hangup = "busy" } ]

[[phone]]
extension = "202"
answer_after = 1.0
""")
    (call,) = sim.app.calllog.calls()
    assert (call["outcome"], call["extension"], call["box"]) == ("phone", "202", None)
    from linebox.web.pages import _outcome
    assert _outcome(call) == "answered by extension 202"


def test_gateway_and_phone_events_carry_the_fields_the_catalogue_names(tmp_path, played):
    from linebox.events import CATALOGUE
    sim = _sim(tmp_path, boxes=("100", "101"))
    events = sim.run("""
[[call]]
line = 1
at = 1.0
caller = { number = "5551234567" }
steps = [ { wait = "answer" }, { silence = 8.0 }, { hangup = "busy" } ]

[[phone]]
extension = "201"
answer_after = 1.0
steps = [ { silence = 1.0 }, { transfer = "202" } ]

[[phone]]
extension = "202"
answer_after = 2.0
""")
    kinds = {e["event"] for e in events}
    assert {"ring_group", "bridged", "transfer", "phone_ringing", "phone_answer",
            "phone_ring_stopped", "phone_hangup"} <= kinds
    for ev in events:
        extra = set(ev) - {"event", "t", "line", "call"} - set(CATALOGUE[ev["event"]].fields)
        assert not extra, f"{ev['event']} carries {extra} not in the catalogue"
