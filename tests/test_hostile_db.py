"""A database of the wrong shape is treated like a damaged one: its backup, then the
audio files. Nothing crashes, nothing in a state we do not know vanishes."""

import json
import logging
import shutil
from array import array
from pathlib import Path

import pytest

from conftest import run_linebox
from linebox.voicemail.store import Store
from linebox.wavfile import write_wav
from simkit import Sim

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
BAD_SHAPES = ["db-messages-list.json", "db-record-without-state.json", "db-id-not-a-number.json",
              "db-brackets-100000.json"]
GOOD_RECORD = json.loads((HOSTILE / "db-unknown-state.json").read_text())
GOOD_RECORD["messages"]["1"]["state"] = "saved"


def _folder(tmp_path, db_fixture: str, bak: bool) -> Sim:
    sim = Sim(tmp_path)
    sim.data.mkdir()
    shutil.copy(HOSTILE / db_fixture, sim.data / "db.json")
    if bak:
        (sim.data / "db.json.bak").write_text(json.dumps(GOOD_RECORD))
    (sim.data / "messages" / "100").mkdir(parents=True)
    write_wav(sim.data / "messages" / "100" / "000001.wav", array("h", [100, -100] * 8000))
    return sim


@pytest.mark.parametrize("fixture", BAD_SHAPES)
def test_a_database_of_the_wrong_shape_falls_back_to_its_backup(tmp_path, fixture, caplog):
    sim = _folder(tmp_path, fixture, bak=True)
    listing = run_linebox("messages", "--config", sim.config_path, "--json")   # read-only, beside a daemon
    assert listing.returncode == 0, listing.stderr.decode()
    (msg,) = [json.loads(x) for x in listing.stdout.decode().splitlines()]
    assert (msg["id"], msg["state"], msg["caller_number"]) == ("000001", "saved", "5551234567")
    store = Store(sim.data, sim.config.boxes)
    with caplog.at_level(logging.WARNING, "linebox.voicemail"):
        store.open()
    try:
        (msg,) = store.messages()
        assert (msg["state"], msg["caller_number"]) == ("saved", "5551234567")
    finally:
        store.close()
    assert "recovered from db.json.bak" in caplog.text and "wrong shape" in caplog.text \
        or "nested too deep" in caplog.text
    assert list(sim.data.glob("db.json.corrupt-*")), "the bad file is kept as evidence"


@pytest.mark.parametrize("fixture", BAD_SHAPES)
def test_without_a_backup_the_audio_files_come_back_as_messages(tmp_path, fixture):
    sim = _folder(tmp_path, fixture, bak=False)
    store = Store(sim.data, sim.config.boxes)
    store.open()
    try:
        (msg,) = store.messages()
        assert (msg["id"], msg["state"], msg["recovered"]) == ("000001", "new", True)
    finally:
        store.close()


@pytest.mark.parametrize("fixture", BAD_SHAPES)
def test_sim_starts_on_a_database_of_the_wrong_shape(tmp_path, fixture):
    sim = _folder(tmp_path, fixture, bak=True)
    scen = sim.write_scenario("[[call]]\nline = 1\nat = 1\ngive_up_after_rings = 1\nsteps = []\n")
    res = run_linebox("sim", scen, "--config", sim.config_path, "--data", sim.data, "--json", timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    assert b"Traceback" not in res.stderr


def test_a_record_in_an_unknown_state_is_kept_logged_and_listed(tmp_path, caplog):
    sim = _folder(tmp_path, "db-unknown-state.json", bak=False)
    store = Store(sim.data, sim.config.boxes)
    with caplog.at_level(logging.WARNING, "linebox.voicemail"):
        store.open()
    try:
        (msg,) = store.messages()
        assert msg["state"] == "archived"
        assert store.counts("100")["total"] == 0          # not counted as live ...
        store.set_state("000001", "saved")                # ... but the owner can fix it
        assert store.get("000001")["state"] == "saved"
    finally:
        store.close()
    assert "unknown state 'archived'" in caplog.text
    listing = run_linebox("messages", "--config", sim.config_path)
    assert b"000001" in listing.stdout
