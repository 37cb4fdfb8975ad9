"""E-mail for new messages: each new message of a box with ``email_on_new`` is mailed to
the box's addresses (one mail, every address in To) with the recording attached, in the
box's language, its time in the device's zone, and a ``tel:`` link to call back. Caller ID
is filtered before it reaches a header or the body (it comes off the line, unchecked).
Once the server accepted the mail, ``after_sent`` lets the box's ``email_marks_heard`` /
``email_deletes`` apply.

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
import re
import smtplib
import ssl
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from pathlib import Path

from linebox.backoff import Backoff
from linebox.config import EmailConfig
from linebox.events import NotTaken
from linebox.fileio import fsync_dir, write_file_atomic

log = logging.getLogger(__name__)

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


# Caller ID comes off the line: anyone can send any bytes in it (a spoofed FSK burst).
# Nothing of it reaches a header or the body but printable text, one line, bounded.
_NAME_MAX = 64
_NUMBER_KEEP = re.compile(r"[^0-9+*#]")


def clean_name(name) -> str:
    """A caller's name fit for a header: no control or format characters (no CR/LF, so
    no header injection; no bidi overrides), spaces collapsed, at most 64 characters."""
    text = "".join(c if unicodedata.category(c)[0] not in "CZ" else " " for c in str(name or ""))
    return " ".join(text.split())[:_NAME_MAX]


def clean_number(number) -> str:
    """Only what a phone number is made of: digits, +, * and #."""
    return _NUMBER_KEEP.sub("", str(number or ""))[:32]


def readable_number(number: str, plan: str | None = None) -> str:
    """5551234567 -> (555) 123-4567 on a North American ("us") line; else as it came."""
    if plan == "us":
        d = number[1:] if len(number) == 11 and number.startswith("1") else number
        if len(d) == 10 and d.isdigit() and d[0] in "23456789":
            return f"({d[:3]}) {d[3:6]}-{d[6:]}"
    return number


def tel_uri(number: str, plan: str | None = None) -> str | None:
    """A ``tel:`` URI to call back (RFC 3966): global (+1...) for a 10- or 11-digit North
    American number; otherwise the digits as a local number, which phones and mail apps
    dial as they are (RFC 3966 would want a phone-context the appliance does not know)."""
    if not number or not number.lstrip("+").isdigit():
        return None
    if plan == "us" and number.isdigit() and len(number) in (10, 11):
        return "tel:+1" + number[-10:]
    return f"tel:{number}"


