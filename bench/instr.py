"""Instructions per 20 ms frame of the line listener, counted by valgrind (issue 14).

    PYTHONPATH=firmware:tests python bench/instr.py [--seconds 100] [--firmware DIR]

Wall time on a shared machine is noisy; the number of instructions the CPU runs is not.
For each configuration (plan, FSK caller ID on while ringing / off in a call) this runs
the listener under ``valgrind --tool=callgrind`` twice, once over no frames and once over
the mix's first SECONDS (the first 100 s hold one 10 s chunk of each kind of audio:
speech, noise, music, keys, tones), and prints the difference per frame: Python's start,
the mix's loading and the detectors' tables cancel out. ``--firmware`` points at another
tree's firmware/ (e.g. a ``git worktree`` of main) for a before/after figure.
``--warm`` counts the steady state instead: two passes over the frames (a fresh listener
each) against one, so that tables the detectors build when first needed (the DTMF
detector's voice probes, the demodulator's phasors) are left out. Prints figures;
asserts nothing. Needs valgrind (apt-get install valgrind).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = (("us", False), ("us", True), ("de", False), ("de", True), ("uk", True))


def _child(plan: str, callerid: bool, seconds: float, passes: int) -> None:
    """Run under valgrind: ``passes`` listeners over the mix's first ``seconds``."""
    sys.path.insert(0, str(ROOT / "bench"))
    from mix import build_mix

    from linebox.dsp.listener import Listener

    mix = build_mix()
    n = int(seconds * 8000)
    n -= n % 160
    frames = [mix[i:i + 160] for i in range(0, n, 160)]
    for _ in range(passes):
        lst = Listener(plan, callerid=callerid)
        for f in frames:
            lst.feed(f)
        lst.flush()


def _count(firmware: Path, plan: str, callerid: bool, seconds: float, passes: int = 1) -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(firmware), str(ROOT / "tests")]),
               PYTHONDONTWRITEBYTECODE="1")
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--cache-sim=no",
           sys.executable, __file__, "--child", f"{plan},{int(callerid)},{seconds},{passes}"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    m = re.search(r"Collected\s*:\s*(\d+)", p.stderr)
    if not m:
        raise RuntimeError("no instruction count in valgrind's output:\n" + p.stderr[-2000:])
    return int(m.group(1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="bench/instr.py", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=100.0, help="seconds of the mix (default 100)")
    ap.add_argument("--firmware", type=Path, default=ROOT / "firmware",
                    help="the firmware/ folder whose listener is counted (default this tree's)")
    ap.add_argument("--plans", default="us,de,uk", help="plans to count (default us,de,uk)")
    ap.add_argument("--warm", action="store_true",
                    help="steady state: two passes against one (tables built when first needed left out)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        plan, cid, secs, passes = args.child.split(",")
        _child(plan, cid == "1", float(secs), int(passes))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)")
        return 0
    frames = int(args.seconds * 8000) // 160
    print(f"instructions per 20 ms frame (valgrind), {args.firmware}, first {args.seconds:g} s of the mix"
          + (", steady state" if args.warm else ""))
    for plan, callerid in CONFIGS:
        if plan not in args.plans.split(","):
            continue
        if args.warm:
            base = _count(args.firmware, plan, callerid, args.seconds, 1)
            full = _count(args.firmware, plan, callerid, args.seconds, 2)
        else:
            base = _count(args.firmware, plan, callerid, 0.0)
            full = _count(args.firmware, plan, callerid, args.seconds)
        when = "ringing, FSK on" if callerid else "in a call, FSK off"
        print(f"  {plan} {when:<18}: {(full - base) / frames / 1000:7.1f}k instructions/frame",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
