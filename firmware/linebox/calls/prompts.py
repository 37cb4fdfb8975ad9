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
"""

import re
from array import array
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from linebox import RATE
from linebox.errors import LineboxError
from linebox.wavfile import read_wav

LANGUAGES = ("en", "de", "fr", "es")

PROMPT_DIR = Path(__file__).resolve().parent.parent / "prompts"
COMMON_DIR = PROMPT_DIR / "common"

PAUSE_SECONDS = 0.15      # between the clips of a sentence

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")   # datetime.weekday() order

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
    "new_pin", "new_pin_again", "pin_changed", "pin_invalid", "pins_differ",
    "review", "message_sent", "message_cancelled",
    "retract_offer", "message_retracted", "box_full",
    "invalid", "goodbye", "star", "pound",
) + WEEKDAYS

NUMBERS = (tuple(f"n{i}" for i in range(100)) + tuple(f"h{i}" for i in range(1, 10))
           + tuple(f"t{i}" for i in range(1, 10)))

# What each language's grammar needs besides (see texts.toml).
EXTRA = {
    "en": ("oh",),
    "de": ("c1", "hour1"),
    "fr": ("oclock_one", "hour1", "hour21"),
    "es": ("c1", "c21", "c31", "c41", "c51", "c61", "c71", "c81", "c91", "n100",
           "at_one", "hour1", "hour21"),
}

COMMON = ("beep",)        # language-independent, in prompts/common/

_NAME = re.compile(r"[a-z0-9_]+")
_DIGIT_CLIPS = {**{d: f"n{d}" for d in "0123456789"}, "*": "star", "#": "pound"}

# Shipped clips never change while we run: one copy for every Prompts object.
_SHIPPED: dict[Path, array] = {}


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

    def __init__(self, language: str = "en", extra_dirs: Sequence[Path] = ()):
        self.language = _check_language(language)
        self._extra = tuple(Path(d) for d in extra_dirs)
        self._dirs = self._extra + (PROMPT_DIR / language, COMMON_DIR)
        self._custom: dict[str, array] = {}

    # ------------------------------------------------------------ clips

    def has(self, name: str) -> bool:
        return self._find(name) is not None

    def clip(self, name: str) -> array:
        """The clip's 8 kHz samples (a copy: change it freely)."""
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
        pause = array("h", bytes(2 * round(PAUSE_SECONDS * RATE)))
        out = array("h")
        for i, name in enumerate(names):
            if i:
                out += pause
            out += self.clip(name)
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
        """The system greeting that names the box, for boxes without their own."""
        return ["greeting_pre", *self.digits(box_number), "greeting_post"]

    def message_intro(self, index: int) -> list[str]:
        """ "Message 3"."""
        return ["message_number", *self.number(index)]

    def envelope(self, number: str | None, received: datetime) -> list[str]:
        """ "Message from 5 5 5 1 2 3, received Monday at 14 30".

        ``received`` is read as it is: pass it in the box's local time.
        """
        caller = self.digits(number or "") or ["unknown_caller"]
        return (["envelope_from", *caller, "envelope_received", WEEKDAYS[received.weekday()]]
                + self._time(received.hour, received.minute))

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
        """The time of day, 24-hour, as each language reads a clock."""
        minutes = self.number(m) if m else []
        if self.language == "en":       # "at fourteen oh five", "at nine o'clock"
            if not m:
                return ["at", *self.number(h), "oclock"]
            return ["at", *self.number(h), *(["oh"] if m < 10 else []), *minutes]
        if self.language == "de":       # "um vierzehn Uhr fünf"
            return ["at", *self._hour(h), "oclock", *minutes]
        if self.language == "fr":       # "à quatorze heures cinq", "à une heure"
            return ["at", *self._hour(h), "oclock_one" if h <= 1 else "oclock", *minutes]
        # es: "a las catorce y cinco", "a la una en punto"
        at = "at_one" if h == 1 else "at"
        return [at, *self._hour(h), *(["and", *minutes] if m else ["oclock"])]


def beep() -> array:
    """The tone that tells a caller to start speaking (1 kHz, 0.5 s, -10 dBm0)."""
    return _shipped(COMMON_DIR / "beep.wav")[:]


def _shipped(path: Path) -> array:
    samples = _SHIPPED.get(path)
    if samples is None:
        samples = _SHIPPED[path] = read_wav(path)
    return samples


def _check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise LineboxError(f"prompts: unknown language {language!r} (one of {', '.join(LANGUAGES)})")
    return language
