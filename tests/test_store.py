"""The voicemail store: message lifecycle, limits, retention, lockout, crash recovery."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from array import array
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from linebox.errors import LineboxError
from linebox.events import Bus
from linebox.voicemail.logins import LOCK_FOREVER
from linebox.voicemail.recorder import Recording
from linebox.voicemail.store import BadTransition, NoSuchMessage, Store, StoreError, StoreFull
from linebox.wavfile import read_wav

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000.0                     # 2023-11-14T22:13:20Z
DAY = 86400.0
TZ = timezone(timedelta(hours=2))


@dataclass
class Box:
    number: str
    name: str
    max_messages: int = 5
    keep_heard_days: int = 30
    trash_days: int = 7
    retract_minutes: int = 15
    pin_hash: str | None = None


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t

    def advance(self, seconds):
        self.t += seconds


BOXES = {"100": Box("100", "Main office", pin_hash="scrypt$config"), "200": Box("200", "Sales", max_messages=2)}




@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def events():
    return []


@pytest.fixture
def make_store(tmp_path, clock, events):
    """Opens a store on tmp_path/data (again and again, like restarts) recording events."""
    opened = []

    def make(boxes=BOXES):
        bus = Bus()
        bus.subscribe(events.append)
        store = Store(tmp_path / "data", boxes, bus=bus, clock=clock, tz=TZ)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store, events):
    s = make_store()
    assert s.open() == []
    events.clear()
    return s


def tone(n, start=0):
    return array("h", ((start + i) * 13 % 20000 - 10000 for i in range(n)))


def leave(store, box="100", seconds=2.5, number="5551234567", name="JOHN DOE", line=1,
          keep=None):
    pending = store.start_recording(box, line, number, name)
    n = int(seconds * 8000)
    for start in range(0, n, 160):
        pending.write(tone(min(160, n - start), start))
    return pending.finish(keep)


def without_counts(events):
    return [e for e in events if e["event"] != "box_changed"]


def box_changes(events):
    return [(e["box"], e["counts"]["new"], e["counts"]["saved"]) for e in events
            if e["event"] == "box_changed"]


# ------------------------------------------------------------------ lifecycle

def test_saved_message_record_has_every_listed_field(store, clock, tmp_path):
    msg = leave(store, seconds=2.5, keep=19999)
    path = tmp_path / "data" / "messages" / "100" / "000001.wav"
    assert {k: msg[k] for k in ("id", "box", "state", "caller_number", "caller_name", "received",
                                "seconds", "line", "file", "recovered")} == {
        "id": "000001", "box": "100", "state": "new", "caller_number": "5551234567",
        "caller_name": "JOHN DOE", "received": "2023-11-15T00:13:20+02:00", "seconds": 2.5,
        "line": 1, "file": str(path.resolve()), "recovered": False}
    assert read_wav(path) == tone(19999)
    assert store.get("000001") == msg
    assert json.loads(json.dumps(store.messages())) == [msg]    # printable as JSON


def test_received_defaults_to_local_time_with_an_offset(tmp_path, clock):
    store = Store(tmp_path, BOXES, clock=clock)
    store.open()
    received = datetime.fromisoformat(leave(store)["received"])
    store.close()
    assert received.utcoffset() is not None
    assert received.timestamp() == T0


def test_full_lifecycle_publishes_events_in_order(store, clock, events):
    msg = leave(store)
    mid = msg["id"]
    store.set_state(mid, "heard")
    store.set_state(mid, "heard")                        # no change, no event
    store.set_state(mid, "saved")
    store.delete(mid)
    assert store.undelete_last("100")["state"] == "saved"
    store.delete(mid)
    store.purge(mid)
    assert not Path(msg["file"]).exists()
    assert store.get(mid) is None and store.messages() == []
    assert without_counts(events) == [
        {"event": "message_saved", "box": "100", "id": mid, "seconds": 2.5, "line": 1,
         "caller_number": "5551234567", "caller_name": "JOHN DOE", "recovered": False},
        {"event": "message_state", "id": mid, "box": "100", "state": "heard", "line": 1},
        {"event": "message_state", "id": mid, "box": "100", "state": "saved", "line": 1},
        {"event": "message_state", "id": mid, "box": "100", "state": "trash", "line": 1},
        {"event": "message_state", "id": mid, "box": "100", "state": "saved", "line": 1},
        {"event": "message_state", "id": mid, "box": "100", "state": "trash", "line": 1},
        {"event": "message_state", "id": mid, "box": "100", "state": "deleted", "line": 1},
    ]
    # box_changed follows each change of the counts, and only those (saved -> purge from
    # trash changes nothing).
    kinds = [e["event"] if e["event"] != "box_changed" else "box" for e in events]
    assert kinds == ["message_saved", "box", "message_state", "box", "message_state",
                     "message_state", "box", "message_state", "box", "message_state", "box",
                     "message_state"]
    assert box_changes(events) == [("100", 1, 0), ("100", 0, 1), ("100", 0, 0), ("100", 0, 1),
                                   ("100", 0, 0)]


def test_every_change_is_on_disk_before_its_event(store, tmp_path):
    db = tmp_path / "data" / "db.json"
    seen = []

    def check(event):
        records = json.loads(db.read_text())["messages"]
        if event["event"] == "message_saved":
            seen.append(records[str(int(event["id"]))]["state"])
        elif event["event"] == "message_state":
            rec = records.get(str(int(event["id"])))
            seen.append(rec["state"] if rec else "deleted")

    store.subscribe(check)
    mid = leave(store)["id"]
    for state in ("heard", "saved", "trash"):
        store.set_state(mid, state)
    store.purge(mid)
    assert seen == ["new", "heard", "saved", "trash", "deleted"]


def test_discard_removes_file_and_record_and_reports_reason(store, events, tmp_path):
    pending = store.start_recording("100", 2, "5551234567", None)
    pending.write(tone(8000))
    pending.discard("too_short")
    assert list((tmp_path / "data" / "messages" / "100").iterdir()) == []
    assert store.messages() == [] and store.get(pending.id) is None
    assert events == [{"event": "message_discarded", "box": "100", "reason": "too_short",
                       "line": 2}]
    assert leave(store)["id"] == "000002"                # ids are never reused


def test_messages_are_oldest_first_and_filter_by_box_and_state(store, clock):
    a = leave(store, "100")
    clock.advance(60)
    b = leave(store, "200")
    clock.advance(60)
    c = leave(store, "100")
    store.set_state(a["id"], "heard")
    assert [m["id"] for m in store.messages()] == [a["id"], b["id"], c["id"]]
    assert [m["id"] for m in store.messages("100")] == [a["id"], c["id"]]
    assert [m["id"] for m in store.messages("100", ["new"])] == [c["id"]]
    assert [m["id"] for m in store.messages(states=["heard", "saved"])] == [a["id"]]


def test_recording_in_progress_is_not_listed(store):
    pending = store.start_recording("100", 1, None, None)
    assert store.messages() == [] and store.get(pending.id) is None
    assert store.counts("100")["total"] == 0
    with pytest.raises(BadTransition):
        store.set_state(pending.id, "heard")
    pending.discard("hangup")


def test_counts_report_heard_and_saved_together(store):
    ids = [leave(store)["id"] for _ in range(4)]
    store.set_state(ids[0], "heard")
    store.set_state(ids[1], "saved")
    store.delete(ids[2])
    assert store.counts("100") == {"new": 1, "saved": 2, "total": 3, "full": False,
                                   "name": "Main office"}


def test_bad_requests_are_one_line_errors(store):
    mid = leave(store)["id"]
    with pytest.raises(NoSuchMessage, match="no message 999999"):
        store.set_state("999999", "heard")
    with pytest.raises(BadTransition):
        store.set_state(mid, "deleted")
    with pytest.raises(LineboxError, match="no box 300"):
        store.start_recording("300", 1, None, None)
    assert store.get("nonsense") is None


# ------------------------------------------------------------------ limits

def test_full_box_refuses_a_new_recording_and_trash_does_not_count(store, events):
    first = leave(store, "200")
    leave(store, "200")
    assert store.is_full("200")
    assert events[-1] == {"event": "box_changed", "box": "200",
                          "counts": {"new": 2, "saved": 0, "total": 2, "full": True,
                                     "name": "Sales"}}
    with pytest.raises(StoreFull, match="box 200 is full"):
        store.start_recording("200", 1, None, None)
    store.delete(first["id"])
    assert not store.is_full("200")
    leave(store, "200")
    assert store.is_full("200")


def test_recordings_in_progress_hold_their_place_in_a_nearly_full_box(store):
    a = store.start_recording("200", 1, None, None)
    b = store.start_recording("200", 2, None, None)
    with pytest.raises(StoreFull):
        store.start_recording("200", 3, None, None)
    a.discard("hangup")
    store.start_recording("200", 3, None, None).discard("hangup")
    b.discard("hangup")


def test_lines_recording_at_once_get_distinct_ids_and_all_messages_are_kept(store):
    boxes = {"100": Box("100", "A", max_messages=100), "200": Box("200", "B", max_messages=100)}
    store.boxes = boxes
    errors = []

    def line(n):
        try:
            for _ in range(5):
                leave(store, "100" if n % 2 else "200", seconds=0.2, line=n)
        except Exception as e:                       # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=line, args=(n,)) for n in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    msgs = store.messages()
    assert sorted(m["id"] for m in msgs) == [f"{i:06d}" for i in range(1, 21)]
    assert store.counts("100")["new"] == 10 and store.counts("200")["new"] == 10
    assert all(len(read_wav(m["file"])) == 1600 for m in msgs)


# ------------------------------------------------------------------ retention

def test_heard_goes_to_trash_after_keep_days_and_trash_is_purged_after_trash_days(
        store, clock, events):
    heard = leave(store)
    new = leave(store)
    saved = leave(store)
    clock.advance(5 * DAY)                     # heard five days after it arrived
    store.set_state(heard["id"], "heard")
    store.set_state(saved["id"], "saved")
    events.clear()
    clock.advance(30 * DAY - 1)
    store.apply_retention()
    assert store.get(heard["id"])["state"] == "heard"
    clock.advance(1)
    store.apply_retention()
    assert store.get(heard["id"])["state"] == "trash"
    clock.advance(7 * DAY - 1)
    store.apply_retention()
    assert store.get(heard["id"])["state"] == "trash"
    store.apply_retention(now=clock() + 1)
    assert store.get(heard["id"]) is None
    assert not Path(heard["file"]).exists()
    assert without_counts(events) == [
        {"event": "message_state", "id": heard["id"], "box": "100", "state": "trash", "line": 1},
        {"event": "message_state", "id": heard["id"], "box": "100", "state": "deleted", "line": 1},
    ]
    clock.advance(1000 * DAY)
    store.apply_retention()
    assert [(m["id"], m["state"]) for m in store.messages()] == [(new["id"], "new"),
                                                                 (saved["id"], "saved")]


def test_undeleted_heard_message_gets_a_fresh_retention_period(store, clock):
    mid = leave(store)["id"]
    store.set_state(mid, "heard")
    clock.advance(29 * DAY)
    store.delete(mid)
    clock.advance(2 * DAY)
    assert store.undelete_last("100")["state"] == "heard"
    store.apply_retention()
    assert store.get(mid)["state"] == "heard"
    clock.advance(30 * DAY)
    store.apply_retention()
    assert store.get(mid)["state"] == "trash"


def test_undelete_last_restores_only_the_last_deleted_once(store):
    a = leave(store)["id"]
    b = leave(store)["id"]
    store.set_state(a, "heard")
    store.delete(a)
    store.delete(b)
    assert store.undelete_last("200") is None
    assert store.undelete_last("100")["id"] == b
    assert store.get(b)["state"] == "new"
    assert store.undelete_last("100") is None
    assert store.get(a)["state"] == "trash"
    store.set_state(a, "heard")                      # explicit undelete of any trash message
    assert store.get(a)["state"] == "heard"


def test_undelete_after_purge_finds_nothing(store):
    mid = leave(store)["id"]
    store.delete(mid)
    store.purge(mid)
    assert store.undelete_last("100") is None


# ------------------------------------------------------------------ retraction

def test_recent_from_finds_the_callers_newest_new_message_within_the_window(store, clock):
    older = leave(store, number="5551234567")
    clock.advance(10)
    newer = leave(store, number="5551234567")
    leave(store, number="5559999999")
    assert store.recent_from("100", "5551234567", 900)["id"] == newer["id"]
    assert store.recent_from("200", "5551234567", 900) is None
    assert store.recent_from("100", None, 900) is None
    store.set_state(newer["id"], "heard")
    assert store.recent_from("100", "5551234567", 900)["id"] == older["id"]
    clock.advance(890)                               # older was saved 900 s ago
    assert store.recent_from("100", "5551234567", 900)["id"] == older["id"]
    clock.advance(1)
    assert store.recent_from("100", "5551234567", 900) is None


def test_window_counts_from_the_end_of_the_message(store, clock):
    pending = store.start_recording("100", 1, "5551234567", None)
    pending.write(tone(8000))
    clock.advance(180)                               # a three-minute message
    pending.finish()
    clock.advance(899)
    assert store.recent_from("100", "5551234567", 900) is not None


def test_retract_moves_the_message_to_the_trash_marked_retracted(store, events, clock):
    """Caller ID can be forged: a retraction must stay undoable by the owner."""
    msg = leave(store)
    events.clear()
    store.retract(msg["id"])
    got = store.get(msg["id"])
    assert (got["state"], got["retracted"], got["prev_state"]) == ("trash", True, "new")
    assert Path(msg["file"]).exists()
    assert store.recent_from("100", msg["caller_number"], 900) is None   # not offered again
    assert events == [
        {"event": "message_retracted", "id": msg["id"], "box": "100", "line": 1},
        {"event": "box_changed", "box": "100",
         "counts": {"new": 0, "saved": 0, "total": 0, "full": False, "name": "Main office"}},
    ]


def test_the_owner_restores_a_retracted_message_within_trash_days(store, clock):
    msg = leave(store)
    store.retract(msg["id"])
    clock.advance(6 * DAY)
    back = store.undelete_last("100")
    assert (back["state"], back["retracted"]) == ("new", False)


def test_a_retracted_message_is_purged_after_trash_days(store, clock):
    msg = leave(store)
    store.retract(msg["id"])
    clock.advance(7 * DAY)
    store.apply_retention()
    assert store.get(msg["id"]) is None and not Path(msg["file"]).exists()


def test_a_heard_message_cannot_be_retracted(store):
    mid = leave(store)["id"]
    store.set_state(mid, "heard")
    with pytest.raises(BadTransition, match="only a new message"):
        store.retract(mid)
    assert store.get(mid)["state"] == "heard"


# ------------------------------------------------------------------ PINs and lockout

def test_ten_failures_within_an_hour_lock_login_for_fifteen_minutes(store, clock):
    for _ in range(9):
        store.login_failed("100")
        clock.advance(390)                           # 9 failures over 58.5 min
    assert not store.is_locked("100")
    assert store.login_failed("100") is True
    assert store.is_locked("100") and not store.is_locked("200")
    clock.advance(15 * 60 - 1)
    assert store.is_locked("100")
    clock.advance(1)
    assert not store.is_locked("100")
    store.login_failed("100")                        # the count starts over after a lock
    assert not store.is_locked("100")


def test_ten_failures_spread_over_two_hours_do_not_lock(store, clock):
    for _ in range(10):
        store.login_failed("100")
        assert not store.is_locked("100")
        clock.advance(800)


def test_successful_login_clears_the_failure_count(store):
    for _ in range(9):
        store.login_failed("100")
    store.login_ok("100")
    store.login_failed("100")
    assert not store.is_locked("100")


def test_lockout_survives_a_restart(store, make_store, clock):
    for _ in range(10):
        store.login_failed("100")
    store.close()
    again = make_store()
    again.open()
    assert again.is_locked("100")
    clock.advance(900)
    assert not again.is_locked("100")


def _fail(store, clock, n, every=10.0):
    for _ in range(n):
        store.login_failed("100")
        clock.advance(every)


def test_each_lock_lasts_twice_as_long_as_the_one_before(store, clock, events):
    durations = []
    for _ in range(4):
        _fail(store, clock, 10, every=0.0)
        start = clock.t
        while store.is_locked("100"):
            clock.advance(60)
        durations.append(clock.t - start)
    assert durations == [15 * 60, 30 * 60, 60 * 60, 120 * 60]
    locks = [e for e in events if e.get("event") == "box_locked"]
    assert [e["first"] for e in locks] == [True, False, False, False]
    assert locks[0]["box"] == "100" and locks[0]["permanent"] is False
    assert locks[0]["until"] == "2023-11-15T00:28:20+02:00"    # T0 + 15 min, in the store's tz


def test_one_hundred_failures_without_a_success_lock_for_good(store, clock, events):
    for n in range(LOCK_FOREVER):
        assert not store.is_locked("100"), n
        store.login_failed("100", "web")
        while store.is_locked("100") and n < LOCK_FOREVER - 1:
            clock.advance(3600)
    assert store.is_locked("100")
    clock.advance(365 * DAY)
    assert store.is_locked("100")
    assert store.lock_state("100") == {"locked": True, "permanent": True, "until": None,
                                       "failures": LOCK_FOREVER}
    last = [e for e in events if e.get("event") == "box_locked"][-1]
    assert last["permanent"] is True and last["until"] is None and last["source"] == "web"
    assert store.unlock("100", by="owner") is True
    assert not store.is_locked("100")
    assert events[-1] == {"event": "box_unlocked", "box": "100", "by": "owner"}
    assert store.lock_state("100")["failures"] == 0


def test_a_patient_guesser_gets_at_most_one_hundred_guesses(store, clock):
    """Guessing as fast as the lock allows, for a year."""
    guesses = 0
    end = clock.t + 365 * DAY
    while clock.t < end:
        if store.is_locked("100"):
            clock.advance(600)
            continue
        store.login_failed("100")
        guesses += 1
        clock.advance(20)                  # one call, three tries, about a minute
    assert guesses == LOCK_FOREVER


def test_check_pin_is_one_counter_for_every_door(tmp_path, clock, events):
    from linebox.voicemail.pins import hash_pin
    boxes = {"100": Box("100", "Main office", pin_hash=hash_pin("4731", salt=b"s" * 16))}
    bus = Bus()
    bus.subscribe(events.append)
    store = Store(tmp_path / "data", boxes, bus=bus, clock=clock, tz=TZ)
    store.open()
    try:
        assert store.check_pin("100", "4731", "phone") == "ok"
        for i, door in enumerate(["phone", "sip", "web"] * 3):
            assert store.check_pin("100", "0150", door) == "wrong", i
        assert not store.is_locked("100")
        assert store.check_pin("100", "0150", "web") == "wrong"     # the tenth locks ...
        assert store.check_pin("100", "4731", "sip") == "locked"    # ... the right PIN too
        assert store.check_pin("999", "4731", "phone") == "wrong"   # no such box: no count
        assert store.lock_state("999")["failures"] == 0
        clock.advance(15 * 60)
        assert store.check_pin("100", "4731", "web") == "ok"
        assert store.lock_state("100") == {"locked": False, "permanent": False, "until": None,
                                           "failures": 0}
    finally:
        store.close()


def test_set_pin_refuses_trivial_pins(store):
    with pytest.raises(StoreError, match="one repeated digit"):
        store.set_pin("100", "0000")
    with pytest.raises(StoreError, match="consecutive digits"):
        store.set_pin("100", "9876")
    store.set_pin("100", "4731")
    assert store.pin_hash("100").startswith("scrypt$16384$8$1$")


def test_pin_changed_by_phone_overrides_config_and_is_kept(store, make_store, tmp_path):
    assert store.pin_hash("100") == "scrypt$config"
    assert store.pin_hash("200") is None
    store.set_pin_hash("200", "scrypt$phone")
    assert store.pin_hash("200") == "scrypt$phone"
    assert json.loads((tmp_path / "data" / "pins.json").read_text()) == {"200": "scrypt$phone"}
    store.close()
    again = make_store()
    again.open()
    assert again.pin_hash("200") == "scrypt$phone"
    assert again.pin_hash("100") == "scrypt$config"


def test_unreadable_pins_file_is_kept_aside_and_config_pins_apply(make_store, tmp_path,
                                                                   store_log):
    data = tmp_path / "data"
    data.mkdir()
    (data / "pins.json").write_text('{"100": "scrypt$ph')
    store = make_store()
    store.open()
    assert store.pin_hash("100") == "scrypt$config"
    [kept] = data.glob("pins.json.corrupt-*")
    assert kept.read_text() == '{"100": "scrypt$ph'
    [error] = store_log.at(logging.ERROR)
    assert "PINs from the configuration apply" in error and "scrypt$ph" not in error


def test_greeting_set_and_cleared(store, tmp_path):
    assert store.greeting_path("100") is None
    store.set_greeting("100", tone(4000))
    path = tmp_path / "data" / "greetings" / "100.wav"
    assert store.greeting_path("100") == path.resolve()
    assert read_wav(path) == tone(4000)
    store.clear_greeting("100")
    assert store.greeting_path("100") is None and not path.exists()


# ------------------------------------------------------------------ crash recovery

def test_unfinished_recording_comes_back_as_recovered_message(store, make_store, events,
                                                              store_log):
    pending = store.start_recording("100", 2, "5551234567", "JOHN DOE")
    for start in range(0, 20000, 160):               # 2.5 s; the last block written at 2 s
        pending.write(tone(160, start))
    # The process "dies" here: nothing is finished or closed.
    events.clear()
    store.folder_lock.release()          # the process died: the kernel drops its lock
    again = make_store()
    [msg] = again.open()
    assert {k: msg[k] for k in ("id", "box", "state", "caller_number", "caller_name", "line",
                                "seconds", "recovered")} == {
        "id": pending.id, "box": "100", "state": "new", "caller_number": "5551234567",
        "caller_name": "JOHN DOE", "line": 2, "seconds": 2.0, "recovered": True}
    assert read_wav(msg["file"]) == tone(16000)      # blocks of a second: at most 1 s lost
    assert again.messages() == [msg]
    assert events[0] == {"event": "message_saved", "box": "100", "id": pending.id,
                         "seconds": 2.0, "line": 2, "caller_number": "5551234567",
                         "caller_name": "JOHN DOE", "recovered": True}
    assert box_changes(events) == [("100", 1, 0), ("200", 0, 0)]
    assert any("recovered after a crash" in m for m in store_log.at(logging.WARNING))
    assert again.open() == []                        # recovered once only


def test_unfinished_recording_under_half_a_second_is_dropped(store, make_store, tmp_path):
    pending = store.start_recording("100", 1, None, None)
    pending.write(tone(3000))
    store.folder_lock.release()          # the process died: the kernel drops its lock
    again = make_store()
    assert again.open() == []
    assert list((tmp_path / "data" / "messages" / "100").iterdir()) == []
    assert leave(again)["id"] == "000002"


SIGKILL_CHILD = textwrap.dedent("""
    import sys, time
    from array import array
    from dataclasses import dataclass
    from pathlib import Path
    from linebox.voicemail.store import Store

    @dataclass
    class Box:
        number: str = "100"
        name: str = "Main"
        max_messages: int = 5
        keep_heard_days: int = 30
        trash_days: int = 7
        retract_minutes: int = 15
        pin_hash: str = None

    store = Store(Path(sys.argv[1]), {"100": Box()})
    store.open()
    pending = store.start_recording("100", 1, "5551234567", "JOHN DOE")
    frame = array("h", [1000, -1000] * 80)
    for i in range(175):                             # 3.5 s in 20 ms frames
        pending.write(frame)
        if pending.samples == 24000:
            print("3 s", flush=True)                 # three flushes done
        time.sleep(0.02 if pending.samples >= 24000 else 0.001)
    print("done", flush=True)
    time.sleep(60)
