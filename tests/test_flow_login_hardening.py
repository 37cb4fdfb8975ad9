"""Login by phone against a hostile caller: no box enumeration, no digits published,
the attendant's table honoured, remote login switchable, trivial PINs refused."""

import tomllib

import pytest

from linebox.config import parse_config
from simkit import PIN, Sim, names, of

OWNER = 'caller = { number = "5550000001", name = "OWNER" }'
ATTENDANT = """
[attendant]
prompt = "attendant"
options = {{ "1" = "101", {star} }}
default = "100"
"""


def _call(steps: str, caller: str = OWNER, when: str = "at = 1") -> str:
    return f"[[call]]\nline = 1\n{when}\n{caller}\nsteps = [\n{steps}\n]\n"


def _office(tmp_path, star='"*" = "login"', box_extra: str = "") -> Sim:
    sim = Sim(tmp_path, lines=((1, "attendant", "us"),), boxes=("100", "101"),
              attendant=ATTENDANT.format(star=star))
    if box_extra:
        text = sim.config_path.read_text().replace('number = "101"\n', f'number = "101"\n{box_extra}\n')
        sim.config_path.write_text(text)
        sim.config = parse_config(tomllib.loads(text), str(sim.config_path))
    return sim


def _attendant_login(number: str, pin: str = PIN) -> str:
    return _call('{ wait = "prompt:attendant" }, { dtmf = "*" }, { wait = "prompt:box_number" }, '
                 f'{{ dtmf = "{number}#" }}, {{ wait = "prompt:pin" }}, {{ dtmf = "{pin}#" }}, '
                 '{ wait = "prompt:login_incorrect" }, { hangup = "busy" }')


def _prompts_after_box_number(ev) -> list[str]:
    got = names(ev)
    return got[got.index("box_number") + 1:]


def test_an_unknown_box_asks_for_the_pin_like_a_real_one(tmp_path):
    sim = _office(tmp_path)
    unknown = sim.run(_attendant_login("555"))
    real = sim.run(_attendant_login("101", pin="0150"))
    assert _prompts_after_box_number(unknown)[:2] == ["pin", "login_incorrect"]
    assert _prompts_after_box_number(real)[:2] == ["pin", "login_incorrect"]


def test_digits_that_are_not_a_box_are_never_published(tmp_path):
    sim = _office(tmp_path)
    ev = sim.run(_attendant_login("9731"))       # a PIN typed at the box-number prompt
    (fail,) = of(ev, "login")
    assert fail["ok"] is False and fail["box"] is None
    assert "9731" not in repr([e for e in ev if e["event"] != "dtmf"])


def test_a_wrong_pin_for_a_real_box_names_the_box(tmp_path):
    ev = _office(tmp_path).run(_attendant_login("101", pin="0150"))
    assert of(ev, "login", box="101", ok=False)


def test_star_at_the_attendant_without_a_star_option_does_not_log_in(tmp_path):
    sim = _office(tmp_path, star='"2" = "100"')
    ev = sim.run(_call('{ wait = "prompt:attendant" }, { dtmf = "*" }, { wait = "prompt:invalid" }, '
                       '{ wait = "prompt:attendant" }, { hangup = "busy" }'))
    assert "box_number" not in names(ev)
    assert "invalid" in names(ev)


def test_remote_login_off_refuses_the_right_pin_like_a_wrong_one(tmp_path):
    sim = _office(tmp_path, box_extra="remote_login = false")
    ev = sim.run(_attendant_login("101"))
    assert _prompts_after_box_number(ev)[:2] == ["pin", "login_incorrect"]
    assert not of(ev, "login", ok=True)
    assert of(ev, "login", ok=False)[0]["box"] is None


def test_remote_login_off_ignores_star_during_the_greeting(tmp_path):
    sim = Sim(tmp_path)
    text = sim.config_path.read_text().replace('number = "100"\n', 'number = "100"\nremote_login = false\n')
    sim.config_path.write_text(text)
    sim.config = parse_config(tomllib.loads(text), str(sim.config_path))
    ev = sim.run(_call('{ wait = "prompt:greeting" }, { wait = { seconds = 0.5 } }, { dtmf = "*" }, '
                       '{ wait = "beep" }, { hangup = "busy" }'))
    assert "pin" not in names(ev)
    assert "beep" in names(ev)


