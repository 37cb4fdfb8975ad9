"""A kill between saving a message and announcing it no longer loses the e-mail and the
MQTT event: what was not announced is announced at the next start, once."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from linebox.config import BoxConfig, EmailConfig
from linebox.events import Bus
from linebox.report.email import Mailer
from linebox.voicemail.store import Store

BOXES = {"100": BoxConfig(number="100", name="Main office", pin_required=False,
                          email="office@example.com", email_on_new=True)}
EMAIL = EmailConfig(smtp_host="127.0.0.1", smtp_port=1, starttls=False, tls=False, username=None,
                    password=None, sender="linebox@example.com", timeout_seconds=5.0)

# Saves one message in a child process that is SIGKILLed by the first subscriber of
# message_saved: after the database commit, before anything was announced.
CHILD = textwrap.dedent("""
    import os, signal, sys
    from array import array
    from linebox.config import BoxConfig
    from linebox.events import Bus
    from linebox.voicemail.store import Store
    boxes = {"100": BoxConfig(number="100", name="Main office", pin_required=False,
                              email="office@example.com", email_on_new=True)}
    bus = Bus()
    def die(ev):
        if ev.get("event") == "message_saved":
            os.kill(os.getpid(), signal.SIGKILL)
    store = Store(sys.argv[1], boxes, bus=bus)
    if sys.argv[2] == "after-mail":       # the mail is queued, the journal not written
        from linebox.config import EmailConfig
        from linebox.report.email import Mailer
        email = EmailConfig(smtp_host="127.0.0.1", smtp_port=1, starttls=False, tls=False,
                            username=None, password=None, sender="linebox@example.com",
                            timeout_seconds=5.0)
        bus.subscribe(Mailer(email, boxes, sys.argv[1] + "/mailq", lookup=store.get).handle)
    bus.subscribe(die)
    store.open()
    p = store.start_recording("100", 1, "5551234567", "JOHN DOE")
    p.write(array("h", [1000, -1000] * 8000))
    p.finish()
""")


class Rig:
    def __init__(self, data: Path):
        self.bus = Bus()
        self.events = []
        self.store = Store(data, BOXES, bus=self.bus)
        self.mailer = Mailer(EMAIL, BOXES, data / "mailq", lookup=self.store.get)
        self.bus.subscribe(self.mailer.handle)
        self.bus.subscribe(self.events.append)

    def saved(self):
        return [e for e in self.events if e["event"] == "message_saved"]


def test_a_kill_after_the_commit_is_mailed_at_the_next_start(tmp_path):
    data = tmp_path / "data"
    r = subprocess.run([sys.executable, "-c", CHILD, str(data), "before-mail"], capture_output=True)
    assert r.returncode == -9, r.stderr.decode()
    assert not (data / "mailq").exists() or not list((data / "mailq").glob("*.eml"))
    rig = Rig(data)
    rig.store.open()
    try:
        (ev,) = rig.saved()
        assert ev["caller_number"] == "5551234567" and ev["recovered"] is False
        assert len(rig.mailer.pending()) == 1
    finally:
        rig.store.close()
    again = Rig(data)                           # announced once: not again
    again.store.open()
    again.store.close()
    assert again.saved() == [] and len(again.mailer.pending()) == 1


def test_a_kill_after_the_mail_was_queued_does_not_mail_it_twice(tmp_path):
    data = tmp_path / "data"
    r = subprocess.run([sys.executable, "-c", CHILD, str(data), "after-mail"], capture_output=True)
    assert r.returncode == -9, r.stderr.decode()
    assert len(list((data / "mailq").glob("*.eml"))) == 1
    rig = Rig(data)
    rig.store.open()
    try:
        (ev,) = rig.saved()                      # announced again (MQTT may not have it) ...
        assert ev["again"] is True
        assert len(rig.mailer.pending()) == 1    # ... but the mailer had it: not twice
    finally:
        rig.store.close()


def test_a_database_restored_from_its_backup_does_not_mail_the_last_message_twice(tmp_path):
    from array import array
    data = tmp_path / "data"
    rig = Rig(data)
    rig.store.open()
    p = rig.store.start_recording("100", 1, "5551234567", "JOHN DOE")
    p.write(array("h", [1000, -1000] * 8000))
    msg = p.finish()
    rig.store.close()
    assert len(rig.mailer.pending()) == 1
    # The backup is one write behind: it still has the message "recording".
    bak = json.loads((data / "db.json.bak").read_text())
    assert bak["messages"]["1"]["state"] == "recording"
    (data / "db.json").write_bytes(b"\x00" * 100)                  # a damaged card
    again = Rig(data)
    again.store.open()
    try:
        (back,) = again.store.messages()
        assert (back["id"], back["state"], back["caller_number"]) == (msg["id"], "new", "5551234567")
        assert again.saved() == []                                  # no second event ...
        assert len(again.mailer.pending()) == 1                     # ... and no second mail
    finally:
        again.store.close()
