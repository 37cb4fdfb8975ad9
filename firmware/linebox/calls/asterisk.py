"""Human-voice prompts: Asterisk's core sound sets, as Debian packages them.

``asterisk-core-sounds-{en,fr,es,it}-wav`` (CC BY-SA 3.0, recorded by professional
voices: Allison for US English and Mexican Spanish, June for Canadian French, Carlo
for Italian) install 8 kHz WAV files under ``/usr/share/asterisk/sounds/<voice>/``.
Every file says one fixed text (upstream's ``core-sounds-<lang>.txt``; the English
list is quoted below). A Linebox clip
is mapped here onto the files that say the same, in the order the language needs
(Asterisk's ``app_voicemail.c``/``say.c`` play the same files in the same orders). A
clip with no entry has no human recording and is spoken by the shipped espeak-ng set.

An entry is a tuple of file names (without ``.wav``); ``name|1`` is the first sentence
of that file only (cut at its first pause): ``vm-intro`` is "Please leave your message
after the tone. When done hang up or press the pound key.", whose first sentence alone
keeps the time to the beep short. ``name|K/N`` is the K-th sentence of a file that has
exactly N (cut at its pauses); a file that does not split so is not used.
"""

import logging
from array import array
from pathlib import Path

from linebox.calls.speech import SpeechError, first_sentence, fit, sentences
from linebox.errors import LineboxError
from linebox.wavfile import read_wav

log = logging.getLogger(__name__)

SOUNDS_DIR = Path("/usr/share/asterisk/sounds")
CLAUSE_PAUSE_SECONDS = 0.15     # before a clause cut out of a longer file

# language -> (folder names tried in order, Debian package)
VOICES = {
    "en": (("en_US_f_Allison", "en"), "asterisk-core-sounds-en-wav"),
    "fr": (("fr_CA_f_June", "fr"), "asterisk-core-sounds-fr-wav"),
    "es": (("es_MX_f_Allison", "es"), "asterisk-core-sounds-es-wav"),
    "it": (("it_IT_m_Carlo", "it"), "asterisk-core-sounds-it-wav"),
}