@pytest.mark.parametrize("pin", ["0000", "1234", "9876", "100"])
def test_a_trivial_pin_is_refused_by_phone(tmp_path, pin):
    sim = Sim(tmp_path)
    ev = sim.run(_call('{ wait = "prompt:greeting" }, { wait = { seconds = 0.5 } }, { dtmf = "*" }, '
                       f'{{ wait = "prompt:pin" }}, {{ dtmf = "{PIN}#" }}, {{ wait = "prompt:menu" }}, '
                       '{ dtmf = "0" }, { wait = "prompt:options" }, { dtmf = "2" }, '
                       f'{{ wait = "prompt:new_pin" }}, {{ dtmf = "{pin}#" }}, '
                       '{ wait = "prompt:pin_invalid" }, { hangup = "busy" }'))
    assert "pin_invalid" in names(ev) and "pin_changed" not in names(ev)
    assert not (sim.data / "pins.json").exists()


def test_a_locked_box_answers_like_a_box_that_does_not_exist(tmp_path):
    # Only a real box can be locked: a "locked" prompt would tell a caller trying
    # numbers which ones exist. Locked or unknown, the caller hears the same prompts.
    from linebox.voicemail.store import Store

    sim = _office(tmp_path)
    store = Store(sim.data, sim.config.boxes)
    store.open()
    try:
        for _ in range(12):
            store.check_pin("101", "0150", "phone")
        assert store.is_locked("101")
    finally:
        store.close()
    three_tries = ('{ wait = "prompt:attendant" }, { dtmf = "*" }, '
                   + ", ".join('{{ wait = "prompt:box_number" }}, {{ dtmf = "{n}#" }}, '
                               '{{ wait = "prompt:pin" }}, {{ dtmf = "{pin}#" }}, '
                               '{{ wait = "prompt:login_incorrect" }}'.format(n="{n}", pin=PIN)
                               for _ in range(3))
                   + ', { wait = "prompt:goodbye" }, { hangup = "busy" }')
    locked = sim.run(_call(three_tries.replace("{n}", "101")))
    unknown = sim.run(_call(three_tries.replace("{n}", "555")))
    assert of(locked, "login", box="101", reason="locked")          # the owner's side knows
    assert names(locked) == names(unknown)
    assert "locked" not in names(locked)
    assert _prompts_after_box_number(locked)[-2:] == ["login_incorrect", "goodbye"]


def test_a_typed_box_number_gets_its_pin_prompt_in_the_callers_language(tmp_path, monkeypatch):
    """Box 101 speaks German among English boxes: its PIN prompt and refusal must sound
    like an unknown number's, or the language would tell a caller that 101 is a box."""
    from linebox.calls import flows
    sim = _office(tmp_path, box_extra='language = "de"')
    spoken = []
    say = flows.Session.say

    def spy(self, name, clips=None, interruptible=True):
        spoken.append((name, self.prompts().language))
        return (yield from say(self, name, clips, interruptible))

    monkeypatch.setattr(flows.Session, "say", spy)
    sim.run(_attendant_login("555"))
    unknown = [x for x in spoken if x[0] in ("pin", "login_incorrect")]
    spoken.clear()
    sim.run(_attendant_login("101", pin="0150"))
    real = [x for x in spoken if x[0] in ("pin", "login_incorrect")]
    assert unknown == real == [("pin", "en"), ("login_incorrect", "en")]
    spoken.clear()
    sim.run(_call('{ wait = "prompt:attendant" }, { dtmf = "*" }, { wait = "prompt:box_number" }, '
                  f'{{ dtmf = "101#" }}, {{ wait = "prompt:pin" }}, {{ dtmf = "{PIN}#" }}, '
                  '{ wait = "prompt:menu" }, { hangup = "busy" }'))
    assert ("counts", "de") in spoken       # once in, the box speaks its own language
