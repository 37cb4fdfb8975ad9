"""Leaving a message on a simulated line: every way a recording ends, review, limits."""

import pytest

from simkit import PIN, Sim, names, of, speech_wav

CALLER = 'caller = { number = "5551234567", name = "JOHN DOE" }'


def _call(steps: str, caller: str = CALLER, line: int = 1, when: str = "at = 1.0", extra: str = "") -> str:
    return f"[[call]]\nline = {line}\n{when}\n{caller}\n{extra}\nsteps = [\n{steps}\n]\n"


@pytest.fixture
def sim(tmp_path):
    return Sim(tmp_path)


@pytest.fixture
def voice(tmp_path, speech_files):
    return speech_wav(tmp_path, speech_files[1], 6.0)


def test_busy_tone_after_speech_ends_recording_and_cuts_the_tone(sim, voice):
    ev = sim.run(_call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ silence = 1.0 }}, {{ hangup = "busy" }}'))
    assert [e["n"] for e in of(ev, "ring")] == [1, 2]
    cid = of(ev, "callerid")
    assert cid and cid[0]["number"] == "5551234567" and cid[0]["name"] == "JOHN DOE"
    assert of(ev, "answer")[0]["after_rings"] == 2
    assert names(ev)[:2] == ["greeting", "beep"]
    assert of(ev, "record_start", box="100")
    assert of(ev, "hangup_detected")[0]["cause"] == "busy"
    assert of(ev, "record_end")[0]["reason"] == "hangup"
    saved = of(ev, "message_saved")
    assert len(saved) == 1 and saved[0]["box"] == "100"
    # The caller spoke 6 s then hung up: busy tone and silence are not kept.
    assert 5.0 <= saved[0]["seconds"] <= 6.6
    assert of(ev, "led", box="100", pattern="blink")
    assert ev[-1]["event"] in ("onhook", "call_end")
    (msg,) = sim.messages("100")
    assert msg["state"] == "new" and msg["caller_number"] == "5551234567"
    assert msg["caller_name"] == "JOHN DOE" and msg["line"] == 1


@pytest.mark.parametrize("how", ["reorder", "dial", "loop"])
def test_each_hangup_kind_ends_the_recording(sim, voice, how):
    ev = sim.run(_call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "{how}" }}'))
    assert of(ev, "hangup_detected")[0]["cause"] == how
    assert of(ev, "record_end")[0]["reason"] == "hangup"
    assert 5.0 <= of(ev, "message_saved")[0]["seconds"] <= 6.6


def test_silent_line_ends_the_recording_after_five_seconds(sim, voice):
    ev = sim.run(_call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "silent" }}'))
    end = of(ev, "record_end")[0]
    assert end["reason"] == "silence"
    start = of(ev, "record_start")[0]["t"]
    assert 6.0 + 5.0 - 0.5 <= end["t"] - start <= 6.0 + 5.0 + 1.0
    assert of(ev, "hangup_detected")[0]["cause"] == "silence"
    assert 5.0 <= of(ev, "message_saved")[0]["seconds"] <= 6.6


def test_max_message_seconds_ends_the_recording(tmp_path, speech_files):
    sim = Sim(tmp_path, max_seconds=4)
    voice = speech_wav(tmp_path, speech_files[2], 8.0)
    ev = sim.run(_call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }}'))
    assert of(ev, "record_end")[0]["reason"] == "max_length"
    assert 3.0 <= of(ev, "message_saved")[0]["seconds"] <= 4.1


def test_less_than_a_second_of_voice_is_discarded(sim, tmp_path, speech_files):
    short = speech_wav(tmp_path, speech_files[0], 0.5, name="short.wav")
    ev = sim.run(_call(f'{{ wait = "beep" }}, {{ say = "{short}" }}, {{ hangup = "busy" }}'))
    assert of(ev, "message_discarded")[0]["reason"] == "too_short"
    assert not of(ev, "message_saved")
    assert sim.messages() == []


def test_pound_opens_review_and_3_sends(sim, voice):
    ev = sim.run(_call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ dtmf = "#" }}, '
                       f'{{ wait = "prompt:review" }}, {{ dtmf = "3" }}, {{ wait = "prompt:goodbye" }}, '
                       f'{{ hangup = "busy" }}'))
    assert of(ev, "record_end")[0]["reason"] == "key"
    assert "review" in names(ev) and "message_sent" in names(ev)
    assert 5.0 <= of(ev, "message_saved")[0]["seconds"] <= 6.6


def test_review_star_cancels_and_nothing_is_kept(sim, voice):
    ev = sim.run(_call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ dtmf = "#" }}, '
                       f'{{ wait = "prompt:review" }}, {{ dtmf = "*" }}, {{ wait = "prompt:message_cancelled" }}, '
                       f'{{ hangup = "busy" }}'))
    assert not of(ev, "message_saved")
    assert sim.messages() == []


def test_review_2_records_again_and_only_the_second_take_is_kept(sim, voice, tmp_path, speech_files):
    second = speech_wav(tmp_path, speech_files[3], 3.0, name="second.wav")
    ev = sim.run(_call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ dtmf = "#" }}, '
                       f'{{ wait = "prompt:review" }}, {{ dtmf = "2" }}, {{ wait = "beep" }}, '
                       f'{{ say = "{second}" }}, {{ hangup = "busy" }}'))
    assert names(ev).count("beep") == 2
    saved = of(ev, "message_saved")
    assert len(saved) == 1 and 2.2 <= saved[0]["seconds"] <= 3.6
    assert len(sim.messages()) == 1