# What the files say (core-sounds-en.txt; Debian ships each language's list in
# /usr/share/doc/asterisk-core-sounds-<lang>/ with the non-wav package), for the entries
# below; the other languages' lists were read for the grammar notes in each table:
#   vm-intro        Please leave your message after the tone. When done hang up or ...
#   vm-incorrect    Login incorrect.              vm-password     password
#   vm-youhave      you have                      vm-INBOX / vm-Old   new / old
#   vm-message(s)   message(s)                    vm-and / vm-no  and / no
#   vm-nomore       No more messages.             vm-deleted      Message deleted.
#   vm-undeleted    Message undeleted.            vm-saved        saved
#   vm-from-phonenumber  message from phone number
#   vm-unknown-caller    from an unknown caller   vm-received     received
#   vm-msgsaved     Your message has been saved.
#   vm-newpassword  Please enter your new password followed by the pound key.
#   vm-reenterpassword  Please re-enter your password followed by the pound key.
#   vm-passchanged  Your passwords have been changed.
#   vm-invalid-password  That password does not meet the minimum requirements ...
#   vm-mismatch     The passwords you entered and re-entered did not match. ...
#   vm-mailboxfull  sorry but the user's mail box can't accept more messages
#   vm-sorry        I'm sorry I did not understand your response.
#   vm-goodbye      Goodbye
#   vm-rec-unv / vm-rec-temp / vm-rec-name
#                   After the tone say your unavailable message / your temporary
#                   message / your name, and then press the pound key.
#   vm-tempgreetactive  Your temporary greeting is currently active
#   vm-tempgreeting2    press 1 to record your temporary greeting, or press 2 to erase ...
#   vm-tempremoved  Your temporary greeting has been removed
#   digits/N, digits/h-N (first ... twentieth), digits/day-0 (Sunday) .. day-6,
#   digits/mon-0 (January) .. mon-11, digits/at, oh, a-m, p-m, star, pound, hundred, thousand
_SHARED = {
    "greeting_post": ("vm-intro|1",),
    "login_incorrect": ("vm-incorrect",),
    "pin": ("vm-password",),
    "you_have": ("vm-youhave",),
    "and": ("vm-and",),
    "message_number": ("vm-message",),
    "no_more_messages": ("vm-nomore",),
    "message_deleted": ("vm-deleted",),
    "message_saved": ("vm-message", "vm-saved"),
    "message_restored": ("vm-undeleted",),
    "envelope_from": ("vm-from-phonenumber",),
    "unknown_caller": ("vm-message", "vm-unknown-caller"),
    "envelope_received": ("vm-received",),
    "greeting_saved": ("vm-msgsaved",),
    "message_sent": ("vm-msgsaved",),
    "new_pin": ("vm-newpassword",),
    "new_pin_again": ("vm-reenterpassword",),
    "pin_changed": ("vm-passchanged",),
    "pin_invalid": ("vm-invalid-password",),
    "pins_differ": ("vm-mismatch",),
    "box_full": ("vm-mailboxfull", "vm-goodbye"),
    "invalid": ("vm-sorry",),
    "goodbye": ("vm-goodbye",),
    "record_greeting": ("vm-rec-unv",),
    "record_temporary": ("vm-rec-temp",),
    "record_name": ("vm-rec-name",),
    "temporary_active": ("vm-tempgreetactive",),
    "temporary_menu": ("vm-tempgreeting2",),
    "temporary_removed": ("vm-tempremoved",),
    "star": ("digits/star",),
    "pound": ("digits/pound",),
    **{day: (f"digits/day-{(i + 1) % 7}",)
       for i, day in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))},
    **{f"month{m}": (f"digits/mon-{m - 1}",) for m in range(1, 13)},
    **{f"n{i}": (f"digits/{i}",) for i in range(21)},
    **{f"n{t}": (f"digits/{t}",) for t in range(30, 100, 10)},
    "at": ("digits/at",),
    "o1": ("digits/h-1",),
}


def _en() -> dict:
    table = {f"n{t + u}": (f"digits/{t}", f"digits/{u}") for t in range(20, 100, 10) for u in range(1, 10)}
    table.update({f"h{i}": (f"digits/{i}", "digits/hundred") for i in range(1, 10)})
    table.update({f"t{i}": (f"digits/{i}", "digits/thousand") for i in range(1, 10)})
    table.update({f"o{i}": (f"digits/h-{i}",) for i in range(1, 21)})
    table.update({f"o{20 + i}": ("digits/20", f"digits/h-{i}") for i in range(1, 10)})
    table.update({"o30": ("digits/h-30",), "o31": ("digits/30", "digits/h-1")})
    table.update({
        "new_message": ("vm-INBOX", "vm-message"), "new_messages": ("vm-INBOX", "vm-messages"),
        "saved_message": ("vm-saved", "vm-message"), "saved_messages": ("vm-saved", "vm-messages"),
        "no_messages": ("vm-youhave", "vm-no", "vm-messages"),
        "oh": ("digits/oh",), "am": ("digits/a-m",), "pm": ("digits/p-m",),
        # "Press 1 for messages. Press zero for mailbox options. Or pound to exit.": the
        # last clauses of vm-opts ("Press 2 to change folders, press 3 for advanced
        # options, press zero for mailbox options.") and vm-helpexit ("Press star for
        # help or pound to exit.").
        "menu": ("vm-onefor", "vm-messages", "vm-opts|3/3", "vm-helpexit|2/2"),
    })
    return table


