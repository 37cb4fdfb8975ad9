"""`linebox unlock BOX`: the administrator's way out of a lock for good."""

import subprocess
import sys

from linebox.voicemail.logins import LOCK_FOREVER
from linebox.voicemail.store import Store
from simkit import Sim


def run_linebox(*args):
    return subprocess.run([sys.executable, "-m", "linebox", *args], capture_output=True, text=True)


def test_unlock_lifts_a_lock_for_good(tmp_path):
    sim = Sim(tmp_path)
    store = Store(sim.data, sim.config.boxes, clock=lambda: 1e9)
    store.open()
    for _ in range(LOCK_FOREVER):
        store.login_failed("100")
    assert store.lock_state("100")["permanent"]
    store.close()
    r = run_linebox("unlock", "100", "--config", str(sim.config_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"box 100: unlocked ({LOCK_FOREVER} failed logins forgotten)\n"
    store.open(read_only=True)
    assert not store.is_locked("100")
    store.close()


def test_unlock_of_an_unknown_box_is_one_line(tmp_path):
    sim = Sim(tmp_path)
    r = run_linebox("unlock", "555", "--config", str(sim.config_path))
    assert r.returncode == 2
    assert r.stderr == f"linebox: error: no box 555 in {sim.config_path}\n"
