"""The data folder's disk and its one writer: a full disk, a read-only folder, two
processes on one folder, two callers for the last place in a box.

The full and read-only disks are real: a small tmpfs mounted for the test (root only;
skipped elsewhere)."""

import errno
import logging
import os
import subprocess
import sys
import textwrap
from array import array

import pytest

from conftest import LogRecords, run_linebox
from linebox.config import BoxConfig, EmailConfig
from linebox.events import Bus
from linebox.report.email import Mailer
from linebox.voicemail.folder import FolderInUse
from linebox.voicemail.store import Store, StoreError, StoreFull
from simkit import PIN, Sim, names, of, speech_wav

MiB = 1 << 20
BOXES = {"100": BoxConfig(number="100", name="Main office", pin_required=False,
                          email="office@example.com", email_on_new=True, max_messages=5)}
EMAIL = EmailConfig(smtp_host="127.0.0.1", smtp_port=1, starttls=False, tls=False, username=None,
                    password=None, sender="linebox@example.com", timeout_seconds=5.0)


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a few MiB at tmp_path/data; remount(ro=True) makes it read-only."""
    mnt = tmp_path / "data"
    mnt.mkdir()

    def mount(size_mib: int) -> None:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(mnt)],
                           capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")

    def remount(ro: bool) -> None:
        subprocess.run(["mount", "-o", f"remount,{'ro' if ro else 'rw'}", str(mnt)], check=True)

    mount.remount = remount
    mount.path = mnt
    yield mount
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder, leave_bytes: int):
    """A ballast file leaving about ``leave_bytes`` free."""
    ballast = folder / "ballast"
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(ballast, "ab") as f:
        n = max(0, free - leave_bytes)
        chunk = b"\0" * MiB
        while n > 0:
            try:
                n -= f.write(chunk[:min(n, MiB)])
                f.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
    return ballast


class Rig:
    def __init__(self, data, reserve=4 * MiB, mail=True):
        self.bus = Bus()
        self.events = []
        self.bus.subscribe(self.events.append)
        self.store = Store(data, BOXES, bus=self.bus, reserve_bytes=reserve)
        if mail:
            self.mailer = Mailer(EMAIL, BOXES, data / "mailq", lookup=self.store.get)
            self.bus.subscribe(self.mailer.handle)

    def of(self, kind):
        return [e for e in self.events if e["event"] == kind]


def test_below_the_reserve_no_recording_starts_and_a_disk_fault_is_raised(small_disk):
    small_disk(16)
    rig = Rig(small_disk.path)
    rig.store.open()
    try:
        _fill(small_disk.path, 3 * MiB)
        assert rig.store.recording_refused("100") == "no_space"
        with pytest.raises(StoreFull, match="nearly full"):
            rig.store.start_recording("100", 1, None, None)
        (fault,) = rig.of("disk_fault")
        assert fault["key"] == "disk" and "nearly full" in fault["reason"]
        assert rig.store.messages() == [] and not list((small_disk.path / "messages" / "100").glob("*"))
    finally:
        rig.store.close()


def test_a_disk_filling_during_a_recording_keeps_what_was_said_without_a_restart(small_disk):
    small_disk(16)
    rig = Rig(small_disk.path)
    rig.store.open()
    try:
        _fill(small_disk.path, 5 * MiB)
        pending = rig.store.start_recording("100", 1, "5551234567", None)
        second = array("h", [1000, -1000] * 4000)
        with pytest.raises(OSError) as e:
            for _ in range(600):                 # would be 10 minutes: the disk ends it
                pending.write(second)
        assert e.value.errno == errno.ENOSPC
        msg = pending.finish()
        assert msg["state"] == "new" and msg["seconds"] > 30
        assert [m["id"] for m in rig.store.messages()] == [msg["id"]]     # listed
        assert rig.store.counts("100")["new"] == 1                        # lamped
        assert [e["id"] for e in rig.of("message_saved")] == [msg["id"]]  # reported
        assert len(rig.mailer.pending()) == 1                             # mailed
    finally:
        rig.store.close()


def test_a_database_write_refused_by_a_full_disk_is_saved_once_there_is_room(small_disk):
    small_disk(16)
    rig = Rig(small_disk.path)
    rig.store.open()
    try:
        pending = rig.store.start_recording("100", 1, "5551234567", None)
        pending.write(array("h", [1000, -1000] * 16000))
        ballast = _fill(small_disk.path, 0)          # full to the last block
        msg = pending.finish()
        assert msg["state"] == "new"
        assert rig.store.messages() == [] and rig.of("message_saved") == []
        assert rig.of("disk_fault") and "cannot be written" in rig.of("disk_fault")[0]["reason"]
        assert rig.store.retry_unsaved() == 1        # still full
        ballast.unlink()
        assert rig.store.retry_unsaved() == 0
        assert [m["id"] for m in rig.store.messages()] == [msg["id"]]
        assert [e["id"] for e in rig.of("message_saved")] == [msg["id"]]
        assert rig.of("disk_fault_cleared")
        assert len(rig.mailer.pending()) == 1
    finally:
        rig.store.close()


def test_a_read_only_data_folder_is_noticed_at_start_and_reported(small_disk, tmp_path, speech_files):
    small_disk(32)
    sim = Sim(tmp_path)
    voice = speech_wav(tmp_path, speech_files[0], 3.0)
    sim.run(f'[[call]]\nline = 1\nat = 1\nsteps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, '
            '{ hangup = "busy" } ]\n')
    small_disk.remount(ro=True)
    rig = Rig(small_disk.path, mail=False)
    rig.store.open()
    try:
        (fault,) = rig.of("disk_fault")
        assert "not writable" in fault["reason"]
        assert len(rig.store.messages()) == 1                 # what is there can be heard
        with pytest.raises(StoreError):
            rig.store.start_recording("100", 1, None, None)
    finally:
        rig.store.close()
    ev = sim.run('[[call]]\nline = 1\nat = 1\nsteps = [ { wait = "answer" }, { wait = { seconds = 12 } }, '
                 '{ hangup = "busy" } ]\n')
    assert "box_full" in names(ev) and "beep" not in names(ev)
    assert of(ev, "message_discarded", reason="no_space")


HOLDER = textwrap.dedent("""
    import sys, time
    from linebox.config import BoxConfig
    from linebox.voicemail.store import Store
    store = Store(sys.argv[1], {"100": BoxConfig(number="100", name="x", pin_required=False)})
    store.open()
    print("open", flush=True)
    time.sleep(60)
