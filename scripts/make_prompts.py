#!/usr/bin/env python3
"""Make the prompt clips: firmware/linebox/prompts/<lang>/<name>.wav from texts.toml.

Each text is spoken by espeak-ng, turned by sox into 8 kHz telephone audio (band-pass
300-3400 Hz), trimmed to 50 ms of silence at each end, brought to an active speech
level of -16 dBm0 and stored as a mu-law WAV. The same text gives the same bytes (no
timestamps anywhere), and only clips whose text, voice or processing changed are made
again: a manifest beside the clips keeps a hash of what each was made from.

    make prompts                                  # everything that changed
    scripts/make_prompts.py --lang de --only goodbye --out /tmp/p
    scripts/make_prompts.py --force               # everything
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from array import array
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "firmware"))

from linebox import RATE  # noqa: E402
from linebox.calls.prompts import COMMON, LANGUAGES, clip_names  # noqa: E402
from linebox.calls.speech import SpeechError, fit  # noqa: E402
from linebox.dsp.gen import tone  # noqa: E402
from linebox.fileio import write_file_atomic  # noqa: E402
from linebox.wavfile import write_wav  # noqa: E402

PROMPT_DIR = ROOT / "firmware" / "linebox" / "prompts"
TEXTS = PROMPT_DIR / "texts.toml"

# Bump when the processing below changes, so that every clip is made again.
PROCESS_VERSION = 1

BEEP = {"freq": 1000.0, "seconds": 0.5, "dbm0": -10.0}


class Fail(Exception):
    pass


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except Fail as e:
        print(f"make_prompts: error: {e}", file=sys.stderr)
        return 2


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=PROMPT_DIR,
                   help="folder that gets <lang>/<name>.wav (default: the package's)")
    p.add_argument("--lang", action="append", choices=LANGUAGES,
                   help="only this language (repeatable)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="only the clip of this name (repeatable)")
    p.add_argument("--force", action="store_true", help="make clips even if unchanged")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    return p.parse_args(argv)


def run(args) -> int:
    jobs = plan(load_texts(), args.lang or LANGUAGES, args.only)
    if not jobs:
        raise Fail(f"no clip named {', '.join(args.only)}")
    manifest_path = args.out / "manifest.json"
    manifest = load_manifest(manifest_path)
    todo = [j for j in jobs if args.force or manifest.get(j["id"]) != j["hash"]
            or not (args.out / f"{j['id']}.wav").is_file()]
    for folder in {(args.out / j["id"]).parent for j in todo}:
        folder.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for job in pool.map(lambda j: make(j, args.out), todo):
            manifest[job["id"]] = job["hash"]
    removed = []
    if not args.lang and not args.only:           # a full run also drops clips no longer made
        removed = prune(args.out, {j["id"] for j in jobs}, manifest)
    save_manifest(manifest_path, manifest)
    print(f"make_prompts: {len(todo)} made, {len(jobs) - len(todo)} unchanged, "
          f"{len(removed)} removed")
    return 0


# ------------------------------------------------------------------ what to make

def load_texts() -> dict:
    try:
        with open(TEXTS, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise Fail(f"{TEXTS}: {e}") from None


def default_texts() -> dict[str, str]:
    """Numbers as numerals: espeak-ng reads them right in every language."""
    texts = {f"n{i}": str(i) for i in range(100)}
    texts.update({f"h{i}": str(100 * i) for i in range(1, 10)})
    texts.update({f"t{i}": str(1000 * i) for i in range(1, 10)})
    return texts


def plan(texts: dict, languages, only) -> list[dict]:
    """One job per clip: id ("de/goodbye"), what to speak, and the hash of it all."""
    jobs = []
    for lang in languages:
        table = texts.get(lang) or {}
        voice, speed = table.get("voice"), table.get("speed")
        if not isinstance(voice, str) or not isinstance(speed, int):
            raise Fail(f"{TEXTS}: [{lang}] needs voice (string) and speed (words a minute)")
        spoken = default_texts() | table.get("text", {})
        names = clip_names(lang)
        missing = [n for n in names if n not in spoken]
        unknown = sorted(set(spoken) - set(names))
        if missing or unknown:
            raise Fail(f"{TEXTS}: [{lang}.text] missing {missing}, unknown {unknown}")
        for name in names:
            if not only or name in only:
                spec = {"voice": voice, "speed": speed, "text": spoken[name]}
                jobs.append(job(f"{lang}/{name}", spec))
    for name in COMMON:
        if not only or name in only:
            jobs.append(job(f"common/{name}", {"beep": BEEP}))
    return jobs


def job(clip_id: str, spec: dict) -> dict:
    blob = json.dumps([PROCESS_VERSION, spec], sort_keys=True, ensure_ascii=False)
    return {"id": clip_id, "spec": spec, "hash": hashlib.sha256(blob.encode()).hexdigest()}


# ------------------------------------------------------------------ making a clip

def make(job: dict, out: Path) -> dict:
    spec = job["spec"]
    if "beep" in spec:
        b = spec["beep"]
        samples = tone(b["freq"], b["seconds"], b["dbm0"])
    else:
        samples = telephone(speak(spec["voice"], spec["speed"], spec["text"]))
    write_wav(out / f"{job['id']}.wav", samples, RATE, encoding="ulaw")
    return job


def speak(voice: str, speed: int, text: str) -> array:
    """espeak-ng's voice, resampled to 8 kHz and band-limited to 300-3400 Hz by sox."""
    with tempfile.TemporaryDirectory(prefix="prompt-") as tmp:
        wav = Path(tmp) / "tts.wav"
        command(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text])
        raw = command(["sox", "-D", "-R", str(wav), "-t", "raw", "-e", "signed-integer",
                       "-b", "16", "-c", "1", "-L", "-", "sinc", "300-3400", "rate", "-v",
                       str(RATE)])
    samples = array("h")
    samples.frombytes(raw)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def command(argv: list[str]) -> bytes:
    try:
        done = subprocess.run(argv, capture_output=True, check=False)
    except FileNotFoundError:
        raise Fail(f"{argv[0]} is not installed (apt-get install espeak-ng sox)") from None
    if done.returncode:
        raise Fail(f"{' '.join(argv[:3])}...: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def telephone(samples: array) -> array:
    """Trim to 50 ms of silence each side, then set the active level to -16 dBm0."""
    try:
        return fit(samples)
    except SpeechError:
        raise Fail("espeak-ng produced silence") from None


# ------------------------------------------------------------------ bookkeeping

def load_manifest(path: Path) -> dict:
    try:
        return json.loads(path.read_text())["clips"]
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError):
        print(f"make_prompts: warning: {path} unreadable; making every clip", file=sys.stderr)
        return {}


def save_manifest(path: Path, clips: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"about": "hashes of what each clip was made from (scripts/make_prompts.py)",
            "clips": dict(sorted(clips.items()))}
    write_file_atomic(path, (json.dumps(body, indent=1, ensure_ascii=False) + "\n").encode())


def prune(out: Path, keep: set[str], manifest: dict) -> list[str]:
    removed = []
    for folder in (*LANGUAGES, "common"):
        for wav in sorted((out / folder).glob("*.wav")):
            clip_id = f"{folder}/{wav.stem}"
            if clip_id not in keep:
                wav.unlink()
                removed.append(clip_id)
    for clip_id in list(manifest):
        if clip_id not in keep:
            del manifest[clip_id]
    return removed


if __name__ == "__main__":
    sys.exit(main())
