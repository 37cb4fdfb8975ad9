"""`linebox analyze FILE`: the line listener over a recording (contract §3)."""

import json
import sys

from linebox.dsp.listener import analyze
from linebox.dsp.plans import PLAN_NAMES
from linebox.errors import LineboxError
from linebox.wavfile import read_wav

_COLUMNS = ("t", "type", "what")


def _describe(ev: dict) -> str:
    kind = ev["type"]
    if kind == "dtmf":
        return f"key {ev['digit']}  ({ev['dur'] * 1000:.0f} ms)"
    if kind == "tone":
        return f"{ev['tone']}  (sure at {ev['at']:.2f} s)"
    if kind == "speech":
        return f"{ev['dur']:.2f} s"
    if kind == "callerid":
        parts = [ev.get("number") or f"number {ev.get('number_absent') or '-'}",
                 ev.get("name") or f"name {ev.get('name_absent') or '-'}"]
        if ev.get("datetime"):
            d = ev["datetime"]
            parts.append(f"{d[0:2]}/{d[2:4]} {d[4:6]}:{d[6:8]}")
        return f"{ev['standard']} {ev['format']}: " + ", ".join(parts)
    return json.dumps({k: v for k, v in ev.items() if k not in ("type", "t")})


def main(args) -> int:
    if args.plan not in PLAN_NAMES:
        raise LineboxError(f"unknown tone plan {args.plan!r} (one of {', '.join(PLAN_NAMES)})")
    if args.file == "-":
        samples = read_wav(sys.stdin.buffer, name="<stdin>")
    else:
        samples = read_wav(args.file)
    events = analyze(samples, args.plan)
    out = sys.stdout
    if args.json:
        for ev in events:
            out.write(json.dumps(ev) + "\n")
    else:
        out.write(f"{'t (s)':>9}  {'event':<9} what\n")
        for ev in events:
            out.write(f"{ev['t']:>9.3f}  {ev['type']:<9} {_describe(ev)}\n")
    out.flush()
    return 0
