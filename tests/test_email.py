"""E-mail for new messages against a real SMTP server (aiosmtpd on a free port): the WAV
attached, a large one left off, retries through refusals and outages, a restart."""

import json
import logging
import socket
import time
import zoneinfo
from array import array
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from linebox.config import BoxConfig, EmailConfig
from linebox.events import Bus
from linebox.report.email import Mailer, caller_text, length_text, tel_uri
from linebox.voicemail.store import Store

T0 = 1_700_000_000.0           # 2023-11-14 22:13:20 UTC (17:13:20 in New York, EST)
WAIT = 15.0
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def _local(ts):
    return datetime.fromtimestamp(ts, UTC).astimezone()


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
                     email=("office@example.com",), email_on_new=True),
    "101": BoxConfig(number="101", name="Sales", pin_required=False,
                     email=("sales@example.com",), email_on_new=False),
}


class Rig:
    """A real store on a bus, and a mailer subscribed to it."""

    def __init__(self, tmp_path: Path, port: int, clock=None, boxes=BOXES, tz=None, **cfg):
        self.clock = clock or Clock()
        self.bus = Bus()
        self.store = Store(tmp_path / "data", boxes, bus=self.bus, clock=self.clock, tz=tz)
        self.store.open()
        self.mailq = tmp_path / "data" / "mailq"
        self.mailer = Mailer(email_config(port, **cfg), boxes, self.mailq, self.clock,
                             lookup=self.store.get, device_name="Office line box", tz=tz,
                             line_plans={1: "us"})
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
    assert mail["Subject"] == "Voicemail for Main office: JOHN DOE, (555) 123-4567, 0:08"
    assert mail["To"] == "office@example.com"
    assert mail["From"] == "Linebox <linebox@example.com>"
    body = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert body.startswith("New voicemail for Main office (box 100).\n\n")
    assert "From:     JOHN DOE\n" in body
    assert "Number:   (555) 123-4567  (call back: tel:+15551234567)\n" in body
    assert "Length:   0:08\n" in body and f"Message:  {rec['id']}\n" in body
    (att,) = list(mail.iter_attachments())
    assert att.get_content_type() == "audio/wav"
    # The body names the attachment by the name the mail program shows.
    assert att.get_filename() == f"voicemail-100-{rec['id']}-{_local(T0):%Y%m%d-%H%M}.wav"
    assert f"The recording is attached: {att.get_filename()}\n" in body
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
    assert subjects == ["Voicemail for Main office: JOHN DOE, (555) 123-4567, 0:02",
                        "Voicemail for Main office: JANE ROE, (555) 123-4567, 0:02"]


def test_a_permanent_refusal_moves_the_mail_to_failed_after_three_tries(tmp_path, caplog):
    inbox = Inbox(refuse=99, answer="554 5.7.1 no thanks")
    server = Server(inbox).start()
    clock = Clock()
    rig = Rig(tmp_path, server.port, clock=clock)
    try:
        rig.leave_message()
        with caplog.at_level(logging.WARNING, logger="linebox.report.email"):
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
    assert caller_text("JOHN DOE", "5551234567") == "JOHN DOE, 5551234567"
    assert caller_text("JOHN DOE", "15551234567", plan="us") == "JOHN DOE, (555) 123-4567"
    assert caller_text(None, "5551234567", plan="us") == "(555) 123-4567"
    assert caller_text(None, "0301234567", plan="de") == "0301234567"
    assert caller_text("JOHN\nDOE", None) == "JOHN DOE"
    assert caller_text(None, None) == "unknown caller"
    assert caller_text(None, None, "de") == "unbekannter Anrufer"
    assert tel_uri("5551234567", "us") == "tel:+15551234567"
    assert tel_uri("0301234567", "de") == "tel:0301234567"
    assert tel_uri("", "us") is None


# ------------------------------------------------------------------ owners, languages, zones

def _body(mail) -> str:
    return mail.get_body(("plain",)).get_content().replace("\r\n", "\n")


def test_every_address_of_a_box_gets_the_one_mail(tmp_path, server, inbox):
    boxes = {"100": replace(BOXES["100"], email=("anna@example.com", "ben@example.org"))}
    rig = Rig(tmp_path, server.port, boxes=boxes)
    try:
        rig.leave_message()
        assert rig.mailer.pump() == 1
    finally:
        rig.close()
    (env,) = inbox.mails
    assert env.rcpt_tos == ["anna@example.com", "ben@example.org"]
    assert inbox.parsed()[0]["To"] == "anna@example.com, ben@example.org"