def _fr() -> dict:
    # say.c (French): "vingt et un", "soixante-dix" = 60 + 10, "quatre-vingt-onze" = 80 + 11.
    table = {}
    for t in (20, 30, 40, 50, 60):
        table[f"n{t + 1}"] = (f"digits/{t}", "digits/et", "digits/1")
        table.update({f"n{t + u}": (f"digits/{t}", f"digits/{u}") for u in range(2, 10)})
    table.update({f"n{70 + u}": ("digits/60", f"digits/{10 + u}") for u in range(10)})
    table["n71"] = ("digits/60", "digits/et", "digits/11")
    table.update({f"n{80 + u}": ("digits/80", f"digits/{u}") for u in range(1, 10)})
    table.update({f"n{90 + u}": ("digits/80", f"digits/{10 + u}") for u in range(10)})
    table["n80"] = ("digits/80",)
    table.update({"h1": ("digits/hundred",), "t1": ("digits/thousand",)})
    table.update({f"h{i}": (f"digits/{i}", "digits/hundred") for i in range(2, 10)})
    table.update({f"t{i}": (f"digits/{i}", "digits/thousand") for i in range(2, 10)})
    table.update({
        "new_message": ("vm-INBOX", "vm-message"), "new_messages": ("vm-INBOX", "vm-messages"),
        # vm_intro_fr: "messages" before "old" ("messages anciens").
        "saved_message": ("vm-message", "vm-Old"), "saved_messages": ("vm-messages", "vm-Old"),
        "no_messages": ("vm-youhave", "vm-no", "vm-messages"),
        # digits/oclock says "heure" (singular): Asterisk's say.c plays it after every hour,
        # and it is exactly "à une heure"'s. The set has no "une" (digits/1 is "un"), so
        # hour1 and hour21 stay espeak-ng's.
        "oclock": ("digits/oclock",), "oclock_one": ("digits/oclock",),
        # The French vm-from-phonenumber is "du numéro de téléphone" alone.
        "envelope_from": ("vm-message", "vm-from-phonenumber"),
        # (The same menu from vm-opts and vm-helpexit takes 8.3 s here: espeak-ng's it is.)
    })
    return table


def _es() -> dict:
    # The Spanish set has 21..29 as words and "y" (digits/and): "treinta y uno". It has
    # no "veintiún" (c21, before a noun), "veintiuna" (hour21) nor "a la" (at_one):
    # espeak-ng says those.
    table = {f"n{i}": (f"digits/{i}",) for i in range(21, 30)}
    table.update({f"n{t + u}": (f"digits/{t}", "digits/and", f"digits/{u}")
                  for t in range(30, 100, 10) for u in range(1, 10)})
    table.update({f"h{i}": (f"digits/{100 * i}",) for i in range(2, 10)})
    table.update({"h1": ("digits/100-and",), "t1": ("digits/thousand",)})       # "ciento", "mil"
    table.update({f"t{i}": (f"digits/{i}", "digits/thousand") for i in range(2, 10)})
    table.update({f"month{m}": ("digits/es-de", f"digits/mon-{m - 1}") for m in range(1, 13)})
    table.update({
        # vm_intro_es: the noun first, then "nuevo(s)"; one message is "un" (digits/1M).
        "new_message": ("vm-message", "vm-INBOXs"), "new_messages": ("vm-messages", "vm-INBOX"),
        "saved_message": ("vm-message", "vm-Olds"), "saved_messages": ("vm-messages", "vm-Old"),
        "no_messages": ("vm-youhaveno", "vm-messages"),
        "c1": ("digits/1M",), "hour1": ("digits/1F",), "oclock": ("digits/oclock",),
    })
    return table


