"""The project's own recorded speech (tests/data/speech, FLAC), decoded once to WAV.

FLAC keeps the repository small and is lossless, so every test hears exactly the samples
the originals held. sox decodes it (a Debian package `scripts/ensure-deps` installs);
the WAVs are cached in `.cache/speech/` beside the tests, written under a temporary name
and renamed, so parallel test workers never read a half-written file.
"""

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "data" / "speech"
CACHE = ROOT / ".cache" / "speech"


def speech_dir() -> Path:
    """A folder of the speech as 8 kHz 16-bit mono WAV files (``LINEBOX_SPEECH_DIR``
    overrides it with a folder of WAVs)."""
    override = os.environ.get("LINEBOX_SPEECH_DIR")
    if override:
        return Path(override)
    CACHE.mkdir(parents=True, exist_ok=True)
    sox = shutil.which("sox")
    for flac in sorted(SOURCE.glob("*.flac")):
        wav = CACHE / (flac.stem + ".wav")
        if wav.exists() and wav.stat().st_mtime >= flac.stat().st_mtime:
            continue
        if sox is None:
            raise RuntimeError("sox is needed to decode the test speech (run make test: it installs it)")
        tmp = wav.with_suffix(f".{os.getpid()}.tmp.wav")
        subprocess.run([sox, str(flac), "-t", "wav", "-e", "signed-integer", "-b", "16", str(tmp)],
                       check=True, capture_output=True)
        os.replace(tmp, wav)
    return CACHE