def test_the_device_time_zone_is_in_the_date_the_body_and_the_store(tmp_path, server, inbox):
    rig = Rig(tmp_path, server.port, tz=NEW_YORK)
    try:
        rec = rig.leave_message()
        assert rec["received"] == "2023-11-14T17:13:20-05:00"
        assert rig.mailer.pump() == 1
    finally:
        rig.close()
    (mail,) = inbox.parsed()
    assert mail["Date"] == "Tue, 14 Nov 2023 17:13:20 -0500"
    assert "Received: Tuesday 14 November 2023, 17:13 EST (-05:00)\n" in _body(mail)
    (att,) = mail.iter_attachments()
    assert att.get_filename() == f"voicemail-100-{rec['id']}-20231114-1713.wav"


@pytest.mark.parametrize("language, subject, intro, label, attached", [
    ("de", "Sprachnachricht für Lager: JOHN DOE, (555) 123-4567, 0:02",
     "Neue Sprachnachricht für Lager (Box 100).", "Empfangen: Dienstag, 14. November 2023, 17:13 EST",
     "Die Aufnahme ist angehängt: "),
    ("fr", "Message vocal pour Lager : JOHN DOE, (555) 123-4567, 0:02",
     "Nouveau message vocal pour Lager (boîte 100).", "Reçu:    mardi 14 novembre 2023, 17:13 EST",
     "L'enregistrement est joint : "),
    ("es", "Mensaje de voz para Lager: JOHN DOE, (555) 123-4567, 0:02",
     "Nuevo mensaje de voz para Lager (buzón 100).", "Recibido: martes, 14 de noviembre de 2023, 17:13 EST",
     "La grabación va adjunta: "),
])
def test_the_mail_is_in_the_box_language(tmp_path, server, inbox, language, subject, intro,
                                         label, attached):
    boxes = {"100": replace(BOXES["100"], name="Lager", language=language)}
    rig = Rig(tmp_path, server.port, boxes=boxes, tz=NEW_YORK)
    try:
        rig.leave_message()
        assert rig.mailer.pump() == 1
    finally:
        rig.close()
    (mail,) = inbox.parsed()
    assert mail["Subject"] == subject
    body = _body(mail)
    assert body.startswith(intro + "\n")
    assert label in body
    (att,) = mail.iter_attachments()
    assert f"{attached}{att.get_filename()}\n" in body


def test_caller_id_bytes_cannot_inject_headers_or_recipients(tmp_path, server, inbox):
    rig = Rig(tmp_path, server.port)
    try:
        rig.leave_message(name="EVIL\r\nBcc: victim@example.net\r\n\r\nhi\x1b[2J\u202e",
                          number="555\n123\x004567<x@y>")
        assert rig.mailer.pump() == 1
    finally:
        rig.close()
    (env,) = inbox.mails
    assert env.rcpt_tos == ["office@example.com"]
    (mail,) = inbox.parsed()
    assert mail["Bcc"] is None and "victim" not in str(mail["To"])
    assert mail["Subject"] == "Voicemail for Main office: EVIL Bcc: victim@example.net hi [2J, (555) 123-4567, 0:02"
    body = _body(mail)
    assert "From:     EVIL Bcc: victim@example.net hi [2J\n" in body
    assert "Number:   (555) 123-4567  (call back: tel:+15551234567)\n" in body
    assert not any(c in body for c in "\x00\x1b\u202e")


# ------------------------------------------------------------------ after the mail: the appliance

APP_CONFIG = """
[device]
data_dir = "{data}"
timezone = "America/New_York"
[[line]]
id = 1
driver = "sim"
route = "100"
[[box]]
number = "100"
pin_required = false
email = ["office@example.com", "owner@example.com"]
email_on_new = true
{after}
[email]
smtp_host = "127.0.0.1"
smtp_port = {port}
starttls = false
from = "linebox@example.com"
"""


def _appliance(tmp_path, port, after: str):
    from linebox.app import Appliance
    from linebox.config import load_config

    path = tmp_path / "linebox.toml"
    path.write_text(APP_CONFIG.format(data=tmp_path / "data", port=port, after=after))
    app = Appliance(load_config(path), Bus(), clock=Clock())
    app.start_reporting()
    app.open()
    return app


def _leave(app, name="JOHN DOE"):
    pending = app.store.start_recording("100", 1, "5551234567", name)
    pending.write(array("h", [500, -500] * 4000))
    return pending.finish()