""")


def test_recording_killed_with_sigkill_is_recovered_at_next_open(tmp_path, clock):
    data = tmp_path / "data"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "firmware"))
    child = subprocess.Popen([sys.executable, "-c", SIGKILL_CHILD, str(data)],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline() == "3 s\n"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    store = Store(data, BOXES, clock=clock)
    try:
        [msg] = store.open()
        assert msg["recovered"] is True and msg["state"] == "new"
        assert (msg["box"], msg["caller_number"], msg["caller_name"]) == (
            "100", "5551234567", "JOHN DOE")
        assert 3.0 <= msg["seconds"] <= 3.5
        samples = read_wav(msg["file"])
        assert len(samples) == round(msg["seconds"] * 8000)
        assert samples[:320] == array("h", [1000, -1000] * 160)
        assert not list(data.glob("messages/100/*.part"))
    finally:
        store.close()


def test_audio_file_missing_from_a_lost_database_is_recovered(store, make_store, tmp_path):
    a = leave(store, "100")
    b = leave(store, "200", seconds=1.0)
    store.close()
    for name in ("db.json", "db.json.bak"):
        (tmp_path / "data" / name).unlink()
    again = make_store()
    got = again.open()
    assert [(m["id"], m["box"], m["seconds"], m["recovered"], m["caller_number"])
            for m in got] == [(a["id"], "100", 2.5, True, None), (b["id"], "200", 1.0, True, None)]
    assert leave(again)["id"] == "000003"            # the counter skips ids found on disk


def test_partial_recording_without_a_record_is_recovered_into_its_folders_box(
        store, make_store, tmp_path):
    part_dir = tmp_path / "data" / "messages" / "200"
    part_dir.mkdir(parents=True)
    rec = Recording(part_dir / "000042.wav")
    rec.write(tone(12000))
    store.folder_lock.release()          # the process died: the kernel drops its lock
    again = make_store()
    [msg] = again.open()
    assert (msg["id"], msg["box"], msg["seconds"], msg["recovered"]) == ("000042", "200", 1.5, True)
    assert read_wav(msg["file"]) == tone(12000)
    assert leave(again)["id"] == "000043"
    rec.abort()


def test_partial_recording_of_an_unknown_box_is_kept_aside(store, make_store, tmp_path,
                                                           store_log):
    stray = tmp_path / "data" / "messages" / "999"
    stray.mkdir()
    rec = Recording(stray / "000007.wav")
    rec.write(tone(12000))
    store.folder_lock.release()          # the process died: the kernel drops its lock
    again = make_store()
    assert again.open() == []
    kept = tmp_path / "data" / "lost+found" / "999-000007.wav.part"
    assert kept.stat().st_size == 44 + 24000
    assert list(stray.iterdir()) == []
    assert any("999" in m and "kept as" in m for m in store_log.at(logging.WARNING))
    rec.abort()


def test_record_whose_audio_file_vanished_is_dropped_at_open(store, make_store, store_log):
    msg = leave(store)
    Path(msg["file"]).unlink()
    store.folder_lock.release()          # the process died: the kernel drops its lock
    again = make_store()
    assert again.open() == []
    assert again.messages() == []
    assert any("no audio file" in m for m in store_log.at(logging.WARNING))


def test_corrupt_database_at_start_is_recovered_from_backup(store, make_store, tmp_path,
                                                            store_log):
    a = leave(store)["id"]
    b = leave(store)["id"]
    store.set_state(b, "heard")                      # the write the backup does not have
    store.close()
    db = tmp_path / "data" / "db.json"
    db.write_bytes(db.read_bytes()[:100])
    again = make_store()
    assert again.open() == []
    assert [(m["id"], m["state"]) for m in again.messages()] == [(a, "new"), (b, "new")]
    assert any("recovered from db.json.bak" in m for m in store_log.at(logging.WARNING))
    assert len(list(db.parent.glob("db.json.corrupt-*"))) == 1


def test_read_only_store_lists_beside_a_live_recording_without_touching_it(
        store, make_store, events, tmp_path):
    saved = leave(store)
    pending = store.start_recording("100", 1, "5551234567", None)
    pending.write(tone(8000))
    before = {p: p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()}
    events.clear()
    viewer = make_store()
    assert viewer.open(read_only=True) == []
    assert viewer.messages() == [saved]
    with pytest.raises(StoreError, match="read-only"):
        viewer.set_state(saved["id"], "heard")
    with pytest.raises(StoreError, match="read-only"):
        viewer.start_recording("100", 2, None, None)
    after = {p: p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()}
    assert after == before and events == []
    pending.write(tone(8000, 8000))
    assert pending.finish()["seconds"] == 2.0


def test_open_without_recovery_leaves_a_live_recording_alone(store, make_store, events,
                                                             tmp_path):
    pending = store.start_recording("100", 1, None, None)
    pending.write(tone(8000))
    part = tmp_path / "data" / "messages" / "100" / f"{pending.id}.wav.part"
    events.clear()
    other = make_store()
    assert other.open(recover=False) == []
    other.set_greeting("200", tone(800))
    assert part.stat().st_size == 44 + 16000 and events == []
    assert pending.finish()["seconds"] == 1.0


def test_pending_message_is_done_once_and_discard_after_finish_keeps_it(store):
    pending = store.start_recording("100", 1, None, None)
    pending.write(tone(4000))
    assert not pending.done
    msg = pending.finish()
    assert pending.done
    pending.discard("hangup")
    assert store.get(msg["id"]) == msg and Path(msg["file"]).exists()
    with pytest.raises(ValueError, match="already saved"):
        pending.finish()


@pytest.mark.parametrize("bad", ["٠٠٠٠٠١", "²", "9" * 5000, "", " 1", "1e3"])
def test_only_ascii_digit_ids_name_a_message(store, bad):
    leave(store)                                   # message 000001 exists
    assert store.get(bad) is None
    with pytest.raises(NoSuchMessage):
        store.set_state(bad, "saved")


def test_files_with_odd_digit_names_do_not_stop_recovery(store, make_store, tmp_path):
    msg = leave(store)
    store.close()
    folder = Path(msg["file"]).parent
    for odd in ("²", "٠٠٠٠٠٧"):
        (folder / f"{odd}.wav").write_bytes(Path(msg["file"]).read_bytes())
    again = make_store()
    again.open()
    ids = [m["id"] for m in again.messages()]
    assert ids[0] == msg["id"] and len(ids) == 3 and all(i.isascii() for i in ids)
