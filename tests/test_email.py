"""E-mail for new messages against a real SMTP server (aiosmtpd on a free port): the WAV
attached, a large one left off, retries through refusals and outages, a restart."""

import json
import logging
import socket
import time
from array import array
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from linebox.config import BoxConfig, EmailConfig
from linebox.events import Bus
from linebox.report.email import Mailer, caller_text, length_text
from linebox.voicemail.store import Store

T0 = 1_700_000_000.0           # 2023-11-14 22:13:20 UTC
WAIT = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """An aiosmtpd handler: refuses the first ``refuse`` mails with ``answer``, keeps the rest."""

    def __init__(self, refuse: int = 0, answer: str = "451 4.3.0 try again later"):
        self.refuse = refuse
        self.answer = answer
        self.refused = 0
        self.mails: list = []

    async def handle_DATA(self, server, session, envelope):
        if self.refused < self.refuse:
            self.refused += 1
            return self.answer
        self.mails.append(envelope)
        return "250 OK"

    def parsed(self):
        return [message_from_bytes(e.original_content, policy=policy.default) for e in self.mails]


class Server:
    def __init__(self, handler, port=None, **kw):
        self.handler = handler
        self.port = port or free_port()
        self.kw = kw
        self.controller = None

    def start(self):
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **self.kw)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def inbox():
    return Inbox()


@pytest.fixture
def server(inbox):
    s = Server(inbox).start()
    yield s
    s.stop()


class Clock:
    def __init__(self, t=T0):
        self.t = t

    def __call__(self):
        return self.t


def email_config(port, **kw):
    base = dict(smtp_host="127.0.0.1", smtp_port=port, starttls=False, tls=False, username=None,
                password=None, sender="Linebox <linebox@example.com>", timeout_seconds=5.0)
    base.update(kw)
    return EmailConfig(**base)


BOXES = {
    "100": BoxConfig(number="100", name="Main office", pin_required=False,
                     email="office@example.com", email_on_new=True),
    "101": BoxConfig(number="101", name="Sales", pin_required=False,
                     email="sales@example.com", email_on_new=False),
}


class Rig:
    """A real store on a bus, and a mailer subscribed to it."""

    def __init__(self, tmp_path: Path, port: int, clock=None, **cfg):
        self.clock = clock or Clock()
        self.bus = Bus()
        self.store = Store(tmp_path / "data", BOXES, bus=self.bus, clock=self.clock)
        self.store.open()
        self.mailq = tmp_path / "data" / "mailq"
        self.mailer = Mailer(email_config(port, **cfg), BOXES, self.mailq, self.clock,
                             lookup=self.store.get, device_name="Office line box")
        self.bus.subscribe(self.mailer.handle)

    def leave_message(self, box="100", seconds=2.0, number="5551234567", name="JOHN DOE"):
        n = int(8000 * seconds)
        samples = array("h", (((i * 37) % 2000) - 1000 for i in range(n)))
        pending = self.store.start_recording(box, 1, number, name)
        pending.write(samples)
        return pending.finish()

    def close(self):
        self.store.close()


@pytest.fixture
def rig(tmp_path, server):
    r = Rig(tmp_path, server.port)
    yield r
    r.close()


def test_a_new_message_is_mailed_with_its_wav_attached(rig, inbox):
    rec = rig.leave_message(seconds=8.4)
    assert rig.mailer.pending() == ["000000000001"]
    assert rig.mailer.pump() == 1
    assert rig.mailer.pending() == []
    (mail,) = inbox.parsed()
    assert inbox.mails[0].mail_from == "linebox@example.com"
    assert inbox.mails[0].rcpt_tos == ["office@example.com"]
    assert mail["Subject"] == "New voicemail in box 100 from JOHN DOE (5551234567), 0:08"
    assert mail["To"] == "office@example.com"
    assert mail["From"] == "Linebox <linebox@example.com>"
    body = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "New voicemail in box 100 (Main office)." in body
    assert "From:      JOHN DOE\n" in body and "Number:    5551234567\n" in body
    assert "Length:    0:08\n" in body and f"Message:   {rec['id']}\n" in body
    (att,) = list(mail.iter_attachments())
    assert att.get_content_type() == "audio/wav"
    assert att.get_filename() == f"voicemail-100-{rec['id']}.wav"
    assert att.get_content() == Path(rec["file"]).read_bytes()