@pytest.mark.parametrize("after, state, counts", [
    ("", "new", {"new": 1, "saved": 0}),
    ("email_marks_heard = true", "heard", {"new": 0, "saved": 1}),
    ("email_deletes = true", "trash", {"new": 0, "saved": 0}),
])
def test_once_the_server_took_the_mail_the_box_setting_applies(tmp_path, server, inbox, after,
                                                               state, counts):
    app = _appliance(tmp_path, server.port, after)
    changes = []
    app.bus.subscribe(lambda ev: changes.append(ev) if ev.get("event") == "box_changed" else None)
    try:
        rec = _leave(app)
        app.process_commands()
        assert app.store.get(rec["id"])["state"] == "new"     # nothing before the mail went
        assert app.mailer.pump() == 1
        app.process_commands()
        assert app.store.get(rec["id"])["state"] == state
        got = app.store.counts("100")
        assert {k: got[k] for k in counts} == counts
        # Lamps and MQTT hear it from the store: the last box_changed says so.
        assert changes[-1]["counts"]["new"] == counts["new"]
    finally:
        app.close()
    assert inbox.mails[0].rcpt_tos == ["office@example.com", "owner@example.com"]


def test_a_message_handled_by_phone_before_the_mail_went_is_left_alone(tmp_path, server, inbox):
    app = _appliance(tmp_path, server.port, "email_deletes = true")
    try:
        rec = _leave(app)
        app.store.set_state(rec["id"], "saved")          # the owner kept it by phone
        assert app.mailer.pump() == 1
        app.process_commands()
        assert app.store.get(rec["id"])["state"] == "saved"
    finally:
        app.close()


def test_email_list_and_after_mail_keys_are_checked(tmp_path):
    from linebox.config import ConfigError, load_config

    def check(after, email='email = ["a@example.com", "b@example.com"]\nemail_on_new = true'):
        path = tmp_path / "c.toml"
        path.write_text(APP_CONFIG.format(data=tmp_path, port=25, after=after)
                        .replace('email = ["office@example.com", "owner@example.com"]\n'
                                 'email_on_new = true', email))
        return load_config(path)

    assert check("email_deletes = true").boxes["100"].email == ("a@example.com", "b@example.com")
    with pytest.raises(ConfigError, match=r"\[\[box\]\] #1 key 'email': must be a list of e-mail addresses"):
        check("", email='email = ["a@example.com", "nope"]')
    with pytest.raises(ConfigError, match=r"key 'email': the same address twice"):
        check("", email='email = ["a@example.com", "a@example.com"]')
    with pytest.raises(ConfigError, match=r"key 'email_marks_heard': needs email_on_new = true"):
        check("email_marks_heard = true", email='email = "a@example.com"')


@pytest.fixture
def waiting_rig(tmp_path, server):
    r = Rig(tmp_path, server.port)
    r.mailer.transcript_wait = 60.0
    yield r
    r.close()


def _body(mail):
    return mail.get_body(("plain",)).get_content().replace("\r\n", "\n")


def test_the_mail_waits_for_the_transcript_and_carries_it(waiting_rig, inbox):
    rig = waiting_rig
    rec = rig.leave_message()
    assert rig.mailer.pump() == 0 and rig.mailer.pending()      # held for the transcript
    rig.clock.t += 20
    rig.store.set_transcript(rec["id"], "please call me back about the invoice", "wyoming")
    assert rig.mailer.pump() == 1
    (mail,) = inbox.parsed()
    body = _body(mail)
    assert ("What the caller said (automatic transcript):\n\n"
            "  please call me back about the invoice\n") in body
    assert "No transcript" not in body
    assert len(list(mail.iter_attachments())) == 1               # still with its WAV


def test_without_a_transcript_in_time_the_mail_goes_and_says_so(waiting_rig, inbox):
    rig = waiting_rig
    rig.leave_message()
    rig.clock.t += 59
    assert rig.mailer.pump() == 0
    rig.clock.t += 2
    assert rig.mailer.pump() == 1
    body = _body(inbox.parsed()[0])
    assert "No transcript: the speech-to-text engine gave none within 60 s.\n" in body


def test_a_failed_transcription_releases_the_mail_at_once(waiting_rig, inbox):
    rig = waiting_rig
    rec = rig.leave_message()
    rig.bus.publish({"event": "transcription_failed", "id": rec["id"], "reason": "given up"})
    assert rig.mailer.pump() == 1
    assert "No transcript" in _body(inbox.parsed()[0])


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
