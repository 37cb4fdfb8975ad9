"""`[device] timezone` is the zone of every time a person sees: the store's `received`,
`linebox messages` (the mail: test_email.py; office hours: test_schedule.py)."""

import json
import zoneinfo
from array import array

from conftest import run_linebox
from linebox.config import load_config
from linebox.voicemail.store import Store

T0 = 1_700_000_000.0           # 2023-11-14 22:13:20 UTC, 17:13:20 in New York

CONFIG = """
[device]
data_dir = "{data}"
{tz}
[[line]]
id = 1
driver = "sim"
route = "100"
[[box]]
number = "100"
pin_required = false
"""


def _leave(tmp_path, tz=None):
    cfg = tmp_path / "linebox.toml"
    cfg.write_text(CONFIG.format(data=tmp_path / "data", tz=""))
    store = Store(tmp_path / "data", load_config(cfg).boxes, clock=lambda: T0, tz=tz)
    store.open()
    p = store.start_recording("100", 1, "5551234567", "JOHN DOE")
    p.write(array("h", [0] * 8000))
    rec = p.finish()
    store.close()
    return cfg, rec


def test_linebox_messages_shows_the_device_time(tmp_path):
    # Written by a box with no zone set (UTC here), read after the owner set New York.
    cfg, rec = _leave(tmp_path, tz=zoneinfo.ZoneInfo("UTC"))
    assert rec["received"] == "2023-11-14T22:13:20+00:00"
    cfg.write_text(CONFIG.format(data=tmp_path / "data", tz='timezone = "America/New_York"'))
    res = run_linebox("messages", "--config", cfg, "--json")
    assert res.returncode == 0, res.stderr.decode()
    (msg,) = [json.loads(x) for x in res.stdout.decode().splitlines()]
    assert msg["received"] == "2023-11-14T17:13:20-05:00"
    table = run_linebox("messages", "--config", cfg).stdout.decode().splitlines()
    assert "2023-11-14T17:13:20-05:00" in table[1]


def test_the_sim_table_shows_the_device_time_not_the_machines(tmp_path, monkeypatch):
    cfg = tmp_path / "linebox.toml"
    cfg.write_text(CONFIG.format(data=tmp_path / "data", tz='timezone = "America/New_York"'))
    scen = tmp_path / "scenario.toml"
    scen.write_text('start = "2023-11-14T22:13:20+00:00"\n[[call]]\nline = 1\nat = 1\n'
                    'give_up_after_rings = 1\nsteps = []\n')
    monkeypatch.setenv("TZ", "Asia/Tokyo")           # the machine's own zone: 07:13 next day
    res = run_linebox("sim", scen, "--config", cfg, "--data", tmp_path / "data")
    assert res.returncode == 0, res.stderr.decode()
    (incoming,) = [x for x in res.stdout.decode().splitlines() if "incoming" in x]
    assert incoming.split()[:2] == ["1.00s", "17:13:21"], incoming