""")


def test_a_second_writer_is_refused_naming_the_holder_and_messages_still_lists(tmp_path):
    sim = Sim(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(sim.data)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"open\n"
        with pytest.raises(FolderInUse, match=f"in use by another Linebox \\(pid {holder.pid}\\)"):
            Store(sim.data, sim.config.boxes).open()
        scen = sim.write_scenario("[[call]]\nline = 1\nat = 1\ngive_up_after_rings = 1\nsteps = []\n")
        res = run_linebox("sim", scen, "--config", sim.config_path, "--data", sim.data)
        assert res.returncode == 2
        assert res.stderr.decode() == (f"linebox: error: data folder {sim.data} is in use by another "
                                       f"Linebox (pid {holder.pid}); stop it first\n")
        listing = run_linebox("messages", "--config", sim.config_path, "--data", sim.data, "--json")
        assert listing.returncode == 0 and listing.stdout == b""
        unlock = run_linebox("unlock", "100", "--config", sim.config_path, "--data", sim.data)
        assert unlock.returncode == 2 and f"pid {holder.pid}".encode() in unlock.stderr
    finally:
        holder.kill()
        holder.wait()
    store = Store(sim.data, sim.config.boxes)      # the kernel dropped the dead holder's lock
    store.open()
    store.close()


def test_two_callers_for_the_last_place_the_second_hears_box_full(tmp_path, speech_files):
    sim = Sim(tmp_path, lines=((1, "100", "us"), (2, "100", "us")), max_messages=1)
    voice = speech_wav(tmp_path, speech_files[0], 4.0)
    call = ('[[call]]\nline = {n}\nat = 1\ncaller = {{ number = "555000000{n}" }}\nsteps = [ '
            '{{ wait = "answer" }}, {{ wait = {{ seconds = 4 }} }}, {{ say = "{v}" }}, {{ hangup = "busy" }} ]\n')
    ev = sim.run(call.format(n=1, v=voice) + call.format(n=2, v=voice))
    assert len(of(ev, "message_saved")) == 1
    (refused,) = of(ev, "message_discarded", reason="box_full")
    other = 2 if of(ev, "message_saved")[0]["line"] == 1 else 1
    assert refused["line"] == other
    assert [e["line"] for e in ev if e["event"] == "prompt" and e["name"] == "beep"] == [3 - other]
    assert [e["line"] for e in ev if e["event"] == "prompt" and e["name"] == "box_full"] == [other]
    assert len(sim.messages()) == 1


EMAIL_TABLE = """
[email]
smtp_host = "127.0.0.1"
smtp_port = 1
starttls = false
from = "linebox@example.com"
"""


def test_email_on_a_read_only_data_folder_is_a_clear_error_and_calls_still_answered(
        small_disk, tmp_path, speech_files):
    # `linebox run` / `linebox sim` with [email] used to crash at start: the mailer
    # made its queue folder (mailq/) on the read-only data folder.
    small_disk(32)
    sim = Sim(tmp_path, attendant=EMAIL_TABLE)
    voice = speech_wav(tmp_path, speech_files[0], 3.0)
    sim.run(f'[[call]]\nline = 1\nat = 1\nsteps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, '
            '{ hangup = "busy" } ]\n')
    (small_disk.path / "mailq").rmdir()           # never made (e-mail configured later)
    small_disk.remount(ro=True)
    logged = LogRecords()
    logger = logging.getLogger("linebox.report.email")
    logger.addHandler(logged)
    try:
        ev = sim.run('[[call]]\nline = 1\nat = 1\nsteps = [ { wait = "answer" }, '
                     '{ wait = { seconds = 12 } }, { hangup = "busy" } ]\n')
    finally:
        logger.removeHandler(logged)
    assert "box_full" in names(ev) and of(ev, "message_discarded", reason="no_space")
    (error,) = logged.at(logging.ERROR)
    assert error == (f"mail queue {small_disk.path / 'mailq'}: Read-only file system; "
                     "no mail can be queued until it is writable")


def _four_seconds(store) -> dict:
    """A 4 s message left in box 100 of ``store``, saved."""
    pending = store.start_recording("100", 1, "5551234567", None)
    pending.write(array("h", [1000, -1000] * 16000))
    return pending.finish()


def test_a_mail_that_cannot_be_queued_is_not_counted_as_announced(tmp_path):
    data = tmp_path / "data"

    def start():
        bus = Bus()
        events = []
        bus.subscribe(events.append)
        store = Store(data, BOXES, bus=bus)
        mailer = Mailer(EMAIL, BOXES, data / "mailq", lookup=store.get)
        bus.subscribe(mailer.handle)
        store.open()
        return store, mailer, events

    store, mailer, events = start()
    (data / "mailq").rmdir()
    (data / "mailq").write_bytes(b"")              # the queue cannot be written (not a folder)
    msg = _four_seconds(store)
    assert [e["id"] for e in events if e["event"] == "message_saved"] == [msg["id"]]
    assert msg["id"] not in store.notified.ids()   # not taken: not journalled as announced
    store.close()

    (data / "mailq").unlink()                       # the folder is usable again
    store, mailer, events = start()
    try:
        (again,) = [e for e in events if e["event"] == "message_saved"]
        assert again["id"] == msg["id"] and again.get("again") is True
        assert len(mailer.pending()) == 1           # mailed after all
        assert store.get(msg["id"])["id"] == msg["id"]
    finally:
        store.close()
    # Taken this time: the start after that announces nothing more.
    store, mailer, events = start()
    try:
        assert [e for e in events if e["event"] == "message_saved"] == []
        assert len(mailer.pending()) == 1
    finally:
        store.close()


def test_a_message_on_a_read_only_folder_still_plays_and_the_failed_mark_is_a_disk_fault(
        small_disk, tmp_path, speech_files):
    # Marking it heard used to raise inside the call flow: the owner was hung up on.
    small_disk(32)
    sim = Sim(tmp_path)
    voice = speech_wav(tmp_path, speech_files[0], 3.0)
    sim.run(f'[[call]]\nline = 1\nat = 1\nsteps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, '
            '{ hangup = "busy" } ]\n')
    small_disk.remount(ro=True)
    # The owner calls in through the attendant (a box route on a folder that takes no
    # message says "box full" and hangs up before any greeting).
    sim = Sim(tmp_path, lines=((1, "attendant", "us"),),
              attendant='[attendant]\nprompt = "attendant"\noptions = { "*" = "login" }\n'
                        'default = "100"\n')
    ev = sim.run('[[call]]\nline = 1\nat = 1\ncaller = { number = "5550000001" }\nsteps = [ '
                 '{ wait = "prompt:attendant" }, { dtmf = "*" }, { wait = "prompt:box_number" }, '
                 '{ dtmf = "100#" }, '
                 f'{{ wait = "prompt:pin" }}, {{ dtmf = "{PIN}#" }}, {{ wait = "prompt:menu" }}, '
                 '{ dtmf = "1" }, { wait = "prompt:message_menu" }, { dtmf = "#" }, '
                 '{ wait = "prompt:menu" }, { dtmf = "#" }, { wait = "prompt:goodbye" }, '
                 '{ hangup = "busy" } ]\n')
    (played,) = of(ev, "message_played")
    after = names(ev)[names(ev).index("message"):]
    assert after[:2] == ["message", "message_menu"]     # played through (no key), then the keys
    assert "goodbye" in after                           # and the call went on to its end
    (fault,) = of(ev, "disk_fault")
    assert fault["key"] == "disk" and "not writable" in fault["reason"]
    assert not of(ev, "message_state")                                   # not marked heard ...
    assert sim.messages("100")[0]["state"] == "new"                      # ... and still new


def test_mark_heard_on_a_disk_that_refuses_the_write_is_a_disk_fault(tmp_path, monkeypatch):
    rig = Rig(tmp_path / "data", mail=False)
    rig.store.open()
    try:
        msg = _four_seconds(rig.store)

        def refused(*a, **kw):
            raise OSError(errno.EROFS, "Read-only file system")
        monkeypatch.setattr(rig.store, "_update", refused)
        assert rig.store.mark_heard(msg["id"]) is False
        (fault,) = rig.of("disk_fault")
        assert fault["reason"] == (f"message {msg['id']} not marked heard: database "
                                   f"{tmp_path / 'data' / 'db.json'} cannot be written: "
                                   "Read-only file system")
        monkeypatch.undo()
        assert rig.store.mark_heard(msg["id"]) is True
        assert rig.store.get(msg["id"])["state"] == "heard"
        assert rig.store.mark_heard(msg["id"]) is True      # heard already: nothing to do
    finally:
        rig.store.close()
