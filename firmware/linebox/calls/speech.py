"""Making speech fit the line: edges trimmed, one speech level for every voice, and
espeak-ng at run time (a box's name, when the owner has not recorded it).

``scripts/make_prompts.py`` shapes the shipped clips with the same :func:`fit`, and the
human-voice sets (``calls/asterisk.py``) go through it as they are loaded, so a sentence
that mixes clips of both keeps one loudness.
"""

import hashlib
import logging
import math
import operator
import shutil
import subprocess
import tempfile
from array import array
from pathlib import Path

from linebox import FRAME, RATE
from linebox.dsp.gen import clip
from linebox.dsp.levels import DBM0_MEAN_SQUARE
from linebox.errors import LineboxError
from linebox.wavfile import read_wav_any_rate, write_wav

log = logging.getLogger(__name__)

SPEECH_DBM0 = -16.0        # active speech level of every clip
EDGE_SECONDS = 0.05        # silence kept before and after the speech
# A sample louder than this (relative to the clip's peak) is speech, not silence.
EDGE_DB = -40.0
# Frames within this much of the loudest frame count towards the speech level;
# a simple stand-in for ITU-T P.56 active speech level.
ACTIVE_DB = -30.0

# The espeak-ng voice and speed of each language (as texts.toml has them for the clips).
ESPEAK_VOICES = {"en": ("en-us", 170), "de": ("de", 165), "fr": ("fr", 170),
                 "es": ("es", 170), "it": ("it", 175)}
NAME_MAX_CHARS = 60        # a box name longer than this is cut there
NAME_MAX_SECONDS = 2.5     # a longer spoken name is said faster (up to 1.8 times)
NAME_VERSION = 1           # bump when name synthesis changes: the cache is made again


class SpeechError(LineboxError):
    """Audio that holds no speech, or a synthesizer that failed."""


def fit(samples: array, fast: bool = False) -> array:
    """Trim to 50 ms of silence each side, then set the active level to -16 dBm0.

    ``fast`` (for audio loaded while the appliance runs) scales in 16.16 fixed point,
    three times quicker than rounding each sample; ``make prompts`` rounds exactly."""
    samples = trim(samples)
    gain = math.sqrt(DBM0_MEAN_SQUARE * 10 ** (SPEECH_DBM0 / 10) / active_power(samples))
    if fast:
        g = round(gain * 65536)
        scaled = [(v * g + 32768) >> 16 for v in samples]
    else:
        scaled = [round(v * gain) for v in samples]
    if max(scaled) > 32767 or min(scaled) < -32768:
        scaled = [clip(v) for v in scaled]
    return array("h", scaled)


def trim(samples: array) -> array:
    peak = max(map(abs, samples), default=0)
    if not peak:
        raise SpeechError("the audio is silent")
    floor = peak * 10 ** (EDGE_DB / 20)
    # Scanned from each end: the speech starts and ends near them.
    first = next(i for i, v in enumerate(samples) if v > floor or v < -floor)
    last = len(samples) - 1 - next(i for i, v in enumerate(reversed(samples)) if v > floor or v < -floor)
    edge = round(EDGE_SECONDS * RATE)
    return samples[max(0, first - edge):last + 1 + edge]


def active_power(samples: array) -> float:
    """Mean square over the frames that carry speech."""
    powers = [_energy(samples[i:i + FRAME]) / FRAME
              for i in range(0, len(samples) - FRAME + 1, FRAME)] or [1.0]
    floor = max(powers) * 10 ** (ACTIVE_DB / 10)
    active = [p for p in powers if p >= floor]
    return sum(active) / len(active) or 1.0


def _energy(frame) -> int:
    return sum(map(operator.mul, frame, frame))


def first_sentence(samples: array, min_seconds: float = 1.0, pause_seconds: float = 0.16) -> array | None:
    """The audio up to the first pause of ``pause_seconds`` after ``min_seconds`` of
    speech (a recorded prompt's first sentence), or None when there is no such pause."""
    parts = sentences(samples, min_seconds, pause_seconds)
    return parts[0] if len(parts) > 1 else None