def test_a_box_without_email_on_new_sends_nothing(rig, inbox):
    rig.leave_message(box="101")
    assert rig.mailer.pending() == []
    assert rig.mailer.pump() == 0
    assert inbox.mails == []


def test_a_wav_over_the_limit_is_left_off_with_a_note_saying_where_it_is(tmp_path, server, inbox):
    rig = Rig(tmp_path, server.port, max_attachment_bytes=10_000)
    try:
        rec = rig.leave_message(seconds=2.0)               # 32 kB of audio
        assert rig.mailer.pump() == 1
    finally:
        rig.close()
    (mail,) = inbox.parsed()
    assert list(mail.iter_attachments()) == []
    body = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert ("The recording (32 kB) is larger than the 10 kB attachment limit and was left off. "
            f"It is kept on the Office line box as {rec['file']}.") in " ".join(body.split("\n"))


def test_a_server_refusing_with_451_gets_the_mail_after_backed_off_retries(tmp_path):
    inbox = Inbox(refuse=2)
    server = Server(inbox).start()
    clock = Clock()
    rig = Rig(tmp_path, server.port, clock=clock)
    try:
        rig.leave_message()
        assert rig.mailer.pump() == 0
        state = json.loads((rig.mailq / "000000000001.json").read_text())
        assert (state["tries"], state["next_try"], state["last_error"]) == (
            1, T0 + 10, "451 4.3.0 try again later")
        clock.t = T0 + 9
        assert rig.mailer.pump() == 0 and inbox.refused == 1       # not due yet
        clock.t = T0 + 10
        assert rig.mailer.pump() == 0 and inbox.refused == 2
        state = json.loads((rig.mailq / "000000000001.json").read_text())
        assert (state["tries"], state["next_try"]) == (2, T0 + 30)  # 10 s, then 20 s
        clock.t = T0 + 30
        assert rig.mailer.pump() == 1
        assert len(inbox.mails) == 1 and rig.mailer.pending() == []
        assert sorted(p.name for p in rig.mailq.iterdir()) == []
    finally:
        rig.close()
        server.stop()


def test_mail_queued_while_the_server_is_down_survives_a_restart_and_goes_once(tmp_path):
    inbox = Inbox()
    server = Server(inbox)                      # not started
    clock = Clock()
    rig = Rig(tmp_path, server.port, clock=clock)
    rig.leave_message(name="JOHN DOE")
    rig.leave_message(name="JANE ROE")
    assert rig.mailer.pump() == 0
    state = json.loads((rig.mailq / "000000000001.json").read_text())
    assert (state["tries"], state["last_error"]) == (1, "Connection refused")
    # The second mail was not tried against a server that is down.
    assert json.loads((rig.mailq / "000000000002.json").read_text())["tries"] == 0
    rig.close()

    server.start()
    try:
        again = Rig(tmp_path, server.port, clock=Clock(T0 + 10))
        assert again.mailer.pending() == ["000000000001", "000000000002"]
        assert again.mailer.pump() == 2
        assert again.mailer.pump() == 0
        again.close()
    finally:
        server.stop()
    subjects = [m["Subject"] for m in inbox.parsed()]
    assert subjects == ["New voicemail in box 100 from JOHN DOE (5551234567), 0:02",
                        "New voicemail in box 100 from JANE ROE (5551234567), 0:02"]


