"""E-mail for new messages: each new message of a box with ``email_on_new`` is mailed to
the box's address with the recording attached.

The mail is built completely when the message is saved (so it goes out even if the
message is deleted by phone a minute later) and queued durably in ``data_dir/mailq/``:
``<seq>.eml`` is the mail as it will be sent, ``<seq>.json`` its envelope and retry state
(``tries``, ``next_try``, ``last_error``), both written atomically. A sender thread
(``start()``) sends what is due; ``pump()`` does one pass and is what the thread calls
(tests call it with their own clock). A server that is down or answers 4xx delays the
mail: it is retried 10 s, 20 s, 40 s ... up to 15 min apart, for as long as it takes,
across restarts. A 5xx answer (the server will not take this mail) counts as permanent;
after ``PERMANENT_TRIES`` of those the mail is moved to ``mailq/failed/`` with a warning.

The password is given to smtplib and nowhere else: never logged, never queued.
"""

import json
import logging
import os
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from pathlib import Path

from linebox.config import EmailConfig
from linebox.fileio import fsync_dir, write_file_atomic

log = logging.getLogger("linebox.email")

RETRY_FIRST = 10.0           # seconds before the first retry, doubling ...
RETRY_MAX = 900.0            # ... up to 15 minutes
PERMANENT_TRIES = 3          # 5xx answers before a mail is given up
# Answers about one mail; anything else (connect, greeting, login, a dropped
# connection) is about the server and holds the whole queue.
_THIS_MAIL = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)
_DIGITS = 12


def length_text(seconds: float) -> str:
    """8.4 -> "0:08", 75 -> "1:15"."""
    s = int(round(seconds or 0))
    return f"{s // 60}:{s % 60:02d}"


def caller_text(name: str | None, number: str | None) -> str:
    name = " ".join(str(name).split()) if name else ""
    number = " ".join(str(number).split()) if number else ""
    if name and number:
        return f"{name} ({number})"
    return name or number or "an unknown caller"


