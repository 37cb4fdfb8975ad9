"""The event catalogue (linebox.events): every bus event the firmware publishes is named
there once, none is an underscore-"internal" one, and what a call publishes carries the
fields the catalogue promises (the answer carries the caller, so no subscriber has to
remember the ring cycle)."""

import re
from pathlib import Path

from linebox.events import CATALOGUE, HIDDEN, Bus
from simkit import Sim, of, speech_wav

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware" / "linebox"
# publish("kind", ...), _publish(line, "kind", ...), {"event": "kind", ...}
LITERAL = re.compile(r'(?:publish\((?:self, |line, )?|"event": )"([a-z_]+)"')
CONSTANT = re.compile(r'(?:publish\(|"event": )(?:events\.)?([A-Z][A-Z_]+)\b')


def test_every_published_event_is_in_the_catalogue():
    import linebox.events as events
    found = set()
    for path in FIRMWARE.rglob("*.py"):
        text = path.read_text()
        found |= set(LITERAL.findall(text))
        found |= {getattr(events, c) for c in CONSTANT.findall(text)}
    assert found, "the pattern found no publisher"
    assert found - set(CATALOGUE) == set()
    assert not [k for k in CATALOGUE if k.startswith("_")]
    assert {"line_state", "prompt_end", "box_changed"} <= HIDDEN


def test_a_call_publishes_catalogued_events_with_their_fields(tmp_path, speech_files):
    sim = Sim(tmp_path)
    voice = speech_wav(tmp_path, speech_files[1], 4.0)
    seen: list[dict] = []
    original = Bus.publish

    def record(self, event):
        seen.append(event)
        original(self, event)

    Bus.publish = record
    try:
        sim.run('[[call]]\nline = 1\nat = 1.0\ncaller = { number = "5551234567", name = "JOHN DOE" }\n'
                f'steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]\n')
    finally:
        Bus.publish = original
    for ev in seen:
        kind = CATALOGUE[ev["event"]]
        extra = set(ev) - {"event", "t", "line", "call"} - set(kind.fields)
        assert not extra, f"{ev['event']} carries {extra} not in the catalogue"
    (answer,) = of(seen, "answer")
    assert (answer["caller_number"], answer["caller_name"]) == ("5551234567", "JOHN DOE")
    assert of(seen, "line_state", state="answered") and of(seen, "prompt_end", name="beep")
    (saved,) = of(seen, "message_saved")
    assert saved["line"] == 1