def test_a_permanent_refusal_moves_the_mail_to_failed_after_three_tries(tmp_path, caplog):
    inbox = Inbox(refuse=99, answer="554 5.7.1 no thanks")
    server = Server(inbox).start()
    clock = Clock()
    rig = Rig(tmp_path, server.port, clock=clock)
    try:
        rig.leave_message()
        with caplog.at_level(logging.WARNING, logger="linebox.email"):
            for t in (0, 10, 30):
                clock.t = T0 + t
                assert rig.mailer.pump() == 0
        assert inbox.refused == 3
        assert rig.mailer.pending() == []
        assert sorted(p.name for p in (rig.mailq / "failed").iterdir()) == [
            "000000000001.eml", "000000000001.json"]
        assert "refused 3 times (554 5.7.1 no thanks): given up" in caplog.text
        clock.t = T0 + 3600
        assert rig.mailer.pump() == 0 and inbox.refused == 3
    finally:
        rig.close()
        server.stop()


def test_login_is_used_and_the_password_never_logged(tmp_path, caplog):
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"pa55-word", handled=False)

    inbox = Inbox()
    server = Server(inbox, authenticator=authenticator, auth_require_tls=False).start()
    try:
        with caplog.at_level(logging.DEBUG, logger="linebox"):
            bad = Rig(tmp_path / "a", server.port, username="box", password="wrong-one")
            bad.leave_message()
            assert bad.mailer.pump() == 0
            bad.close()
            good = Rig(tmp_path / "b", server.port, username="box", password="pa55-word")
            good.leave_message()
            assert good.mailer.pump() == 1
            good.close()
    finally:
        server.stop()
    # smtplib tries each mechanism the server offers before it gives up
    assert set(logins[:-1]) == {(b"box", b"wrong-one")}
    assert logins[-1] == (b"box", b"pa55-word")
    assert len(inbox.mails) == 1
    assert "535" in caplog.text                     # the refusal is logged ...
    assert "wrong-one" not in caplog.text and "pa55-word" not in caplog.text   # ... not the password
    for folder in (tmp_path / "a" / "data" / "mailq", tmp_path / "b" / "data" / "mailq"):
        for f in folder.rglob("*"):
            assert b"pa55-word" not in f.read_bytes() and b"wrong-one" not in f.read_bytes()


def test_the_sender_thread_delivers_what_is_queued(tmp_path, server, inbox):
    rig = Rig(tmp_path, server.port, clock=time.time)
    rig.mailer.start()
    try:
        rig.leave_message()
        assert rig.mailer.flush(WAIT)
    finally:
        rig.mailer.stop()
        rig.close()
    assert len(inbox.mails) == 1


def test_subject_parts():
    assert length_text(8.4) == "0:08" and length_text(75) == "1:15" and length_text(0) == "0:00"
    assert caller_text("JOHN DOE", "5551234567") == "JOHN DOE (5551234567)"
    assert caller_text(None, "5551234567") == "5551234567"
    assert caller_text("JOHN\nDOE", None) == "JOHN DOE"
    assert caller_text(None, None) == "an unknown caller"


def test_the_owner_is_mailed_at_the_first_lock_and_at_the_lock_for_good(rig, inbox):
    for _ in range(10):
        rig.store.login_failed("100", "web")
    assert rig.mailer.pump() == 1
    (mail,) = inbox.parsed()
    assert mail["To"] == "office@example.com"
    assert mail["Subject"] == "Login to box 100 locked after 10 wrong PINs"
    body = mail.get_body(("plain",)).get_content()
    assert "twice as long" in body and "web" in body
    rig.clock.t += 3600
    for _ in range(10):                         # the second lock: no new mail
        rig.store.login_failed("100")
    assert rig.mailer.pump() == 0
    rig.store.unlock("100")
    while rig.store.lock_state("100")["failures"] < 99:
        rig.store.login_failed("100")
        rig.clock.t += 10 ** 6
    rig.store.login_failed("100")
    assert rig.mailer.pump() == 1                # the lock for good
    assert "linebox unlock 100" in inbox.parsed()[-1].get_body(("plain",)).get_content()