def _it() -> dict:
    # say.c (Italian): 21, 28, 31, 38 ... are words of their own (ventuno, ventotto),
    # the others are tens + units. The set has no "cento" (digits/hundred is
    # "centinaia") and no "mila" (digits/thousands is "migliaia"): espeak-ng says those.
    # Nor "all'una" (at_one): digits/at is "alle" and digits/ore-una "una", and "alle
    # una" is not Italian.
    table = {}
    for t in range(20, 100, 10):
        for u in range(1, 10):
            table[f"n{t + u}"] = ((f"digits/{t + u}",) if u in (1, 8)
                                  else (f"digits/{t}", f"digits/{u}"))
    table["t1"] = ("digits/thousand",)                  # "mille"
    table.update({
        # vm_intro_it: "un nuovo messaggio", "3 nuovi messaggi", "nessun messaggio".
        "new_message": ("vm-nuovo", "vm-message"), "new_messages": ("vm-nuovi", "vm-messages"),
        "saved_message": ("vm-vecchio", "vm-message"), "saved_messages": ("vm-vecchi", "vm-messages"),
        "no_messages": ("vm-no", "vm-message"),
        "c1": ("digits/un",), "and": ("digits/e",),
    })
    return table


_TABLES = {"en": _en, "fr": _fr, "es": _es, "it": _it}


def table_for(language: str) -> dict[str, tuple[str, ...]]:
    """Linebox clip name -> the Asterisk files that say it, for ``language``."""
    make = _TABLES.get(language)
    if make is None:
        return {}
    extra = make()
    table = dict(_SHARED)
    table.update(extra)
    if language == "fr":
        table.pop("at")         # the French list does not say what digits/at says
    if language == "es":
        # This vm-intro's first pause comes after 4.3 s: too long before the beep.
        table.pop("greeting_post")
    return table


class SoundSet:
    """One installed Asterisk sound set: the Linebox clips it can say, fitted to the
    line (trimmed, at the clips' speech level), loaded on first use and kept."""

    def __init__(self, language: str, folder: Path) -> None:
        self.language = language
        self.folder = folder
        self.table = table_for(language)
        self._clips: dict[str, array | None] = {}
        self._files: dict[str, array | None] = {}

    @classmethod
    def find(cls, language: str, root: Path = SOUNDS_DIR) -> "SoundSet | None":
        """The set for ``language`` under ``root``, or None (logged once) when the
        package is not installed."""
        voice = VOICES.get(language)
        if voice is None:
            return None
        folders, package = voice
        for name in folders:
            folder = Path(root) / name
            if (folder / "vm-goodbye.wav").is_file():
                return cls(language, folder)
        key = (language, str(root))
        if key not in _MISSING_LOGGED:
            _MISSING_LOGGED.add(key)
            log.info("%s is not installed (no %s): %s prompts are espeak-ng's", package,
                     Path(root) / folders[0], language)
        return None

    def clip(self, name: str) -> array | None:
        """The recorded clip ``name`` (a copy), or None when this set cannot say it."""
        if name not in self._clips:
            self._clips[name] = self._make(name)
        samples = self._clips[name]
        return None if samples is None else samples[:]

    def _make(self, name: str) -> array | None:
        files = self.table.get(name)
        if not files:
            return None
        out = array("h")
        for i, f in enumerate(files):
            part = self._file(f)
            if part is None:
                return None
            if i and "|" in f:
                out += array("h", bytes(2 * round(CLAUSE_PAUSE_SECONDS * 8000)))
            out += part
        return out

    def _file(self, spec: str) -> array | None:
        if spec not in self._files:
            self._files[spec] = self._load(spec)
        return self._files[spec]

    def _load(self, spec: str) -> array | None:
        name, _, part = spec.partition("|")
        path = self.folder / f"{name}.wav"
        if not path.is_file():
            return None
        try:
            samples = read_wav(path)
            if part == "1":
                samples = first_sentence(samples)
            elif part:
                samples = _sentence(samples, part)
            if samples is None:
                return None
            return fit(samples, fast=True)
        except (LineboxError, SpeechError) as e:
            log.warning("%s: unusable (%s): espeak-ng says it instead", path, e)
            return None


def _sentence(samples: array, part: str) -> array | None:
    """``K/N``: the K-th of the file's N sentences; None unless it has exactly N."""
    k, n = (int(x) for x in part.split("/"))
    parts = sentences(samples)
    return parts[k - 1] if len(parts) == n else None


_MISSING_LOGGED: set[tuple[str, str]] = set()
