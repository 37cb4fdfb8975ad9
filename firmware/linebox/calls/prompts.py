"""Spoken prompts: the recorded clips of each language and the sentences made of them.

A clip is one WAV named after what it says (``goodbye``, ``n21``). The package ships
them in ``linebox/prompts/<lang>/`` (made by ``make prompts`` from ``texts.toml``);
folders given as ``extra_dirs`` are searched first, so an installation can replace
any clip with its own recording. Sentences are lists of clip names, so call flows can
log what they play and play it with :meth:`Prompts.samples`.

Numbers follow each language's grammar (Asterisk's ``say.c`` does the same):

- ``n0``..``n99`` say 0..99 as whole words (de "einundzwanzig", fr "soixante et onze");
- ``h1``..``h9`` say 100..900 ("two hundred", "zweihundert", "deux cents",
  "doscientos"); Spanish says 100 alone as ``n100`` "cien" and ``h1`` is "ciento";
- ``t1``..``t9`` say 1000..9000 ("mil", "deux mille").

Two voices: with ``voice="auto"`` (the default) a sentence is said by the human voice
of Asterisk's core sounds where the language's set is installed and has every clip of
the sentence (``calls/asterisk.py``), else by the shipped espeak-ng clips; a whole
sentence keeps one voice. ``voice="espeak"`` always uses the shipped clips. A box
owner's own recordings (``extra_dirs``) come before both.
"""

import re
from array import array
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from linebox import RATE
from linebox.calls.asterisk import SOUNDS_DIR as ASTERISK_DIR
from linebox.calls.asterisk import SoundSet
from linebox.errors import LineboxError
from linebox.wavfile import read_wav

LANGUAGES = ("en", "de", "fr", "es", "it")
VOICES = ("auto", "espeak")

PROMPT_DIR = Path(__file__).resolve().parent.parent / "prompts"
COMMON_DIR = PROMPT_DIR / "common"

PAUSE_SECONDS = 0.15      # between the clips of a sentence
BEEP_BUDGET_SECONDS = 4.9  # the system greeting, from its start to the beep

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")   # datetime.weekday() order
MONTHS = tuple(f"month{m}" for m in range(1, 13))
ORDINALS = tuple(f"o{d}" for d in range(1, 32))     # days of the month: "first", "ersten"

# The clips the call flows rely on, in every language.
REQUIRED = (
    "greeting_pre", "greeting_post", "attendant", "box_number", "box_unknown", "pin",
    "login_incorrect", "locked",
    "you_have", "new_message", "new_messages", "saved_message", "saved_messages", "and",
    "no_messages",
    "menu", "message_number", "message_menu", "no_more_messages",
    "message_deleted", "message_saved", "message_restored", "nothing_to_restore",
    "envelope_from", "unknown_caller", "envelope_received", "at", "oclock",
    "options", "record_greeting", "greeting_saved",
    "record_temporary", "record_name", "temporary_active", "temporary_menu", "temporary_removed",
    "new_pin", "new_pin_again", "pin_changed", "pin_invalid", "pins_differ",
    "review", "message_sent", "message_cancelled",
    "retract_offer", "message_retracted", "box_full",
    "invalid", "goodbye", "star", "pound",
) + WEEKDAYS + MONTHS

NUMBERS = (tuple(f"n{i}" for i in range(100)) + tuple(f"h{i}" for i in range(1, 10))
           + tuple(f"t{i}" for i in range(1, 10)))

# What each language's grammar needs besides (see texts.toml).
EXTRA = {
    "en": ("oh", "am", "pm") + ORDINALS,
    "de": ("c1", "hour1") + ORDINALS,
    "fr": ("oclock_one", "hour1", "hour21", "o1"),
    "es": ("c1", "c21", "c31", "c41", "c51", "c61", "c71", "c81", "c91", "n100",
           "at_one", "hour1", "hour21", "o1"),
    "it": ("c1", "at_one", "o1"),
}

COMMON = ("beep",)        # language-independent, in prompts/common/

_NAME = re.compile(r"[a-z0-9_]+")
_DIGIT_CLIPS = {**{d: f"n{d}" for d in "0123456789"}, "*": "star", "#": "pound"}

# Shipped clips never change while we run: one copy for every Prompts object.
_SHIPPED: dict[Path, array] = {}
_SETS: dict = {}          # (language, folder) -> the Asterisk SoundSet or None


class UnknownPrompt(LineboxError, KeyError):
    """No clip of that name in any of the searched folders."""

    __str__ = LineboxError.__str__      # KeyError would quote the message


