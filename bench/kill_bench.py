"""Random SIGKILLs during recordings: how many messages and e-mails are lost.

A child process records messages into one data folder as fast as it can (a real store,
a real mail queue, 20 ms frames written with a short pause between them, so a kill
lands inside a recording most of the time) and prints the id of every message whose
``finish`` returned. The parent SIGKILLs it at a random moment, reopens the folder the
way ``linebox run`` does (recovery, then the announcements a kill kept back), and
checks that every message the child saw saved is there, and that every message in the
store has its mail queued (once). The folder is kept from one kill to the next.

Not part of ``make test`` (it runs for minutes):

    PYTHONPATH=firmware .venv/bin/python bench/kill_bench.py [--kills 300] [--seed 1]
"""

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

CHILD = textwrap.dedent("""
    import random, sys, time
    from array import array
    from linebox.config import BoxConfig, EmailConfig
    from linebox.events import Bus
    from linebox.report.email import Mailer
    from linebox.voicemail.store import Store
    from bench_boxes import BOXES, EMAIL
    data, seed = sys.argv[1], int(sys.argv[2])
    rnd = random.Random(seed)
    bus = Bus()
    store = Store(data, BOXES, bus=bus, reserve_bytes=0)
    mailer = Mailer(EMAIL, BOXES, data + "/mailq", lookup=store.get)
    bus.subscribe(mailer.handle)
    store.open()
    print("ready", flush=True)
    frame = array("h", [800, -800] * 80)
    while True:
        p = store.start_recording("100", 1, "5551234567", "BENCH")
        for _ in range(rnd.randint(40, 150)):            # 0.8 to 3 s of audio
            p.write(frame)
            time.sleep(0.002)
        msg = p.finish()
        print("saved", msg["id"], flush=True)
""")

BOXES_MODULE = textwrap.dedent("""
    from linebox.config import BoxConfig, EmailConfig
    BOXES = {"100": BoxConfig(number="100", name="Bench", pin_required=False, max_messages=100000,
                              email="bench@example.com", email_on_new=True)}
    EMAIL = EmailConfig(smtp_host="127.0.0.1", smtp_port=1, starttls=False, tls=False,
                        username=None, password=None, sender="linebox@example.com",
                        timeout_seconds=5.0)
""")

_MSGID = re.compile(rb"linebox\.100\.([0-9]{6})")


def mailed(mailq: Path) -> dict[str, int]:
    """Message id -> how many mails are queued for it."""
    counts: dict[str, int] = {}
    for eml in mailq.glob("*.eml"):
        head = eml.read_bytes()[:4096]
        m = _MSGID.search(head)
        if m:
            counts[m[1].decode()] = counts.get(m[1].decode(), 0) + 1
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rnd = random.Random(args.seed)

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "firmware"))
    import logging
    logging.getLogger("linebox").addHandler(logging.NullHandler())   # recovery warnings: expected
    logging.getLogger("linebox").propagate = False
    from linebox.events import Bus
    from linebox.report.email import Mailer

    with tempfile.TemporaryDirectory(prefix="kill-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "bench_boxes.py").write_text(BOXES_MODULE)
        sys.path.insert(0, str(tmp))
        from bench_boxes import BOXES, EMAIL

        from linebox.voicemail.store import Store

        data = tmp / "data"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(tmp), str(Path(__file__).resolve().parent.parent / "firmware"),
             os.environ.get("PYTHONPATH", "")]))
        seen_saved: set[str] = set()
        lost_messages: set[str] = set()
        kills_in_recording = 0
        t0 = time.monotonic()
        for k in range(args.kills):
            child = subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(k)],
                                     stdout=subprocess.PIPE, env=env)
            assert child.stdout.readline() == b"ready\n", "child did not start"
            time.sleep(rnd.uniform(0.0, 0.8))
            child.send_signal(signal.SIGKILL)
            out = child.communicate()[0].decode()
            seen_saved |= {line.split()[1] for line in out.splitlines() if line.startswith("saved ")}
            bus = Bus()
            store = Store(data, BOXES, bus=bus, reserve_bytes=0)
            mailer = Mailer(EMAIL, BOXES, data / "mailq", lookup=store.get)
            bus.subscribe(mailer.handle)
            recovered = store.open()
            kills_in_recording += bool(recovered)
            have = {m["id"] for m in store.messages()}
            store.close()
            lost_messages |= seen_saved - have
            if (k + 1) % 50 == 0:
                print(f"  {k + 1} kills ...", file=sys.stderr, flush=True)
        store = Store(data, BOXES, reserve_bytes=0)
        store.open(read_only=True)
        have = {m["id"] for m in store.messages()}
        store.close()
        mails = mailed(data / "mailq")
        lost_mails = sorted(have - set(mails))
        duplicates = sorted(i for i, n in mails.items() if n > 1)
        print(f"kill_bench: {args.kills} SIGKILLs in {time.monotonic() - t0:.0f} s, "
              f"{kills_in_recording} left a recording that came back as a message")
        print(f"  messages saved before a kill: {len(seen_saved)}, in the store: {len(have)}, "
              f"lost: {len(lost_messages)}")
        print(f"  mails: {len(have) - len(lost_mails)} of {len(have)} messages mailed, "
              f"lost: {len(lost_mails)}, mailed twice: {len(duplicates)}")
        return 1 if lost_messages or lost_mails else 0


if __name__ == "__main__":
    sys.exit(main())
