"""Word error rate of the transcription engines on 8 kHz telephone speech with known text.

    python bench/wer.py [--limit N]

Corpora (both from Debian packages, both real recorded speech at 8 kHz):
- Asterisk's US English core sounds (`asterisk-core-sounds-en-wav`, the text of every
  file in `asterisk-core-sounds-en`'s core-sounds-en.txt): prompts of several words,
  read by a professional voice — the kind of speech a voicemail holds at best;
- the same package's spoken numbers (`digits/0.wav` ... `digits/90.wav`): the file name
  is the text. (The project's FSDD speech is concatenated without its labels, so it
  cannot be scored.)

Engines: PocketSphinx on this machine (what `engine = "pocketsphinx"` runs on the Pi), and
the same recogniser behind a Wyoming server on loopback (what `engine = "wyoming"` adds:
the protocol round trip). Prints WER (substitutions + deletions + insertions over
reference words) and the engine's seconds per minute of audio.
"""

import argparse
import gzip
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "firmware"))

from linebox.report.transcribe import PocketsphinxEngine, WyomingEngine  # noqa: E402
from linebox.wavfile import read_wav  # noqa: E402

SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TEXTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                "fourteen fifteen sixteen seventeen eighteen nineteen").split()
TENS = {20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy",
        80: "eighty", 90: "ninety"}


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " ")).split()


def wer_counts(ref: list[str], hyp: list[str]) -> int:
    """Edit distance in words (Levenshtein)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def phrases(limit: int) -> list[tuple[Path, str]]:
    out = []
    for line in gzip.open(TEXTS, "rt", encoding="utf-8", errors="replace"):
        name, sep, text = line.partition(":")
        if not sep or "[" in text or name.startswith(";") or "/" in name:
            continue
        path = SOUNDS / f"{name.strip()}.wav"
        if path.exists() and len(words(text)) >= 3:
            out.append((path, text.strip()))
        if len(out) >= limit:
            break
    return out


def numbers() -> list[tuple[Path, str]]:
    out = [(SOUNDS / "digits" / f"{n}.wav", NUMBER_WORDS[n]) for n in range(20)]
    out += [(SOUNDS / "digits" / f"{n}.wav", w) for n, w in TENS.items()]
    return [(p, t) for p, t in out if p.exists()]


def score(engine, corpus) -> tuple[float, float, int, int]:
    """WER, engine seconds per audio minute, reference words, utterances exactly right.

    WER counts insertions too, so on one-word clips (the numbers) it can reach 100 % while
    many clips are right: "zero" heard as "the gear l" is 3 errors for 1 word."""
    errors = ref_words = exact = 0
    audio_s = cpu = 0.0
    for path, text in corpus:
        samples = read_wav(path)
        audio_s += len(samples) / 8000
        t0 = time.perf_counter()
        hyp = engine.transcribe(samples, "en")
        cpu += time.perf_counter() - t0
        ref = words(text)
        errors += wer_counts(ref, words(hyp))
        ref_words += len(ref)
        exact += words(hyp) == ref
    return errors / max(1, ref_words), cpu / (audio_s / 60), ref_words, exact


def _server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "wyoming_stt_server.py"), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"tcp://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the Wyoming server did not start")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--limit", type=int, default=60, help="phrases to score (default 60)")
    args = p.parse_args()
    if not TEXTS.exists():
        print("wer: install asterisk-core-sounds-en and -en-wav for the corpora", file=sys.stderr)
        return 2
    corpora = {"asterisk phrases": phrases(args.limit), "asterisk numbers": numbers()}
    proc, uri = _server()
    try:
        engines = {"pocketsphinx (local)": PocketsphinxEngine(),
                   "wyoming -> pocketsphinx": WyomingEngine(uri, timeout=120)}
        print(f"{'engine':<26} {'corpus':<18} {'words':>6} {'WER':>7} {'exact':>9} {'s per audio min':>16}")
        for ename, engine in engines.items():
            for cname, corpus in corpora.items():
                wer, per_min, n, exact = score(engine, corpus)
                right = f"{exact}/{len(corpus)}"
                print(f"{ename:<26} {cname:<18} {n:>6} {wer:>7.1%} {right:>9} {per_min:>16.1f}")
    finally:
        proc.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
