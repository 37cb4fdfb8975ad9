"""AtomicJSONStorage: the message database survives damage to its file."""

import json
import logging

import pytest
from tinydb import TinyDB

from linebox.voicemail import storage
from linebox.voicemail.storage import AtomicJSONStorage


def _open(path):
    return TinyDB(path, storage=AtomicJSONStorage)


def _contents(path):
    db = _open(path)
    try:
        return {name: [dict(d) | {"_id": d.doc_id} for d in db.table(name).all()]
                for name in sorted(db.tables())}
    finally:
        db.close()


@pytest.fixture
def two_versions(tmp_path):
    """A real database written twice: returns (path, version 1 contents, version 2 contents)."""
    path = tmp_path / "db.json"
    db = _open(path)
    msgs = db.table("messages")
    for i in range(1, 4):
        msgs.insert({"id": f"{i:06d}", "box": "100", "state": "new", "caller_name": "JOHN DOE",
                     "received": "2024-05-01T10:00:00+02:00", "seconds": 12.5})
    db.table("meta").insert({"next_id": 4})
    db.close()
    v1 = _contents(path)
    db = _open(path)
    db.table("messages").update({"state": "heard", "caller_name": "Zoë Ünïcode"}, doc_ids=[2])
    db.close()
    v2 = _contents(path)
    assert v1 != v2
    return path, v1, v2


def test_write_keeps_previous_version_as_backup(two_versions):
    path, v1, v2 = two_versions
    assert _contents(path) == v2
    bak = path.with_name("db.json.bak")
    path.write_bytes(bak.read_bytes())
    assert _contents(path) == v1


def test_truncated_db_at_every_length_reopens_as_last_complete_version(two_versions, store_log):
    path, v1, v2 = two_versions
    bak = path.with_name("db.json.bak")
    whole, bak_bytes = path.read_bytes(), bak.read_bytes()
    assert whole.endswith(b"\n")
    for n in range(len(whole)):
        path.write_bytes(whole[:n])
        got = _contents(path)
        # Cutting only the final newline leaves the newest version complete.
        assert got == (v2 if n == len(whole) - 1 else v1), f"truncated to {n} bytes"
        if n < len(whole) - 1:
            assert path.read_bytes() == bak_bytes        # restored, so the next write is safe
            kept = sorted(tmp for tmp in path.parent.glob("db.json.corrupt-*"))
            assert [k.read_bytes() for k in kept] == [whole[:n]]
            kept[0].unlink()
        path.write_bytes(whole)
        bak.write_bytes(bak_bytes)
    assert len(store_log.at(logging.WARNING)) == len(whole) - 1
    assert store_log.at(logging.ERROR) == []


def test_garbage_db_is_recovered_from_backup_and_kept_as_evidence(two_versions, store_log):
    path, v1, _ = two_versions
    garbage = b"\x00\xff\xfe not json at all \x01" * 10
    path.write_bytes(garbage)
    assert _contents(path) == v1
    [warning] = store_log.at(logging.WARNING)
    assert "unreadable (not UTF-8 text" in warning and "recovered from db.json.bak" in warning
    [kept] = path.parent.glob("db.json.corrupt-*")
    assert kept.read_bytes() == garbage


def test_json_that_is_not_an_object_counts_as_damage(two_versions, store_log):
    path, v1, _ = two_versions
    path.write_text("[1, 2, 3]\n")
    assert _contents(path) == v1
    [warning] = store_log.at(logging.WARNING)
    assert "not a JSON object" in warning


def test_write_after_recovery_does_not_rotate_the_damaged_file_into_backup(two_versions):
    path, v1, _ = two_versions
    bak = path.with_name("db.json.bak")
    good_bak = bak.read_bytes()
    path.write_bytes(b'{"messages": {"1": {"id"')
    db = _open(path)
    db.table("meta").update({"next_id": 99}, doc_ids=[1])
    db.close()
    assert bak.read_bytes() == good_bak
    v3 = _contents(path)
    assert v3["meta"] == [{"next_id": 99, "_id": 1}]
    assert v3["messages"] == v1["messages"]


