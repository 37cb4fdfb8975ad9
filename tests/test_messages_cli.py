"""`linebox messages` shows a message a caller retracted (it is in the trash, restorable)."""

import json
from array import array

from conftest import run_linebox
from linebox.voicemail.store import Store
from simkit import Sim


def test_messages_shows_a_retracted_message(tmp_path):
    sim = Sim(tmp_path)
    store = Store(sim.data, sim.config.boxes)
    store.open()
    p = store.start_recording("100", 1, "5551234567", "JOHN DOE")
    p.write(array("h", [300, -300] * 8000))
    kept, gone = p.finish(), None
    p = store.start_recording("100", 1, "5551234567", "JOHN DOE")
    p.write(array("h", [300, -300] * 8000))
    gone = p.finish()
    store.retract(gone["id"])
    store.close()
    listing = run_linebox("messages", "--config", sim.config_path, "--json")
    got = {m["id"]: m for m in map(json.loads, listing.stdout.decode().splitlines())}
    assert (got[gone["id"]]["state"], got[gone["id"]]["retracted"]) == ("trash", True)
    assert (got[kept["id"]]["state"], got[kept["id"]]["retracted"]) == ("new", False)
    text = run_linebox("messages", "--config", sim.config_path).stdout.decode().splitlines()
    (line,) = [x for x in text if x.startswith(gone["id"])]
    assert line.endswith("(retracted by caller)")
