#!/usr/bin/env python3
"""Print what a caller waits through, per language and voice: the time from the start of
the system greeting to the beep (a short and a long box name, spoken as the appliance
speaks them) and the length of each menu, in seconds. `h` marks the human voice.

    PYTHONPATH=firmware python3 scripts/prompt_lengths.py
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "firmware"))

from linebox.calls.prompts import LANGUAGES, Prompts  # noqa: E402
from linebox.calls.speech import spoken_name  # noqa: E402
from linebox.wavfile import read_wav  # noqa: E402

MENUS = ("menu", "message_menu", "options", "review", "retract_offer", "temporary_menu")
NAMES = ("Main office", "Dr. Müller und Partner, Steuerberatung und Buchhaltung")


def main() -> int:
    with tempfile.TemporaryDirectory() as names:
        for lang in LANGUAGES:
            for voice in ("auto", "espeak"):
                p = Prompts(lang, voice=voice)
                beeps = [len(p.with_name(read_wav(spoken_name(Path(names), lang, n)))) / 8000
                         for n in NAMES]
                menus = " ".join(f"{m}={len(p.clip(m)) / 8000:.1f}{'h' if p.voice_of([m]) == 'human' else ''}"
                                 for m in MENUS)
                print(f"{lang} {voice:6} to the beep {beeps[0]:.1f} / {beeps[1]:.1f} s   {menus}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
