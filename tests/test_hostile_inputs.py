"""Hostile inputs that used to end in a traceback or MemoryError: one line each."""

import subprocess
import sys
from pathlib import Path

from simkit import Sim

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"


def _one_line_error(r, needle: str) -> None:
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert err.startswith("linebox: error: ") and err.count("\n") == 1, err
    assert needle in err, err


def test_a_scenario_starting_in_year_1_is_one_line(tmp_path):
    sim = Sim(tmp_path)
    r = subprocess.run([sys.executable, "-m", "linebox", "sim", str(HOSTILE / "scenario-start-year-1.toml"),
                        "--config", str(sim.config_path), "--data", str(sim.data)], capture_output=True)
    _one_line_error(r, "key 'start': the year must be from 1971 to 2999, not 1")


def test_analyze_of_an_endless_stream_stops_at_the_bound():
    with open("/dev/zero", "rb") as endless:
        r = subprocess.run([sys.executable, "-m", "linebox", "analyze", "-"], stdin=endless,
                           capture_output=True, timeout=120)
    _one_line_error(r, "<stdin>: larger than 100 MB")


def test_an_empty_data_option_is_one_line(tmp_path):
    sim = Sim(tmp_path)
    r = subprocess.run([sys.executable, "-m", "linebox", "messages", "--config", str(sim.config_path),
                        "--data", ""], capture_output=True)
    _one_line_error(r, "--data: must be the path of a folder")
