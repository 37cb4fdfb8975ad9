"""Data-folder versioning: new, version-0, current, newer and damaged folders, and a
migration cut short by a crash."""

from array import array

import pytest

from linebox.errors import LineboxError
from linebox.voicemail import migrate
from linebox.voicemail.migrate import CURRENT_VERSION, DataVersionError
from linebox.voicemail.store import Store
from test_store import Box

T0 = 1_700_000_000.0


BOXES = {"100": Box("100", "Main office")}


def files(folder):
    """Every file under folder with its bytes, to prove what changed and what did not."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def version_0_folder(data):
    """A data folder as Linebox wrote it before VERSION existed: one real message."""
    store = Store(data, BOXES, clock=lambda: T0)
    store.open()
    pending = store.start_recording("100", 1, "5551234567", "JOHN DOE")
    pending.write(array("h", [1000, -1000] * 4000))
    pending.finish()
    store.close()
    # Today's store stamps the folder; a folder from before VERSION existed has none.
    (data / "VERSION").unlink()
    return data


def test_current_version_is_1():
    assert CURRENT_VERSION == 1 == len(migrate.MIGRATIONS)


def test_a_new_folder_is_created_and_stamped_with_the_current_version(tmp_path):
    data = tmp_path / "var" / "lib" / "linebox"
    assert migrate.migrate(data) == CURRENT_VERSION
    assert files(data) == {"VERSION": b"1\n"}


def test_an_empty_folder_gets_the_current_version(tmp_path):
    assert migrate.migrate(tmp_path) == CURRENT_VERSION
    assert (tmp_path / "VERSION").read_bytes() == b"1\n"


def test_a_version_0_folder_is_migrated_keeping_a_copy_of_its_database(tmp_path):
    data = version_0_folder(tmp_path / "data")
    before = files(data)
    assert migrate.migrate(data) == 0
    after = files(data)
    assert after == {**before, "VERSION": b"1\n", "db.json.v0": before["db.json"]}


def test_a_migrated_folder_opens_in_the_store_with_its_message(tmp_path):
    data = version_0_folder(tmp_path / "data")
    migrate.migrate(data)
    store = Store(data, BOXES, clock=lambda: T0)
    store.open()
    try:
        assert [(m["box"], m["state"], m["caller_number"]) for m in store.messages()] == [
            ("100", "new", "5551234567")]
    finally:
        store.close()
    assert (data / "VERSION").read_bytes() == b"1\n"


def test_a_version_0_folder_without_a_database_is_still_version_0(tmp_path):
    (tmp_path / "messages" / "100").mkdir(parents=True)
    assert migrate.read_version(tmp_path) == 0
    assert migrate.migrate(tmp_path) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["VERSION", "messages"]


def test_a_current_folder_is_left_alone(tmp_path):
    data = version_0_folder(tmp_path / "data")
    migrate.migrate(data)
    (data / "db.json.v0").unlink()
    before = files(data)
    assert migrate.migrate(data) == 1
    assert files(data) == before


def test_migrating_twice_keeps_the_first_backup(tmp_path):
    data = version_0_folder(tmp_path / "data")
    original = (data / "db.json").read_bytes()
    migrate.migrate(data)
    (data / "VERSION").unlink()                 # as if a crash came before VERSION
    (data / "db.json").write_bytes(b'{"changed": {}}')
    assert migrate.migrate(data) == 0
    assert (data / "db.json.v0").read_bytes() == original


def test_a_folder_from_a_newer_linebox_is_refused_and_untouched(tmp_path):
    data = version_0_folder(tmp_path / "data")
    (data / "VERSION").write_text("7\n")
    before = files(data)
    with pytest.raises(LineboxError) as e:
        migrate.migrate(data)
    assert str(e.value) == (
        f"data folder {data} is from a newer Linebox (version 7; this one knows up to 1); "
        "upgrade Linebox or restore a backup")
    assert "\n" not in str(e.value)
    assert files(data) == before


def test_check_refuses_newer_and_never_writes(tmp_path):
    assert migrate.check(tmp_path) is None
    (tmp_path / "db.json").write_text("{}")
    assert migrate.check(tmp_path) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.json"]
    (tmp_path / "VERSION").write_text("2")
    with pytest.raises(DataVersionError, match=r"newer Linebox \(version 2;"):
        migrate.check(tmp_path)


@pytest.mark.parametrize("text", ["", "one\n", "-1", "1.0", "9" * 60])
def test_a_damaged_version_file_is_a_one_line_error(tmp_path, text):
    (tmp_path / "VERSION").write_text(text)
    with pytest.raises(DataVersionError) as e:
        migrate.migrate(tmp_path)
    assert str(e.value) == (f"data folder {tmp_path}: VERSION is damaged ({text.strip()[:20]!r}); "
                            "write the folder's version number into it or restore a backup")


@pytest.mark.parametrize("text", ["9" * 5000, "\u0661"], ids=["5000 digits", "arabic digit"])
def test_a_version_file_int_cannot_take_is_a_one_line_error(tmp_path, text):
    (tmp_path / "VERSION").write_text(text)
    with pytest.raises(DataVersionError, match="VERSION"):
        migrate.migrate(tmp_path)


def test_an_unwritable_folder_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataVersionError, match=r"^data folder .*/file/data: "):
        migrate.migrate(blocker / "data")


def test_a_crash_during_a_step_reruns_only_that_step_at_the_next_start(tmp_path, monkeypatch):
    """Three versions: the crash comes in step 1 -> 2, after step 0 -> 1 was stamped."""
    calls = []
    crash = {"armed": True}

    def v0_to_v1(d):
        calls.append("0->1")
        (d / "db.json").write_text('{"v": 1}')

    def v1_to_v2(d):
        calls.append("1->2")
        (d / "db.json").write_text('{"v": 2, "half": true}')
        if crash["armed"]:
            raise KeyboardInterrupt("power cut")       # not an OSError: nothing catches it
        (d / "db.json").write_text('{"v": 2}')

    monkeypatch.setattr(migrate, "MIGRATIONS", [v0_to_v1, v1_to_v2])
    monkeypatch.setattr(migrate, "CURRENT_VERSION", 2)
    (tmp_path / "db.json").write_text('{"v": 0}')

    with pytest.raises(KeyboardInterrupt):
        migrate.migrate(tmp_path)
    assert (tmp_path / "VERSION").read_text() == "1\n"
    crash["armed"] = False
    assert migrate.migrate(tmp_path) == 1
    assert calls == ["0->1", "1->2", "1->2"]
    assert (tmp_path / "VERSION").read_text() == "2\n"
    assert (tmp_path / "db.json").read_text() == '{"v": 2}'
    assert (tmp_path / "db.json.v0").read_text() == '{"v": 0}'
    assert (tmp_path / "db.json.v1").read_text() == '{"v": 1}'   # the first copy, not the half one
