"""`linebox messages` and `linebox greeting`: the store from the command line."""

import json
import sys

from linebox.errors import LineboxError

FIELDS = ("id", "box", "state", "caller_number", "caller_name", "received", "seconds", "line", "file", "recovered",
          "transcript", "transcript_engine")


def _store(args, read_only: bool):
    from linebox.access import require
    from linebox.config import device_tz, load_config
    from linebox.voicemail.store import Store

    cfg = load_config(args.config, data_dir=args.data)
    if args.box is not None and args.box not in cfg.boxes:
        raise LineboxError(f"no box {args.box} in {cfg.source}")
    require(cfg.device.data_dir, write=not read_only)   # a missing permission: one line
    store = Store(cfg.device.data_dir, cfg.boxes, tz=device_tz(cfg.device))
    # Never repair recordings here: a running daemon may be writing one right now.
    store.open(read_only=read_only, recover=False)
    return cfg, store


def cmd_messages(args) -> int:
    """List messages (contract §6), oldest first."""
    cfg, store = _store(args, read_only=True)
    try:
        msgs = store.messages(args.box)
    finally:
        store.close()
    out = sys.stdout
    if args.json:
        for m in msgs:
            out.write(json.dumps({k: m.get(k) for k in FIELDS}) + "\n")
        return 0
    if not msgs:
        out.write("no messages\n")
        return 0
    out.write(f"{'id':<8} {'box':<6} {'state':<6} {'from':<24} {'received':<26} {'secs':>6}\n")
    for m in msgs:
        who = " ".join(x for x in (m.get("caller_number"), m.get("caller_name")) if x) or "unknown"
        out.write(f"{m['id']:<8} {m['box']:<6} {m['state']:<6} {who[:24]:<24} {m['received']:<26} {m['seconds']:>6.1f}\n")
    return 0


def cmd_greeting(args) -> int:
    """Set a box's greeting from a WAV file (any format `analyze` reads), or clear it."""
    from linebox.wavfile import read_wav

    if args.clear == bool(args.file):
        raise LineboxError("greeting: give a WAV file, or --clear")
    samples = read_wav(args.file) if args.file else None
    args.box, box = None, args.box
    cfg, store = _store(args, read_only=False)
    try:
        if box not in cfg.boxes:
            raise LineboxError(f"no box {box} in {cfg.source}")
        if samples is None:
            store.clear_greeting(box)
            print(f"box {box}: back to the system greeting")
        else:
            store.set_greeting(box, samples)
            print(f"box {box}: greeting set ({len(samples) / 8000:.1f} s)")
    finally:
        store.close()
    return 0