def test_both_files_bad_starts_empty_and_keeps_both(two_versions, store_log):
    path, _, _ = two_versions
    bak = path.with_name("db.json.bak")
    path.write_bytes(b"{garbage")
    bak.write_bytes(b"")
    db = _open(path)
    assert db.tables() == set()
    db.table("messages").insert({"id": "000001"})
    db.close()
    assert _contents(path) == {"messages": [{"id": "000001", "_id": 1}]}
    [error] = store_log.at(logging.ERROR)
    assert "starting an empty database" in error and "empty file" in error
    kept = {p.name.split("-")[0]: p.read_bytes() for p in path.parent.glob("*.corrupt-*")}
    assert kept == {"db.json.corrupt": b"{garbage", "db.json.bak.corrupt": b""}


def test_missing_db_with_backup_is_recovered(two_versions, store_log):
    path, v1, _ = two_versions
    path.unlink()
    assert _contents(path) == v1
    assert path.exists()
    [warning] = store_log.at(logging.WARNING)
    assert "missing: recovered from db.json.bak" in warning


def test_new_database_starts_empty_without_complaint(tmp_path, store_log):
    path = tmp_path / "db.json"
    assert _contents(path) == {}
    assert not path.exists()
    assert store_log.records == []


def test_first_write_has_no_backup_and_second_has_one(tmp_path):
    path = tmp_path / "db.json"
    db = _open(path)
    db.insert({"a": 1})
    assert not path.with_name("db.json.bak").exists()
    db.insert({"b": 2})
    db.close()
    assert json.loads(path.with_name("db.json.bak").read_text()) == {"_default": {"1": {"a": 1}}}
    assert json.loads(path.read_text()) == {"_default": {"1": {"a": 1}, "2": {"b": 2}}}


def test_temp_files_of_an_interrupted_write_are_cleaned_at_open(two_versions):
    path, _, v2 = two_versions
    stale = path.with_name(".db.json.4242.tmp")
    stale.write_text('{"half": ')
    assert _contents(path) == v2
    assert not stale.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["db.json", "db.json.bak"]


class PowerCut(BaseException):
    """Not an OSError, so no fallback in the code under test can catch it."""


@pytest.mark.parametrize("cut_at", [0, 1, 2])
def test_write_cut_off_at_any_step_leaves_a_complete_version(two_versions, monkeypatch, cut_at):
    """Power cut simulated at each link/rename of a write: what reopens is old or new, whole."""
    path, _, v2 = two_versions
    calls = []

    def failing(real):
        def step(*args):
            calls.append(real.__name__)
            if len(calls) > cut_at:
                raise PowerCut
            return real(*args)
        return step

    monkeypatch.setattr(storage.os, "link", failing(storage.os.link))
    monkeypatch.setattr(storage.os, "replace", failing(storage.os.replace))
    db = _open(path)
    with pytest.raises(PowerCut):
        db.table("meta").update({"next_id": 77}, doc_ids=[1])
    monkeypatch.undo()
    assert calls == ["link", "replace", "replace"][:cut_at + 1]
    assert _contents(path) == v2                    # the new version was never renamed in
    for name in ("db.json", "db.json.bak"):
        json.loads(path.with_name(name).read_text())   # both complete at every step
    assert not list(path.parent.glob(".*.tmp"))        # the half write was cleaned at open


def test_read_only_reads_the_backup_of_a_damaged_file_and_changes_nothing(two_versions,
                                                                          store_log):
    path, v1, _ = two_versions
    path.write_bytes(b"{trunc")
    files = {p.name: p.read_bytes() for p in path.parent.iterdir()}
    db = TinyDB(path, storage=AtomicJSONStorage, read_only=True)
    assert [dict(d) for d in db.table("messages").all()] == [
        {k: v for k, v in d.items() if k != "_id"} for d in v1["messages"]]
    with pytest.raises(PermissionError):
        db.table("meta").update({"next_id": 5}, doc_ids=[1])
    db.close()
    assert {p.name: p.read_bytes() for p in path.parent.iterdir()} == files
    [warning] = store_log.at(logging.WARNING)
    assert "reading the backup" in warning
