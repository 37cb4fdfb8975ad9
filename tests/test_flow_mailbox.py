"""The owner calls in: login, counts, listening keys, options; the attendant; retraction."""

import pytest

from simkit import PIN, Sim, names, of, speech_wav

JOHN = 'caller = { number = "5551234567", name = "JOHN DOE" }'
OWNER = 'caller = { number = "5550000001", name = "OWNER" }'


def _call(steps: str, caller: str = JOHN, when: str = "after = 5") -> str:
    return f"[[call]]\nline = 1\n{when}\n{caller}\nsteps = [\n{steps}\n]\n"


def _leave(voice, when="after = 5", caller=JOHN) -> str:
    return _call(f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }}', caller, when)


def _login(rest: str, pin: str = PIN) -> str:
    return _call('{ wait = "prompt:greeting" }, { wait = { seconds = 0.5 } }, { dtmf = "*" }, '
                 f'{{ wait = "prompt:pin" }}, {{ dtmf = "{pin}#" }}, ' + rest, OWNER)


@pytest.fixture
def sim(tmp_path):
    return Sim(tmp_path)


@pytest.fixture
def voices(tmp_path, speech_files):
    return [speech_wav(tmp_path, f, 3.0, name=f"v{i}.wav") for i, f in enumerate(speech_files[:3])]


def test_owner_hears_and_saves_a_message_and_the_lamp_goes_off(sim, voices):
    ev = sim.run(_leave(voices[0], "at = 1")
                 + _login('{ wait = "prompt:menu" }, { dtmf = "1" }, { wait = "prompt:message_menu" }, '
                          '{ dtmf = "9" }, { wait = "prompt:no_more_messages" }, { wait = "prompt:menu" }, '
                          '{ dtmf = "#" }, { wait = "prompt:goodbye" }, { hangup = "dial" }'))
    assert [e["pattern"] for e in of(ev, "led", box="100")] == ["blink", "off"]
    assert of(ev, "login", box="100", ok=True)
    assert "counts" in names(ev)
    (played,) = of(ev, "message_played")
    states = [e["state"] for e in of(ev, "message_state", id=played["id"])]
    assert states == ["heard", "saved"]
    assert sim.messages("100")[0]["state"] == "saved"


def test_wrong_pin_three_times_refuses_login(sim, voices):
    ev = sim.run(_call('{ wait = "prompt:greeting" }, { dtmf = "*" }, '
                       '{ wait = "prompt:pin" }, { dtmf = "1111#" }, { wait = "prompt:pin" }, { dtmf = "2222#" }, '
                       '{ wait = "prompt:pin" }, { dtmf = "3333#" }, { wait = "prompt:goodbye" }, { hangup = "busy" }',
                       OWNER, "at = 1"))
    assert [e["ok"] for e in of(ev, "login")] == [False, False, False]
    assert names(ev).count("login_incorrect") == 3


def test_ten_failures_in_an_hour_lock_the_box_for_fifteen_minutes(sim):
    bad = ('{ wait = "prompt:greeting" }, { dtmf = "*" }, { wait = "prompt:pin" }, { dtmf = "9999#" }, '
           '{ wait = "prompt:pin" }, { dtmf = "9998#" }, { wait = "prompt:pin" }, { dtmf = "9997#" }, '
           '{ wait = "prompt:goodbye" }, { hangup = "busy" }')
    scen = "".join(_call(bad, OWNER, "after = 10") for _ in range(4))
    ev = sim.run(scen)
    fails = of(ev, "login", ok=False)
    assert len([f for f in fails if f.get("reason") != "locked"]) == 10
    assert of(ev, "login", reason="locked"), "the 11th try meets a locked box"
    # ... and hears what a wrong PIN (or a box that does not exist) hears: no "locked"
    # that would tell a caller trying numbers that this box exists.
    assert "locked" not in names(ev)
    assert names(ev).count("login_incorrect") == len(fails)
    # Even the right PIN is refused while locked; 15 minutes later it works.
    ev2 = sim.run(_login('{ wait = "prompt:menu" }, { dtmf = "#" }, { hangup = "busy" }'),
                  start=sim.app.clock() + 60)
    assert of(ev2, "login", reason="locked")
    ev3 = sim.run(_login('{ wait = "prompt:menu" }, { dtmf = "#" }, { hangup = "busy" }'),
                  start=sim.app.clock() + 16 * 60)
    assert of(ev3, "login", ok=True)