def sentences(samples: array, min_seconds: float = 0.5, pause_seconds: float = 0.16) -> list[array]:
    """The audio cut at every pause of ``pause_seconds`` (30 dB under the loudest frame)
    that follows at least ``min_seconds`` of the current part: a recorded prompt's
    sentences, each with 50 ms of its pause at the end."""
    energies = [_energy(samples[i:i + FRAME]) for i in range(0, len(samples) - FRAME + 1, FRAME)]
    if not energies:
        return []
    quiet = max(energies) * 10 ** (-30 / 10)
    need = math.ceil(pause_seconds * RATE / FRAME)
    shortest = math.ceil(min_seconds * RATE / FRAME)
    edge = round(EDGE_SECONDS * RATE)
    parts, begin, run, spoken = [], 0, 0, False
    for i, e in enumerate(energies):
        if e >= quiet:
            run, spoken = 0, True
            continue
        run += 1
        if run == need and spoken and i - need + 1 - begin >= shortest:
            end = (i - need + 1) * FRAME
            parts.append(samples[begin * FRAME:end + edge])
            begin, spoken = i + 1, False
    if spoken:
        parts.append(samples[begin * FRAME:])
    return parts


# ---------------------------------------------------------------- a box's name

def name_text(text: str) -> str:
    """The part of a box name that is read out: one line, at most NAME_MAX_CHARS."""
    return " ".join(text.split())[:NAME_MAX_CHARS]


def name_cache_path(cache_dir: Path, language: str, text: str) -> Path:
    """Where the spoken name ``text`` is kept: named by a hash of what it is made from."""
    voice, speed = ESPEAK_VOICES[language]
    key = f"{NAME_VERSION}\0{voice}\0{speed}\0{NAME_MAX_SECONDS}\0{name_text(text)}".encode()
    return Path(cache_dir) / f"{language}-{hashlib.sha256(key).hexdigest()[:16]}.wav"


def spoken_name(cache_dir: Path, language: str, text: str) -> Path | None:
    """The box name ``text`` spoken by espeak-ng in ``language``, made once into
    ``cache_dir``; None (and a log line) when espeak-ng is missing or fails."""
    text = name_text(text)
    if not text:
        return None
    path = name_cache_path(cache_dir, language, text)
    if path.is_file():
        return path
    if shutil.which("espeak-ng") is None:
        log.warning("espeak-ng is not installed: the system greeting says the box number, "
                    "not the name %r (apt-get install espeak-ng)", text)
        return None
    voice, speed = ESPEAK_VOICES[language]
    try:
        samples = fit(_espeak(voice, speed, text))
        faster = speed
        # Said faster rather than cut (the caller waits for the beep after it); espeak-ng's
        # pauses do not shrink with the speed, so twice at most.
        for _ in range(2):
            seconds = len(samples) / RATE
            if seconds <= NAME_MAX_SECONDS or faster >= speed * 1.8:
                break
            faster = min(round(faster * seconds / NAME_MAX_SECONDS * 1.05), round(speed * 1.8))
            samples = fit(_espeak(voice, faster, text))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, samples)         # write_wav writes a temporary file and renames it
    except (OSError, LineboxError, subprocess.SubprocessError) as e:
        log.warning("cannot speak the box name %r: %s", text, getattr(e, "strerror", None) or e)
        return None
    log.info("box name %r spoken by espeak-ng (%.1f s), kept in %s", text, len(samples) / RATE, path)
    return path


def _espeak(voice: str, speed: int, text: str) -> array:
    with tempfile.TemporaryDirectory(prefix="linebox-name-") as tmp:
        wav = Path(tmp) / "name.wav"
        # The text goes on standard input, so that a name starting with "-" is no option.
        done = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), "--stdin"],
                              input=text.encode(), capture_output=True, timeout=30, check=False)
        if done.returncode:
            raise SpeechError(f"espeak-ng: {done.stderr.decode(errors='replace').strip()}")
        return read_wav_any_rate(wav)