# The box's language (en, de, fr, es). Dates are spelled out here: the C library's
# locales may not be installed on the appliance.
TEXTS = {
    "en": dict(
        transcript="What the caller said (automatic transcript):",
        no_transcript="No transcript: the speech-to-text engine gave none within {seconds} s.",
        subject="Voicemail for {box}: {who}, {length}",
        intro="New voicemail for {box} (box {number}).",
        labels=("From", "Number", "Received", "Length", "Line", "Message"),
        unknown="unknown caller", no_name="(no name)", no_number="(no number)",
        call_back="call back: {tel}",
        attached="The recording is attached: {file}",
        missing="The recording could not be found on the {device} to attach it.",
        too_big="The recording ({size}) is larger than the {limit} attachment limit and was "
                "left off. It is kept on the {device} as {path}.",
        recovered="This recording was recovered after a restart and may be cut short.",
        marks_heard="Once this mail is delivered, the message counts as heard (its lamp goes off).",
        deletes="Once this mail is delivered, the message is moved to the trash on the {device}.",
        days=("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
        months=("January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December"),
        date="{weekday} {day} {month} {year}, {time}"),
    "de": dict(
        transcript="Was der Anrufer sagte (automatische Abschrift):",
        no_transcript="Keine Abschrift: die Spracherkennung lieferte in {seconds} s keine.",
        subject="Sprachnachricht für {box}: {who}, {length}",
        intro="Neue Sprachnachricht für {box} (Box {number}).",
        labels=("Von", "Nummer", "Empfangen", "Länge", "Leitung", "Nachricht"),
        unknown="unbekannter Anrufer", no_name="(kein Name)", no_number="(keine Nummer)",
        call_back="zurückrufen: {tel}",
        attached="Die Aufnahme ist angehängt: {file}",
        missing="Die Aufnahme wurde auf der {device} nicht gefunden und fehlt deshalb.",
        too_big="Die Aufnahme ({size}) ist größer als die Grenze von {limit} für Anhänge und "
                "wurde weggelassen. Sie liegt auf der {device} als {path}.",
        recovered="Diese Aufnahme wurde nach einem Neustart gerettet und ist vielleicht "
                  "unvollständig.",
        marks_heard="Sobald diese Mail zugestellt ist, gilt die Nachricht als abgehört "
                    "(ihre Lampe geht aus).",
        deletes="Sobald diese Mail zugestellt ist, kommt die Nachricht auf der {device} in "
                "den Papierkorb.",
        days=("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
        months=("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August",
                "September", "Oktober", "November", "Dezember"),
        date="{weekday}, {day}. {month} {year}, {time}"),
    "fr": dict(
        transcript="Ce que l'appelant a dit (transcription automatique) :",
        no_transcript="Pas de transcription : la reconnaissance vocale n'a rien donné en {seconds} s.",
        subject="Message vocal pour {box} : {who}, {length}",
        intro="Nouveau message vocal pour {box} (boîte {number}).",
        labels=("De", "Numéro", "Reçu", "Durée", "Ligne", "Message"),
        unknown="appelant inconnu", no_name="(sans nom)", no_number="(sans numéro)",
        call_back="rappeler : {tel}",
        attached="L'enregistrement est joint : {file}",
        missing="L'enregistrement est introuvable sur le {device} : il n'est pas joint.",
        too_big="L'enregistrement ({size}) dépasse la limite de {limit} pour les pièces "
                "jointes et n'est pas joint. Il reste sur le {device} : {path}.",
        recovered="Cet enregistrement a été récupéré après un redémarrage et peut être "
                  "incomplet.",
        marks_heard="Une fois ce courriel remis, le message compte comme écouté (son voyant "
                    "s'éteint).",
        deletes="Une fois ce courriel remis, le message est mis à la corbeille sur le {device}.",
        days=("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
        months=("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
                "septembre", "octobre", "novembre", "décembre"),
        date="{weekday} {day} {month} {year}, {time}"),
    "es": dict(
        transcript="Lo que dijo el llamante (transcripción automática):",
        no_transcript="Sin transcripción: el reconocimiento de voz no dio ninguna en {seconds} s.",
        subject="Mensaje de voz para {box}: {who}, {length}",
        intro="Nuevo mensaje de voz para {box} (buzón {number}).",
        labels=("De", "Número", "Recibido", "Duración", "Línea", "Mensaje"),
        unknown="llamante desconocido", no_name="(sin nombre)", no_number="(sin número)",
        call_back="devolver la llamada: {tel}",
        attached="La grabación va adjunta: {file}",
        missing="La grabación no se encontró en el {device} y no va adjunta.",
        too_big="La grabación ({size}) supera el límite de {limit} para adjuntos y no va "
                "adjunta. Se guarda en el {device} como {path}.",
        recovered="Esta grabación se recuperó tras un reinicio y puede estar incompleta.",
        marks_heard="Cuando este correo se entregue, el mensaje contará como escuchado (su "
                    "luz se apaga).",
        deletes="Cuando este correo se entregue, el mensaje pasará a la papelera del {device}.",
        days=("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
        months=("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
                "septiembre", "octubre", "noviembre", "diciembre"),
        date="{weekday}, {day} de {month} de {year}, {time}"),
}


def caller_text(name: str | None, number: str | None, language: str = "en",
                plan: str | None = None) -> str:
    """Who called, for the subject: "JOHN DOE, (555) 123-4567", a name or number alone,
    or "unknown caller" in the box's language."""
    name, number = clean_name(name), readable_number(clean_number(number), plan)
    return ", ".join(x for x in (name, number) if x) or TEXTS[language]["unknown"]


def date_text(when: datetime, language: str = "en") -> str:
    """Tuesday 14 November 2023, 17:13 EST (-05:00), in the box's language."""
    t = TEXTS[language]
    zone = when.strftime("%Z")
    offset = when.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if offset else ""
    clock = when.strftime("%H:%M")
    if zone and not zone.lstrip("+-").isdigit():
        clock += f" {zone}"
    if offset:
        clock += f" ({offset})"
    return t["date"].format(weekday=t["days"][when.weekday()], day=when.day,
                            month=t["months"][when.month - 1], year=when.year, time=clock)


def _size_text(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"


class Mailer:
    """Mails new messages; durable queue, retries, a sender thread.

    ``handle`` takes bus events (subscribe it: ``bus.subscribe(mailer.handle)``);
    ``lookup(message_id)`` returns the store's record of a message (``Store.get``: its
    ``file`` and ``received``); without it mails go without the recording.
    ``after_sent(box, message_id)`` is called (on the sending thread) once the server
    accepted a message's mail: ``email_marks_heard`` and ``email_deletes`` hang on it.
    ``line_plans`` (line id -> plan) lets numbers read as the line's country writes them.
    """

    def __init__(self, config: EmailConfig, boxes: Mapping, folder: Path,
                 clock: Callable[[], float] = time.time, *,
                 lookup: Callable[[str], dict | None] | None = None,
                 tz: tzinfo | None = None, device_name: str = "Linebox",
                 after_sent: Callable[[str, str], None] | None = None,
                 line_plans: Mapping[int, str] | None = None,
                 transcript_wait: float = 0.0) -> None:
        self.config = config
        self.boxes = dict(boxes)
        self.folder = Path(folder)
        self.failed_dir = self.folder / "failed"
        self.clock = clock
        self.lookup = lookup
        self.tz = tz
        self.device_name = device_name
        self.after_sent = after_sent
        self.line_plans = dict(line_plans or {})
        self.transcript_wait = transcript_wait   # s a new-message mail waits for its text
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()       # one pump at a time
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._hold_until = 0.0                   # the server is down: no try before this
        self._next: int | None = None            # next queue number, once the folder is read
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._next = self._scan_next()
        except OSError as e:
            # A read-only or broken data folder: the appliance still answers; each mail
            # that cannot be queued is refused (NotTaken) and announced again later.
            log.error("mail queue %s: %s; no mail can be queued until it is writable",
                      self.folder, e.strerror or e)

    # ------------------------------------------------------------ queueing

    def handle(self, ev: dict) -> None:
        """A bus event: a saved message of a box with email_on_new is queued (with
        transcription on, its mail waits up to ``transcript_wait`` seconds for the text:
        ``message_transcribed`` or ``transcription_failed`` releases it sooner); the owner
        of a box whose login was locked (the first time, and for good) is alerted."""
        kind = ev.get("event")
        if kind == "box_locked":
            self._lock_alert(ev)
            return
        if kind in ("message_transcribed", "transcription_failed"):
            self._release(ev.get("id"), ev.get("transcript"))
            return
        if kind != "message_saved":
            return
        box = self.boxes.get(ev.get("box"))
        if box is None or not getattr(box, "email_on_new", False) or not box.email:
            return
        if ev.get("again") and self._queued_for(box.number, ev.get("id")):
            return      # announced again after a kill that came after this mail was queued
        fields = {k: ev.get(k) for k in ("id", "box", "line", "caller_number", "caller_name",
                                         "seconds", "recovered")}
        wait = self.transcript_wait
        try:
            msg = self.compose(ev, box, no_transcript=wait > 0)
            self.queue(msg, list(_addresses(box)), box=box.number, message=ev.get("id"),
                       not_before=self.clock() + wait if wait > 0 else 0.0,
                       awaiting_transcript=wait > 0, saved_event=fields)
        except OSError as e:
            raise NotTaken(f"mail for message {ev.get('id')} of box {box.number} not queued "
                           f"({self.folder}: {e.strerror or e})") from None

    def _release(self, message_id, transcript: str | None) -> None:
        """The transcript of ``message_id`` is in (or will not come): its waiting mail is
        composed again with the text and sent now."""
        for name in self.pending():
            meta = self._meta(name)
            if not meta or meta.get("message") != message_id or not meta.get("awaiting_transcript"):
                continue
            box = self.boxes.get(meta.get("box"))
            ev = meta.get("saved_event")
            if box is None or not isinstance(ev, dict):
                continue
            try:
                if transcript:
                    msg = self.compose(ev, box, transcript=transcript)
                    write_file_atomic(self.folder / f"{name}.eml", msg.as_bytes(policy=policy.SMTP))
                meta.update(awaiting_transcript=False, next_try=0.0)
                write_file_atomic(self.folder / f"{name}.json", json.dumps(meta).encode())
            except OSError as e:
                log.error("mail for message %s: transcript not added: %s", message_id,
                          e.strerror or e)
        with self._cond:
            self._cond.notify_all()

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
        msg["To"] = ", ".join(_addresses(box))
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
            self.queue(msg, list(_addresses(box)), box=box.number)
        except OSError as e:
            log.error("lock alert for box %s not queued: %s", box.number, e.strerror or e)

    def compose(self, ev: dict, box, transcript: str | None = None,
                no_transcript: bool = False) -> EmailMessage:
        """The mail for one saved message, in the box's language; with its transcript, or
        (``no_transcript``) a line saying none came in time."""
        lang = box.language if box.language in TEXTS else "en"
        t = TEXTS[lang]
        rec = self.lookup(ev["id"]) if self.lookup is not None else None
        received = self._received(rec)
        plan = self.line_plans.get(ev.get("line"))
        name, number = clean_name(ev.get("caller_name")), clean_number(ev.get("caller_number"))
        length = length_text(ev.get("seconds") or 0)
        box_name = clean_name(box.name) or box.number
        msg = EmailMessage(policy=policy.SMTP)
        msg["Subject"] = t["subject"].format(box=box_name, length=length,
                                             who=caller_text(name, number, lang, plan))
        msg["From"] = self.config.sender
        msg["To"] = ", ".join(_addresses(box))
        msg["Date"] = format_datetime(received)
        domain = parseaddr(self.config.sender)[1].rpartition("@")[2] or "linebox.invalid"
        msg["Message-ID"] = make_msgid(f"linebox.{box.number}.{ev['id']}", domain=domain)
        labels = [f"{label}:" for label in t["labels"]]
        width = max(map(len, labels)) + 1
        shown = readable_number(number, plan) or t["no_number"]
        tel = tel_uri(number, plan)
        if tel:
            shown += f"  ({t['call_back'].format(tel=tel)})"
        rows = [(0, name or t["no_name"]), (1, shown), (2, date_text(received, lang)), (3, length)]
        if ev.get("line") is not None:
            rows.append((4, str(ev["line"])))
        rows.append((5, str(ev["id"])))
        lines = [t["intro"].format(box=box_name, number=box.number), ""]
        lines += [f"{labels[i]:<{width}}{value}" for i, value in rows]
        lines.append("")
        if ev.get("recovered"):
            lines += [t["recovered"], ""]
        if transcript:
            lines += [t["transcript"], "", f"  {transcript}", ""]
        elif no_transcript:
            lines += [t["no_transcript"].format(seconds=f"{self.transcript_wait:g}"), ""]
        wav = Path(rec["file"]) if rec and rec.get("file") else None
        attach = None
        filename = f"voicemail-{box.number}-{ev['id']}-{received.strftime('%Y%m%d-%H%M')}.wav"
        if wav is None or not wav.is_file():
            lines.append(t["missing"].format(device=self.device_name))
        else:
            size = wav.stat().st_size
            if size > self.config.max_attachment_bytes:
                lines.append(t["too_big"].format(
                    size=_size_text(size), limit=_size_text(self.config.max_attachment_bytes),
                    device=self.device_name, path=wav))
            else:
                attach = wav.read_bytes()
                lines.append(t["attached"].format(file=filename))
        if getattr(box, "email_deletes", False):
            lines.append(t["deletes"].format(device=self.device_name))
        elif getattr(box, "email_marks_heard", False):
            lines.append(t["marks_heard"])
        lines += ["", f"-- {self.device_name}"]
        msg.set_content("\n".join(lines) + "\n")
        if attach is not None:
            msg.add_attachment(attach, maintype="audio", subtype="wav", filename=filename)
        return msg

    def _received(self, rec: dict | None) -> datetime:
        """When the message came, in the device's zone (the store's ``received_ts``)."""
        ts = rec.get("received_ts") if rec else None
        if not isinstance(ts, int | float):
            ts = self.clock()
        return datetime.fromtimestamp(ts, UTC).astimezone(self.tz)

    def queue(self, msg: EmailMessage, to: str | list[str], not_before: float = 0.0,
              **about) -> str:
        """Queue a mail durably for one or more recipients (not sent before
        ``not_before``); returns its queue name."""
        to = [to] if isinstance(to, str) else list(to)
        with self._cond:
            if self._next is None:      # the folder was not usable at start: is it now?
                self.folder.mkdir(parents=True, exist_ok=True)
                self._next = self._scan_next()
            seq = self._next
            self._next += 1
        name = f"{seq:0{_DIGITS}d}"
        write_file_atomic(self.folder / f"{name}.eml", msg.as_bytes(policy=policy.SMTP))
        meta = {"to": to, "from": parseaddr(self.config.sender)[1], "tries": 0,
                "permanent": 0, "next_try": not_before, "last_error": None, **about}
        write_file_atomic(self.folder / f"{name}.json", json.dumps(meta).encode())
        log.info("mail for %s queued (%s)", ", ".join(to), msg["Subject"])
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
        if self.after_sent is not None and meta.get("box") and meta.get("message"):
            try:
                self.after_sent(meta["box"], meta["message"])
            except Exception:  # noqa: BLE001 - the mail is gone; the rest must go too
                log.exception("mail %s: after sending", name)

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


def _addresses(box) -> tuple[str, ...]:
    """The box's addresses (config gives a tuple; a single string is taken as one)."""
    return (box.email,) if isinstance(box.email, str) else tuple(box.email)


def _delay(tries: int) -> float:
    return _BACKOFF.after(tries)


_BACKOFF = Backoff(RETRY_FIRST, RETRY_MAX)


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
