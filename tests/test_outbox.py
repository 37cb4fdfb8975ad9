"""The durable event outbox: order, restarts, damaged files, a full disk, the bound."""

import errno
import json
import logging
import os
from datetime import timedelta, timezone

import pytest

from linebox.errors import LineboxError
from linebox.report.outbox import Outbox

T0 = 1_700_000_000.0          # 2023-11-14 22:13:20 UTC
BERLIN_WINTER = timezone(timedelta(hours=1))


def files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_put_assigns_id_and_time_with_offset_from_the_injected_clock(tmp_path):
    box = Outbox(tmp_path / "outbox", clock=lambda: T0, tz=BERLIN_WINTER)
    first = box.put({"type": "call", "line": 1})
    second = box.put({"type": "missed_call", "line": 2})
    pending = box.pending()
    assert [e["id"] for e in pending] == [first, second]
    assert first != second and len(first) == 32
    assert pending[0] == {"type": "call", "line": 1, "id": first,
                          "time": "2023-11-14T23:13:20.000+01:00"}


def test_given_id_and_time_are_kept(tmp_path):
    box = Outbox(tmp_path)
    box.put({"type": "call", "id": "abc", "time": "2020-01-01T00:00:00+00:00"})
    assert box.pending() == [{"type": "call", "id": "abc", "time": "2020-01-01T00:00:00+00:00"}]


def test_each_event_is_its_own_file_named_by_sequence_and_ack_deletes_it(tmp_path):
    box = Outbox(tmp_path, clock=lambda: T0)
    ids = [box.put({"type": "call", "n": n}) for n in range(3)]
    assert files(tmp_path) == ["000000000001.json", "000000000002.json", "000000000003.json"]
    assert json.loads((tmp_path / "000000000002.json").read_text())["id"] == ids[1]
    box.ack(ids[1])
    assert files(tmp_path) == ["000000000001.json", "000000000003.json"]
    assert [e["n"] for e in box.pending()] == [0, 2]
    box.ack(ids[1])                                  # twice: nothing happens
    assert len(box) == 2


def test_pending_events_survive_a_restart_and_new_ones_queue_behind_them(tmp_path):
    box = Outbox(tmp_path, clock=lambda: T0)
    for n in range(3):
        box.put({"type": "call", "n": n})
    box.ack(box.pending()[0]["id"])
    again = Outbox(tmp_path, clock=lambda: T0)
    assert [e["n"] for e in again.pending()] == [1, 2]
    again.put({"type": "call", "n": 3})
    assert [e["n"] for e in again.pending()] == [1, 2, 3]
    assert files(tmp_path)[-1] == "000000000004.json"
    assert [e["n"] for e in Outbox(tmp_path).pending()] == [1, 2, 3]


def test_a_truncated_file_is_moved_aside_with_a_warning_and_the_queue_goes_on(tmp_path, caplog):
    box = Outbox(tmp_path, clock=lambda: T0)
    for n in range(3):
        box.put({"type": "call", "n": n})
    damaged = tmp_path / "000000000002.json"
    damaged.write_bytes(damaged.read_bytes()[:20])
    (tmp_path / ".000000000004.json.tmp").write_bytes(b'{"type": "ca')   # a write cut short
    with caplog.at_level(logging.WARNING, logger="linebox.report.outbox"):
        again = Outbox(tmp_path)
    assert [e["n"] for e in again.pending()] == [0, 2]
    assert "000000000002.json is unreadable (bad JSON at byte 20)" in caplog.text
    names = files(tmp_path)
    assert ".000000000004.json.tmp" not in names
    assert [n for n in names if n.startswith("000000000002.json.corrupt-")]
    again.put({"type": "call", "n": 3})
    assert [e["n"] for e in again.pending()] == [0, 2, 3]


def test_a_full_disk_raises_one_line_and_loses_nothing_queued(tmp_path, monkeypatch):
    box = Outbox(tmp_path, clock=lambda: T0)
    kept = box.put({"type": "call", "n": 0})
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(LineboxError) as err:
        box.put({"type": "call", "n": 1})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert str(err.value) == f"outbox {tmp_path}: disk full: event not queued"
    assert files(tmp_path) == ["000000000001.json"]          # no temp file left behind
    assert [e["id"] for e in box.pending()] == [kept]
    box.put({"type": "call", "n": 2})
    assert [e["n"] for e in Outbox(tmp_path).pending()] == [0, 2]


def test_the_bound_drops_the_oldest_with_a_warning(tmp_path, caplog):
    box = Outbox(tmp_path, clock=lambda: T0, limit=3)
    with caplog.at_level(logging.WARNING, logger="linebox.report.outbox"):
        for n in range(5):
            box.put({"type": "call", "n": n})
    assert [e["n"] for e in box.pending()] == [2, 3, 4]
    assert files(tmp_path) == ["000000000003.json", "000000000004.json", "000000000005.json"]
    assert caplog.text.count("outbox holds more than 3 events: dropped the oldest") == 2
