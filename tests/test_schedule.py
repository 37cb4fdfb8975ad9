"""Office hours per line: `schedule` in the config, read on the device's time zone and the
appliance clock (virtual in `linebox sim`), across hours and days."""

from datetime import datetime

import pytest

from linebox.config import ConfigError, parse_config
from linebox.sim.runner import build, run
from linebox.sim.scenario import load_scenario

CONFIG = """
[device]
data_dir = "{data}"
timezone = "America/New_York"
[[line]]
id = 1
driver = "sim"
rings = 1                        # outside office hours: at once
route = "100"
schedule = [{{ days = "mon-fri", from = "08:00", to = "17:30", rings = 6 }},
            {{ days = "sat", from = "09:00", to = "12:00", answer = false }},
            {{ days = "sun", from = "22:00", to = "06:00", rings = 3 }}]
[[box]]
number = "100"
pin_required = false
"""

# 2024-03-04 is a Monday. The times are New York's (EST, -05:00), the zone of the device;
# the scenario's own clock is UTC, so a wrong zone would shift every call by 5 hours.
SCENARIO = """
start = 2024-03-04T21:00:00Z
[[call]]           # Monday 16:05 in New York: office hours
line = 1
at = 300
steps = [ { wait = "answer" }, { hangup = "busy" } ]
[[call]]           # Monday 17:45: after hours
line = 1
at = 6300
steps = [ { wait = "answer" }, { hangup = "busy" } ]
[[call]]           # Saturday 10:00: the office answers itself, Linebox lets it ring
line = 1
at = 410400
give_up_after_rings = 8
steps = [ { wait = "answer" }, { hangup = "busy" } ]
[[call]]           # Monday 01:00 (EDT since Sunday), in Sunday night's window past midnight
line = 1
at = 547200
steps = [ { wait = "answer" }, { hangup = "busy" } ]
"""


def _config(tmp_path, text=CONFIG):
    import tomllib
    return parse_config(tomllib.loads(text.format(data=tmp_path / "data")), str(tmp_path / "c.toml"))


def test_calls_are_answered_after_the_rings_of_the_hours_they_come_in(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    app, exchange, transcript = build(_config(tmp_path), load_scenario(path), None, True)
    try:
        run(app, exchange, transcript)
    finally:
        app.close()
    answers = {e["call"]: e["after_rings"] for e in transcript.events if e["event"] == "answer"}
    rings = {}
    for e in transcript.events:
        if e["event"] == "ring":
            rings[e["call"]] = e["n"]
    assert answers == {1: 6, 2: 1, 4: 3}
    assert rings[3] == 8                       # rang until the caller gave up, unanswered


def _hours(text):
    import tomllib
    line = tomllib.loads(CONFIG.format(data="/x"))
    line["line"][0]["schedule"] = tomllib.loads(f"s = [{text}]")["s"]
    return parse_config(line).line(1).schedule


def test_a_window_past_midnight_belongs_to_the_day_it_starts():
    (h,) = _hours('{ days = "fri", from = "22:00", to = "06:00", rings = 2 }')
    assert h.covers(datetime(2024, 3, 8, 23, 0))        # Friday night
    assert h.covers(datetime(2024, 3, 9, 5, 59))        # Saturday early: still Friday's
    assert not h.covers(datetime(2024, 3, 9, 6, 0))
    assert not h.covers(datetime(2024, 3, 8, 5, 0))     # Friday early: Thursday's night
    (w,) = _hours('{ days = "fri-mon", from = "00:00", to = "24:00", rings = 2 }')
    assert {d for d in range(4, 12) if w.covers(datetime(2024, 3, d, 12))} == {4, 8, 9, 10, 11}


@pytest.mark.parametrize("entry, message", [
    ('{ days = "mon-fri", from = "8:00", to = "17:30" }',
     "[[line]] #1 schedule #1 key 'rings': missing (or answer = false: not answered in these hours)"),
    ('{ days = "mon-fri", from = "08:00", to = "25:00", rings = 3 }',
     "[[line]] #1 schedule #1 key 'to': must be a time like \"08:00\" (24-hour clock)"),
    ('{ days = "monday", from = "08:00", to = "17:00", rings = 3 }',
     "[[line]] #1 schedule #1 key 'days': 'monday': weekdays are mon, tue, wed, thu, fri, sat, sun"),
    ('{ days = "mon", from = "08:00", to = "17:00", rings = 3, ring = 2 }',
     "[[line]] #1 schedule #1: unknown key 'ring'"),
    ('{ days = "mon", from = "08:00", to = "08:00", rings = 3 }',
     "[[line]] #1 schedule #1 key 'to': must differ from 'from'"),
    ('{ days = "mon", from = "08:00", to = "09:00", answer = false, rings = 3 }',
     "[[line]] #1 schedule #1 key 'rings': not with answer = false"),
])
def test_schedule_mistakes_are_one_line_naming_the_entry(entry, message):
    with pytest.raises(ConfigError) as e:
        _hours(entry)
    assert str(e.value).startswith("config: " + message)