def test_message_keys_previous_repeat_next_delete_and_envelope(sim, voices):
    leave = _leave(voices[0], "at = 1") + _leave(voices[1]) + _leave(voices[2])
    sim.run(leave)
    ids = [m["id"] for m in sim.messages("100")]
    ev = sim.run(_login('{ wait = "prompt:menu" }, { dtmf = "1" }, '
                        '{ wait = "prompt:message" }, { dtmf = "6" }, '          # skip to the 2nd
                        '{ wait = "prompt:message" }, { dtmf = "4" }, '          # back to the 1st
                        '{ wait = "prompt:message" }, { dtmf = "5" }, '          # repeat it
                        '{ wait = "prompt:message" }, { dtmf = "3" }, '          # envelope
                        '{ wait = "prompt:envelope" }, { dtmf = "7" }, '         # delete the 1st
                        '{ wait = "prompt:message_deleted" }, '
                        '{ wait = "prompt:message" }, { dtmf = "#" }, '
                        '{ wait = "prompt:menu" }, { dtmf = "#" }, { hangup = "busy" }', ) , start=1795000000.0 + 3600)
    played = [e["id"] for e in of(ev, "message_played")]
    assert played == [ids[0], ids[1], ids[0], ids[0], ids[1]]
    assert of(ev, "message_state", id=ids[0], state="trash")
    states = {m["id"]: m["state"] for m in sim.messages("100")}
    assert states[ids[0]] == "trash" and states[ids[1]] == "heard" and states[ids[2]] == "new"


def test_mailbox_option_3_undeletes_the_last_deleted(sim, voices):
    sim.run(_leave(voices[0], "at = 1"))
    ev = sim.run(_login('{ wait = "prompt:menu" }, { dtmf = "1" }, { wait = "prompt:message" }, { dtmf = "7" }, '
                        '{ wait = "prompt:menu" }, { dtmf = "0" }, { wait = "prompt:options" }, { dtmf = "3" }, '
                        '{ wait = "prompt:message_restored" }, { dtmf = "#" }, { wait = "prompt:menu" }, '
                        '{ dtmf = "#" }, { hangup = "busy" }'), start=1795000000.0 + 600)
    states = [e["state"] for e in of(ev, "message_state")]
    assert states == ["heard", "trash", "heard"]


def test_pin_changed_by_phone_is_kept(sim, voices):
    ev = sim.run(_login('{ wait = "prompt:menu" }, { dtmf = "0" }, { wait = "prompt:options" }, { dtmf = "2" }, '
                        '{ wait = "prompt:new_pin" }, { dtmf = "86420#" }, { wait = "prompt:new_pin_again" }, '
                        '{ dtmf = "86420#" }, { wait = "prompt:pin_changed" }, { dtmf = "#" }, '
                        '{ wait = "prompt:menu" }, { dtmf = "#" }, { hangup = "busy" }').replace("after = 5", "at = 1"))
    assert "pin_changed" in names(ev)
    old = sim.run(_login('{ wait = "prompt:login_incorrect" }, { hangup = "busy" }').replace("after = 5", "at = 1"))
    assert of(old, "login", ok=False)
    new = sim.run(_login('{ wait = "prompt:menu" }, { dtmf = "#" }, { hangup = "busy" }', pin="86420")
                  .replace("after = 5", "at = 1"))
    assert of(new, "login", ok=True)
    assert "86420" not in (sim.data / "pins.json").read_text()


def test_caller_retracts_an_unheard_message_within_the_window(sim, voices):
    ev = sim.run(_leave(voices[0], "at = 1")
                 + _call('{ wait = "prompt:retract_offer" }, { dtmf = "7" }, '
                         '{ wait = "prompt:message_retracted" }, { wait = "beep" }, { hangup = "busy" }',
                         when="after = 120"))
    (saved,) = of(ev, "message_saved")
    assert of(ev, "message_retracted", id=saved["id"])
    (kept,) = sim.messages()
    assert (kept["id"], kept["state"], kept["retracted"]) == (saved["id"], "trash", True)


