"""A/B of the line listener: this tree's against a git revision's, on the bench mix.

    PYTHONPATH=firmware python bench/ab.py [--ref main] [--rounds 5]

Both listeners are loaded into this one process (the revision's package is imported
first, under its own modules, then this tree's) and take turns on each configuration
(A, B, A, B ...), so that a busy machine slows both alike; each figure is the best CPU
time of its turns. Prints the speed of each, their ratio, and whether every event on
the mix is the same (a speed-up must not change what the listener hears). Asserts nothing.
"""

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
CONFIGS = (("us", True), ("us", False), ("de", True), ("de", False), ("uk", True), ("uk", False))


def checkout(ref: str, into: Path) -> Path:
    """firmware/ of git revision ``ref``, unpacked under ``into``."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "firmware"],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into / "firmware"


def load_listener(firmware: Path):
    """The Listener class of the linebox package under ``firmware``, imported afresh."""
    for name in [m for m in sys.modules if m == "linebox" or m.startswith("linebox.")]:
        del sys.modules[name]
    sys.path.insert(0, str(firmware))
    try:
        from linebox.dsp.listener import Listener
    finally:
        sys.path.remove(str(firmware))
    return Listener


def run(listener_cls, frames, plan, callerid) -> tuple[float, list]:
    lst = listener_cls(plan, callerid=callerid)
    events = []
    t0 = time.process_time()
    for f in frames:
        ev = lst.feed(f)
        if ev:
            events.extend(ev)
    events.extend(lst.flush())
    return time.process_time() - t0, events


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench/ab.py", description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="main", help="git revision to compare with (default main)")
    ap.add_argument("--rounds", type=int, default=5, help="turns each listener gets (default 5)")
    ap.add_argument("--plans", default="us,de,uk", help="plans to run (default us,de,uk)")
    ap.add_argument("--seconds", type=float, default=600.0,
                    help="the mix's first SECONDS only (shorter turns, more of them: steadier on a busy machine)")
    args = ap.parse_args(argv)
    from mix import build_mix

    FRAME = 160

    mix = build_mix()
    n = min(len(mix), int(args.seconds * 8000))
    n -= n % FRAME
    frames = [mix[i:i + FRAME] for i in range(0, n, FRAME)]
    audio_s = n / 8000
    plans = args.plans.split(",")
    with tempfile.TemporaryDirectory() as td:
        sides = {"A": load_listener(checkout(args.ref, Path(td))), "B": load_listener(ROOT / "firmware")}
    print(f"A = {args.ref}, B = this tree; best CPU time of {args.rounds} turns each, "
          f"{audio_s / 60:.0f} minutes of the mix")
    for plan, callerid in CONFIGS:
        if plan not in plans:
            continue
        best = {"A": 1e9, "B": 1e9}
        events = {}
        for _ in range(args.rounds):
            for side, cls in sides.items():
                t, events[side] = run(cls, frames, plan, callerid)
                best[side] = min(best[side], t)
        a, b = best["A"], best["B"]
        when = "ringing, FSK on" if callerid else "in a call"
        same = events["A"] == events["B"]
        print(f"  {plan} {when:<16} A {a:5.2f} s {audio_s / a:5.0f}x   B {b:5.2f} s {audio_s / b:5.0f}x"
              f"   B/A speed {a / b:4.2f}   events {'identical' if same else 'DIFFER'}"
              f" ({len(events['B'])})", flush=True)
        if not same:
            only_a = [e for e in events["A"] if e not in events["B"]][:3]
            only_b = [e for e in events["B"] if e not in events["A"]][:3]
            print(f"      only A: {json.dumps(only_a)}\n      only B: {json.dumps(only_b)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