def _size_text(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


class Mailer:
    """Mails new messages; durable queue, retries, a sender thread.

    ``handle`` takes bus events (subscribe it: ``bus.subscribe(mailer.handle)``);
    ``lookup(message_id)`` returns the store's record of a message (``Store.get``: its
    ``file`` and ``received``); without it mails go without the recording.
    """

    def __init__(self, config: EmailConfig, boxes: Mapping, folder: Path,
                 clock: Callable[[], float] = time.time, *,
                 lookup: Callable[[str], dict | None] | None = None,
                 tz: tzinfo | None = None, device_name: str = "Linebox") -> None:
        self.config = config
        self.boxes = dict(boxes)
        self.folder = Path(folder)
        self.failed_dir = self.folder / "failed"
        self.clock = clock
        self.lookup = lookup
        self.tz = tz
        self.device_name = device_name
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()       # one pump at a time
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._hold_until = 0.0                   # the server is down: no try before this
        self.folder.mkdir(parents=True, exist_ok=True)
        self._next = self._scan_next()

    # ------------------------------------------------------------ queueing

    def handle(self, ev: dict) -> None:
        """A bus event: a saved message of a box with email_on_new is queued; the owner
        of a box whose login was locked (the first time, and for good) is alerted."""
        if ev.get("event") == "box_locked":
            self._lock_alert(ev)
            return
        if ev.get("event") != "message_saved":
            return
        box = self.boxes.get(ev.get("box"))
        if box is None or not getattr(box, "email_on_new", False) or not box.email:
            return
        if ev.get("again") and self._queued_for(box.number, ev.get("id")):
            return      # announced again after a kill that came after this mail was queued
        try:
            msg = self.compose(ev, box)
            self.queue(msg, box.email, box=box.number, message=ev.get("id"))
        except OSError as e:
            log.error("mail for message %s of box %s not queued: %s", ev.get("id"),
                      box.number, e.strerror or e)

    def _queued_for(self, box: str, message_id) -> bool:
        """A mail for this message is still in the queue (or was given up)."""
        tag = f".linebox.{box}.{message_id}@".encode()
        for folder in (self.folder, self.failed_dir):
            for eml in folder.glob("*.eml") if folder.is_dir() else ():
                try:
                    with open(eml, "rb") as f:
                        if tag in f.read(8192):
                            return True
                except OSError:
                    continue
        return False

    def _lock_alert(self, ev: dict) -> None:
        """Someone may be guessing the PIN: tell the owner at the first lock and when
        the box is locked for good (the locks between follow from the first)."""
        box = self.boxes.get(ev.get("box"))
        if box is None or not box.email or not (ev.get("first") or ev.get("permanent")):
            return
        msg = EmailMessage(policy=policy.SMTP)
        msg["Subject"] = f"Login to box {box.number} locked after {ev.get('failures')} wrong PINs"
        msg["From"] = self.config.sender
        msg["To"] = box.email
        msg["Date"] = format_datetime(datetime.fromtimestamp(self.clock(), UTC).astimezone(self.tz))
        until = ("until you or an administrator unlock it (web portal, or "
                 f"`linebox unlock {box.number}`)" if ev.get("permanent")
                 else f"until {ev.get('until')}; each further lock lasts twice as long")
        msg.set_content(
            f"Login to box {box.number} ({box.name}) is locked {until}.\n\n"
            f"{ev.get('failures')} wrong PINs were entered since the last successful login "
            f"(last from: {ev.get('source')}). If that was not you, someone may be guessing "
            f"your PIN: choose a longer one after logging in.\n\n-- {self.device_name}\n")
        try:
            self.queue(msg, box.email, box=box.number)
        except OSError as e:
            log.error("lock alert for box %s not queued: %s", box.number, e.strerror or e)

    def compose(self, ev: dict, box) -> EmailMessage:
        """The mail for one saved message."""
        rec = self.lookup(ev["id"]) if self.lookup is not None else None
        received = self._received(rec)
        who = caller_text(ev.get("caller_name"), ev.get("caller_number"))
        length = length_text(ev.get("seconds") or 0)
        msg = EmailMessage(policy=policy.SMTP)
        msg["Subject"] = f"New voicemail in box {box.number} from {who}, {length}"
        msg["From"] = self.config.sender
        msg["To"] = box.email
        msg["Date"] = format_datetime(received)
        domain = parseaddr(self.config.sender)[1].rpartition("@")[2] or "linebox.invalid"
        msg["Message-ID"] = make_msgid(f"linebox.{box.number}.{ev['id']}", domain=domain)
        lines = [
            f"New voicemail in box {box.number} ({box.name}).",
            "",
            f"From:      {ev.get('caller_name') or '(no name)'}",
            f"Number:    {ev.get('caller_number') or '(no number)'}",
            f"Received:  {received.strftime('%a %d %b %Y %H:%M:%S %z')}",
            f"Length:    {length}",
        ]
        if ev.get("line") is not None:
            lines.append(f"Line:      {ev['line']}")
        lines.append(f"Message:   {ev['id']}")
        lines.append("")
        if ev.get("recovered"):
            lines += ["This recording was recovered after a restart and may be cut short.", ""]
        wav = Path(rec["file"]) if rec and rec.get("file") else None
        attach = None
        if wav is None or not wav.is_file():
            lines.append("The recording could not be found on the Linebox to attach it.")
        else:
            size = wav.stat().st_size
            if size > self.config.max_attachment_bytes:
                lines.append(f"The recording ({_size_text(size)}) is larger than the "
                             f"{_size_text(self.config.max_attachment_bytes)} attachment limit "
                             f"and was left off. It is kept on the {self.device_name} as {wav}.")
            else:
                attach = wav.read_bytes()
                lines.append(f"The recording is attached ({wav.name}).")
        lines += ["", f"-- {self.device_name}"]
        msg.set_content("\n".join(lines) + "\n")
        if attach is not None:
            msg.add_attachment(attach, maintype="audio", subtype="wav",
                               filename=f"voicemail-{box.number}-{ev['id']}.wav")
        return msg

    def _received(self, rec: dict | None) -> datetime:
        if rec and rec.get("received"):
            try:
                return datetime.fromisoformat(rec["received"])
            except ValueError:
                pass
        return datetime.fromtimestamp(self.clock(), UTC).astimezone(self.tz)

    def queue(self, msg: EmailMessage, to: str, **about) -> str:
        """Queue a mail durably; returns its queue name."""
        with self._cond:
            seq = self._next
            self._next += 1
        name = f"{seq:0{_DIGITS}d}"
        write_file_atomic(self.folder / f"{name}.eml", msg.as_bytes(policy=policy.SMTP))
        meta = {"to": [to], "from": parseaddr(self.config.sender)[1], "tries": 0,
                "permanent": 0, "next_try": 0.0, "last_error": None, **about}
        write_file_atomic(self.folder / f"{name}.json", json.dumps(meta).encode())
        log.info("mail for %s queued (%s)", to, msg["Subject"])
        with self._cond:
            self._cond.notify_all()
        return name

    def pending(self) -> list[str]:
        """Queue names not yet sent, oldest first."""
        return sorted(p.stem for p in self.folder.glob("*.eml")
                      if p.stem.isdigit() and len(p.stem) == _DIGITS)

    # ------------------------------------------------------------ sending

    def pump(self, now: float | None = None) -> int:
        """Send every mail that is due; returns how many went out."""
        with self._send_lock:
            now = self.clock() if now is None else now
            if now < self._hold_until:
                return 0
            sent = 0
            smtp = None
            try:
                for name in self.pending():
                    meta = self._meta(name)
                    if meta is None or meta["next_try"] > now:
                        continue
                    try:
                        if smtp is None:
                            smtp = self._connect()
                        self._send(smtp, name, meta)
                    except (smtplib.SMTPException, OSError) as e:
                        self._failed(name, meta, e, now)
                        if smtp is not None:
                            _close(smtp)
                            smtp = None
                        if not isinstance(e, _THIS_MAIL):
                            # The server, not this mail: the others would fail the same.
                            self._hold_until = now + _delay(meta["tries"])
                            break
                        continue
                    sent += 1
            finally:
                if smtp is not None:
                    _close(smtp, quit=True)
            return sent

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        ctx = ssl.create_default_context()
        if c.tls:
            smtp = smtplib.SMTP_SSL(c.smtp_host, c.smtp_port, timeout=c.timeout_seconds,
                                    context=ctx)
        else:
            smtp = smtplib.SMTP(c.smtp_host, c.smtp_port, timeout=c.timeout_seconds)
        try:
            smtp.ehlo()
            if c.starttls:
                smtp.starttls(context=ctx)
                smtp.ehlo()
            if c.username is not None:
                smtp.login(c.username, c.password or "")
        except BaseException:
            _close(smtp)
            raise
        return smtp

    def _send(self, smtp: smtplib.SMTP, name: str, meta: dict) -> None:
        blob = (self.folder / f"{name}.eml").read_bytes()
        smtp.sendmail(meta["from"], meta["to"], blob)
        (self.folder / f"{name}.eml").unlink()
        (self.folder / f"{name}.json").unlink(missing_ok=True)
        fsync_dir(self.folder)
        log.info("mail %s sent to %s%s", name, ", ".join(meta["to"]),
                 f" after {meta['tries']} failed tries" if meta["tries"] else "")

    def _failed(self, name: str, meta: dict, e: Exception, now: float) -> None:
        code = _code(e)
        meta["tries"] += 1
        meta["last_error"] = _describe(e)
        if code is not None and code >= 500 and not isinstance(e, smtplib.SMTPAuthenticationError):
            meta["permanent"] += 1
            if meta["permanent"] >= PERMANENT_TRIES:
                self._give_up(name, meta)
                return
        meta["next_try"] = now + _delay(meta["tries"])
        write_file_atomic(self.folder / f"{name}.json", json.dumps(meta).encode())
        log.warning("mail %s to %s not sent (%s): next try in %d s", name,
                    ", ".join(meta["to"]), meta["last_error"], _delay(meta["tries"]))

    def _give_up(self, name: str, meta: dict) -> None:
        self.failed_dir.mkdir(exist_ok=True)
        write_file_atomic(self.folder / f"{name}.json", json.dumps(meta).encode())
        for ext in ("eml", "json"):
            os.replace(self.folder / f"{name}.{ext}", self.failed_dir / f"{name}.{ext}")
        fsync_dir(self.failed_dir)
        fsync_dir(self.folder)
        log.warning("mail %s to %s refused %d times (%s): given up, kept in %s", name,
                    ", ".join(meta["to"]), meta["permanent"], meta["last_error"],
                    self.failed_dir)

    def _meta(self, name: str) -> dict | None:
        path = self.folder / f"{name}.json"
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(meta, dict) and meta.get("to"):
                meta.setdefault("tries", 0)
                meta.setdefault("permanent", 0)
                meta.setdefault("next_try", 0.0)
                return meta
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            log.warning("mail %s: retry state unreadable: starting over", name)
        return self._meta_from_headers(name)

    def _meta_from_headers(self, name: str) -> dict | None:
        """A mail queued by a run that stopped before writing its state: read the
        envelope back from the mail itself."""
        try:
            with open(self.folder / f"{name}.eml", "rb") as f:
                headers = BytesHeaderParser(policy=policy.default).parse(f)
        except OSError:
            return None
        to = [a for _, a in getaddresses(headers.get_all("To", [])) if a]
        if not to:
            log.warning("mail %s has no recipient: moved to %s", name, self.failed_dir)
            self._give_up(name, {"to": ["?"], "permanent": 0, "last_error": "no recipient"})
            return None
        return {"to": to, "from": parseaddr(str(headers.get("From", "")))[1],
                "tries": 0, "permanent": 0, "next_try": 0.0, "last_error": None}

    def _scan_next(self) -> int:
        for stale in self.folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        for orphan in self.folder.glob("*.json"):
            if not (self.folder / f"{orphan.stem}.eml").exists():
                orphan.unlink()     # its mail was sent: the state file outlived it
        names = [int(p.stem) for d in (self.folder, self.failed_dir) if d.is_dir()
                 for p in d.glob("*.eml") if p.stem.isdigit()]
        if names:
            log.info("mail queue: %d mails waiting from before", len(self.pending()))
        return max(names, default=0) + 1

    # ------------------------------------------------------------ the sender thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="linebox-mail", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the queue to empty; True if it did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.pending() and time.monotonic() < deadline:
                self._cond.wait(min(0.2, max(0.0, deadline - time.monotonic())))
            return not self.pending()

    def _run(self) -> None:
        while True:
            try:
                self.pump()
            except Exception:                     # keep the sender alive whatever happens
                log.exception("mail sender")
            with self._cond:
                self._cond.notify_all()           # flush() waiters
                if self._stopping:
                    return
                self._cond.wait(self._wait_seconds())
                if self._stopping:
                    return

    def _wait_seconds(self) -> float:
        """Until the next mail is due, at most 1 s (the clock may be virtual)."""
        now = self.clock()
        due = [m["next_try"] for n in self.pending() if (m := self._meta(n)) is not None]
        if not due:
            return 1.0
        return min(1.0, max(0.05, max(min(due), self._hold_until) - now))


def _delay(tries: int) -> float:
    return min(RETRY_FIRST * 2 ** max(tries - 1, 0), RETRY_MAX)


def _code(e: Exception) -> int | None:
    if isinstance(e, smtplib.SMTPResponseException):
        return e.smtp_code
    if isinstance(e, smtplib.SMTPRecipientsRefused) and e.recipients:
        return min(code for code, _ in e.recipients.values())
    return None


def _describe(e: Exception) -> str:
    if isinstance(e, smtplib.SMTPResponseException):
        text = e.smtp_error.decode("utf-8", "replace") if isinstance(e.smtp_error, bytes) \
            else str(e.smtp_error)
        return f"{e.smtp_code} {' '.join(text.split())}"
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        return "; ".join(f"{a}: {c} {m.decode('utf-8', 'replace') if isinstance(m, bytes) else m}"
                         for a, (c, m) in e.recipients.items())
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _close(smtp: smtplib.SMTP, quit: bool = False) -> None:
    try:
        if quit:
            smtp.quit()
        else:
            smtp.close()
    except (smtplib.SMTPException, OSError):
        smtp.close()