@pytest.mark.parametrize("who, when", [
    ('caller = { number = "5559999999" }', "after = 60"),        # another number
    ("", "after = 60"),                                          # no caller ID
    (JOHN, "after = 1000"),                                      # after the 15-minute window
])
def test_retraction_is_never_offered_to_others_or_late(sim, voices, who, when):
    ev = sim.run(_leave(voices[0], "at = 1")
                 + _call('{ wait = "beep" }, { hangup = "busy" }', who, when))
    assert "retract_offer" not in names(ev)


def test_retraction_is_not_offered_once_the_message_was_heard(sim, voices):
    ev = sim.run(_leave(voices[0], "at = 1")
                 + _login('{ wait = "prompt:menu" }, { dtmf = "1" }, { wait = "prompt:message" }, '
                          '{ wait = { seconds = 0.5 } }, { hangup = "busy" }')
                 + _call('{ wait = "beep" }, { hangup = "busy" }', when="after = 20"))
    assert "retract_offer" not in names(ev)


ATTENDANT = """
[attendant]
prompt = "attendant"
options = { "1" = "101", "2" = "102", "*" = "login" }
default = "100"
"""


@pytest.fixture
def office(tmp_path):
    return Sim(tmp_path, lines=((1, "attendant", "us"),), boxes=("100", "101", "102"), attendant=ATTENDANT)


def test_attendant_key_routes_to_a_box(office, voices):
    ev = office.run(_call(f'{{ wait = "prompt:attendant" }}, {{ dtmf = "2" }}, {{ wait = "beep" }}, '
                          f'{{ say = "{voices[0]}" }}, {{ hangup = "busy" }}', when="at = 1"))
    assert of(ev, "message_saved")[0]["box"] == "102"


def test_attendant_without_a_key_goes_to_the_default_box(office, voices):
    ev = office.run(_call(f'{{ wait = "beep" }}, {{ say = "{voices[0]}" }}, {{ hangup = "busy" }}', when="at = 1"))
    assert of(ev, "message_saved")[0]["box"] == "100"


def test_attendant_login_asks_box_number_then_pin(office, voices):
    office.run(_call(f'{{ wait = "prompt:attendant" }}, {{ dtmf = "1" }}, {{ wait = "beep" }}, '
                     f'{{ say = "{voices[0]}" }}, {{ hangup = "busy" }}', when="at = 1"))
    ev = office.run(_call('{ wait = "prompt:attendant" }, { dtmf = "*" }, { wait = "prompt:box_number" }, '
                          '{ dtmf = "101#" }, { wait = "prompt:pin" }, '
                          f'{{ dtmf = "{PIN}#" }}, {{ wait = "prompt:menu" }}, {{ dtmf = "1" }}, '
                          '{ wait = "prompt:message" }, { dtmf = "9" }, { wait = "prompt:menu" }, { dtmf = "#" }, '
                          '{ hangup = "busy" }', OWNER, "at = 1"))
    assert of(ev, "login", box="101", ok=True)
    assert [e["state"] for e in of(ev, "message_state")] == ["heard", "saved"]


def test_keys_typed_ahead_skip_the_prompts(sim, voices):
    sim.run(_leave(voices[0], "at = 1"))
    # PIN and menu choice typed during the greeting, all in one go.
    ev = sim.run(_call('{ wait = "prompt:greeting" }, { wait = { seconds = 0.3 } }, '
                       f'{{ dtmf = "*{PIN}#1" }}, {{ wait = "prompt:message" }}, {{ dtmf = "9" }}, '
                       '{ wait = "prompt:menu" }, { dtmf = "#" }, { hangup = "busy" }', OWNER, "at = 1"))
    assert of(ev, "login", ok=True)
    before_message = names(ev)[:names(ev).index("message")]
    assert "menu" not in before_message, "the typed-ahead 1 chose listening without the menu"
    assert "menu" in names(ev) and not of(ev, "login", ok=False)