def clip_names(language: str) -> tuple[str, ...]:
    """Every clip the package must ship for ``language`` (what ``make prompts`` makes)."""
    _check_language(language)
    return REQUIRED + NUMBERS + EXTRA[language]


class Prompts:
    """The clips of one language, and the sentences the call flows say with them.

    Sentence methods return clip names; :meth:`samples` turns them into audio.
    """

    def __init__(self, language: str = "en", extra_dirs: Sequence[Path] = (), voice: str = "auto",
                 sounds_dir: Path | None = None):
        self.language = _check_language(language)
        if voice not in VOICES:
            raise LineboxError(f"prompts: unknown voice {voice!r} (one of {', '.join(VOICES)})")
        self.voice = voice
        self._extra = tuple(Path(d) for d in extra_dirs)
        self._dirs = self._extra + (PROMPT_DIR / language, COMMON_DIR)
        self._custom: dict[str, array] = {}
        self.human = None       # the Asterisk sound set in use, if any
        if voice == "auto":
            self.human = _sound_set(language, ASTERISK_DIR if sounds_dir is None else Path(sounds_dir))

    # ------------------------------------------------------------ clips

    def has(self, name: str) -> bool:
        return self._find(name) is not None

    def clip(self, name: str) -> array:
        """The clip's 8 kHz samples (a copy: change it freely), in the human voice
        where there is one."""
        return self._voiced([name])[0]

    def espeak_clip(self, name: str) -> array:
        """The clip as shipped (espeak-ng), or the owner's own recording of it."""
        samples = self._custom.get(name)
        if samples is None:
            path = self._find(name)
            if path is None:
                raise UnknownPrompt(f"prompts: no clip {name!r} for language {self.language!r}")
            if path.parent in self._extra:
                samples = self._custom[name] = read_wav(path)
            else:
                samples = _shipped(path)
        return samples[:]

    def samples(self, names: Sequence[str]) -> array:
        """The clips one after another, with a short pause between them."""
        return join(self._voiced(names))

    def warm(self) -> None:
        """Load every clip of the human voice now (they are loaded on first use otherwise)."""
        if self.human is not None:
            for name in self.human.table:
                self.human.clip(name)

    def voice_of(self, names: Sequence[str]) -> str:
        """Who says this sentence: "human" (Asterisk's recordings) or "espeak"."""
        return "human" if self._human(names) is not None else "espeak"

    def _voiced(self, names: Sequence[str]) -> list[array]:
        human = self._human(names)
        return human if human is not None else [self.espeak_clip(n) for n in names]

    def _human(self, names: Sequence[str]) -> list[array] | None:
        """Every clip of the sentence in the human voice (or the owner's), or None."""
        if self.human is None:
            return None
        out = []
        for name in names:
            path = self._find(name)
            if path is not None and path.parent in self._extra:
                out.append(self.espeak_clip(name))      # the owner's own recording
                continue
            samples = self.human.clip(name)
            if samples is None:
                return None
            out.append(samples)
        return out

    def _find(self, name: str) -> Path | None:
        if not _NAME.fullmatch(name):       # also keeps names from walking out of the folders
            return None
        for folder in self._dirs:
            path = folder / f"{name}.wav"
            if path.is_file():
                return path
        return None

    # ------------------------------------------------------------ sentences

    def number(self, n: int) -> list[str]:
        """Clip names that say ``n`` (0..9999) in this language."""
        if not 0 <= n <= 9999:
            raise ValueError(f"cannot say {n}: numbers go from 0 to 9999")
        thousands, rest = divmod(n, 1000)
        hundreds, units = divmod(rest, 100)
        out = [f"t{thousands}"] if thousands else []
        if hundreds == 1 and units == 0 and self.language == "es":
            out.append("n100")                  # "cien", but "ciento uno"
        elif hundreds:
            out.append(f"h{hundreds}")
        if units or not out:
            out.append(f"n{units}")
        return out

    def digits(self, s: str) -> list[str]:
        """One clip per key: 0-9, ``*`` (star) and ``#`` (pound); anything else is skipped."""
        return [_DIGIT_CLIPS[c] for c in s if c in _DIGIT_CLIPS]

    def counts(self, new: int, saved: int) -> list[str]:
        """"You have 3 new messages and 1 saved message", or "You have no messages"."""
        if new <= 0 and saved <= 0:
            return ["no_messages"]
        out = ["you_have"]
        if new > 0:
            out += self._counted(new) + ["new_message" if new == 1 else "new_messages"]
        if saved > 0:
            if new > 0:
                out.append("and")
            out += self._counted(saved) + ["saved_message" if saved == 1 else "saved_messages"]
        return out

    def greeting(self, box_number: str) -> list[str]:
        """The system greeting that says the box number: for a box without a greeting of
        its own when its name cannot be said (no espeak-ng); see :meth:`with_name`."""
        return ["greeting_pre", *self.digits(box_number), "greeting_post"]

    def message_intro(self, index: int) -> list[str]:
        """ "Message 3"."""
        return ["message_number", *self.number(index)]

    def envelope(self, number: str | None, received: datetime) -> list[str]:
        """ "Message from 5 5 5 1 2 3, received on Tuesday, December first, at 2 05 PM".

        ``received`` is read as it is: pass it in the device's local time. The number
        is read digit by digit; US English reads a 12-hour clock, the others 24 hours.
        """
        digits = self.digits(number or "")
        caller = ["envelope_from", *digits] if digits else ["unknown_caller"]
        return caller + ["envelope_received", *self._date(received),
                         *self._time(received.hour, received.minute)]

    def _date(self, d: datetime) -> list[str]:
        day, month = WEEKDAYS[d.weekday()], f"month{d.month}"
        if self.language in ("en", "de"):       # "Tuesday, December first", "Dienstag, dem ersten Dezember"
            return [day, month, f"o{d.day}"] if self.language == "en" else [day, f"o{d.day}", month]
        # fr "mardi premier décembre", "mardi 2 décembre"; es "martes 1 de diciembre"; it "martedì primo dicembre"
        first = ["o1"] if d.day == 1 and self.language != "es" else self.number(d.day)
        return [day, *first, month]

    def _counted(self, n: int) -> list[str]:
        # A number before the noun "message" may take another form (de "eine", es "un").
        names = self.number(n)
        counted = "c" + names[-1][1:]
        if names[-1].startswith("n") and self.has(counted):
            names[-1] = counted
        return names

    def _hour(self, h: int) -> list[str]:
        # Hours are feminine in fr and es ("une heure", "la una"); de says "ein Uhr".
        return [f"hour{h}"] if self.has(f"hour{h}") else self.number(h)

    def _time(self, h: int, m: int) -> list[str]:
        """The time of day as each language reads a clock."""
        minutes = self.number(m) if m else []
        if self.language == "en":       # US: "at two oh five PM", "at twelve PM"
            half = "am" if h < 12 else "pm"
            h12 = h % 12 or 12
            return ["at", *self.number(h12), *(["oh"] if 0 < m < 10 else []), *minutes, half]
        if self.language == "de":       # "um vierzehn Uhr fünf"
            return ["at", *self._hour(h), "oclock", *minutes]
        if self.language == "fr":       # "à quatorze heures cinq", "à une heure"
            return ["at", *self._hour(h), "oclock_one" if h <= 1 else "oclock", *minutes]
        if self.language == "it":       # "alle quattordici e cinque", "all'una"
            hour = ["at_one"] if h == 1 else ["at", *self.number(h)]
            return hour + (["and", *minutes] if m else [])
        # es: "a las catorce y cinco", "a la una en punto"
        at = "at_one" if h == 1 else "at"
        return [at, *self._hour(h), *(["and", *minutes] if m else ["oclock"])]

    def with_name(self, name: array) -> array:
        """The system greeting that says the box's name: "<name>. Please leave your
        message after the tone." (``name`` is the recording or the spoken ``name``).

        The name is the owner's voice or espeak-ng's anyway, so the instruction may be
        espeak-ng's shorter one where the human one would keep the caller waiting
        BEEP_BUDGET_SECONDS or more for the beep."""
        post = self.clip("greeting_post")
        pause = round(PAUSE_SECONDS * RATE)
        if len(name) + pause + len(post) > BEEP_BUDGET_SECONDS * RATE:
            post = self.espeak_clip("greeting_post")
        return join([name, post])


def join(parts: Sequence[array]) -> array:
    """Clips one after another with the sentence pause between them."""
    pause = array("h", bytes(2 * round(PAUSE_SECONDS * RATE)))
    out = array("h")
    for i, part in enumerate(parts):
        if i:
            out += pause
        out += part
    return out


def beep() -> array:
    """The tone that tells a caller to start speaking (1 kHz, 0.5 s, -10 dBm0)."""
    return _shipped(COMMON_DIR / "beep.wav")[:]


def _sound_set(language: str, root: Path):
    key = (language, root)
    if key not in _SETS:
        _SETS[key] = SoundSet.find(language, root)
    return _SETS[key]


def _shipped(path: Path) -> array:
    samples = _SHIPPED.get(path)
    if samples is None:
        samples = _SHIPPED[path] = read_wav(path)
    return samples


def _check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise LineboxError(f"prompts: unknown language {language!r} (one of {', '.join(LANGUAGES)})")
    return language