def test_review_1_plays_the_recording_back(sim, voice):
    ev = sim.run(_call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ dtmf = "#" }}, '
                       f'{{ wait = "prompt:review" }}, {{ dtmf = "1" }}, {{ wait = "prompt:recording" }}, '
                       f'{{ wait = {{ seconds = 1.0 }} }}, {{ dtmf = "3" }}, {{ wait = "prompt:goodbye" }}, {{ hangup = "busy" }}'))
    assert "recording" in names(ev)
    assert len(of(ev, "message_saved")) == 1


def test_hanging_up_in_review_sends_the_message(sim, voice):
    ev = sim.run(_call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ dtmf = "#" }}, '
                       f'{{ wait = "prompt:review" }}, {{ hangup = "busy" }}'))
    assert len(of(ev, "message_saved")) == 1


def test_full_box_takes_no_message_and_says_so(tmp_path, speech_files):
    sim = Sim(tmp_path, max_messages=1)
    voice = speech_wav(tmp_path, speech_files[1], 3.0)
    steps = f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }}'
    sim.run(_call(steps))
    ev = sim.run(_call('{ wait = "answer" }, { wait = { seconds = 8 } }, { hangup = "busy" }', caller=""))
    assert of(ev, "record_end")[0]["reason"] == "box_full"
    assert "box_full" in names(ev)
    assert not of(ev, "record_start")
    assert len(sim.messages()) == 1


def test_the_owner_of_a_full_box_can_still_press_star_and_log_in(tmp_path, speech_files):
    sim = Sim(tmp_path, max_messages=1)
    voice = speech_wav(tmp_path, speech_files[1], 3.0)
    sim.run(_call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }}'))
    ev = sim.run(_call('{ wait = "prompt:box_full" }, { wait = { seconds = 0.5 } }, { dtmf = "*" }, '
                       f'{{ wait = "prompt:pin" }}, {{ dtmf = "{PIN}#" }}, '
                       '{ wait = "prompt:menu" }, { dtmf = "1" }, { wait = "prompt:message_menu" }, '
                       '{ dtmf = "7" }, { wait = { seconds = 3 } }, { hangup = "busy" }', caller=""))
    assert of(ev, "login", ok=True)
    assert [e["state"] for e in of(ev, "message_state")][-1] == "trash"
    assert not of(ev, "record_start")


def test_a_caller_who_presses_nothing_at_a_full_box_is_let_go(tmp_path, speech_files):
    sim = Sim(tmp_path, max_messages=1)
    voice = speech_wav(tmp_path, speech_files[1], 3.0)
    sim.run(_call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }}'))
    ev = sim.run(_call('{ wait = "answer" }', caller=""))
    assert "pin" not in names(ev) and not of(ev, "login")
    (end,) = of(ev, "call_end")
    (full,) = [e for e in ev if e["event"] == "prompt" and e["name"] == "box_full"]
    assert end["t"] - full["t"] < 12        # the prompt, then at most 2 s for a *


def test_two_lines_take_calls_at_the_same_time(tmp_path, speech_files):
    sim = Sim(tmp_path, lines=((1, "100", "us"), (2, "101", "de")), boxes=("100", "101"))
    v1 = speech_wav(tmp_path, speech_files[0], 5.0, name="a.wav")
    v2 = speech_wav(tmp_path, speech_files[2], 4.0, name="b.wav")
    scen = (_call(f'{{ wait = "beep" }}, {{ say = "{v1}" }}, {{ hangup = "busy" }}', line=1)
            + _call(f'{{ wait = "beep" }}, {{ say = "{v2}" }}, {{ hangup = "busy" }}', line=2,
                    caller='caller = { number = "4930123456" }', when="at = 2.0"))
    ev = sim.run(scen)
    saved = {e["box"]: e for e in of(ev, "message_saved")}
    assert set(saved) == {"100", "101"}
    assert saved["101"]["line"] == 2 and of(ev, "callerid", line=2)[0]["number"] == "4930123456"
    r1 = of(ev, "record_start", line=1)[0]["t"]
    e2 = of(ev, "record_end", line=2)[0]["t"]
    assert r1 < e2, "the recordings overlap in time"


def test_toll_saver_answers_sooner_while_new_messages_wait(tmp_path, speech_files):
    sim = Sim(tmp_path, rings=4, toll_saver=2)
    voice = speech_wav(tmp_path, speech_files[1], 3.0)
    steps = f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }}'
    ev = sim.run(_call(steps) + _call(steps, when="after = 30"))
    answers = [e["after_rings"] for e in of(ev, "answer")]
    assert answers == [4, 2]


def test_with_answering_off_the_line_rings_out_as_a_missed_call(tmp_path):
    sim = Sim(tmp_path, line_extra="answer = false")
    ev = sim.run(_call('{ wait = "answer" }, { hangup = "busy" }', extra="give_up_after_rings = 3"))
    assert not of(ev, "answer")
    assert [e["n"] for e in of(ev, "ring")] == [1, 2, 3]
    (missed,) = of(ev, "missed_call")
    assert missed["caller_number"] == "5551234567" and missed["rings"] == 3
