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
    """Set a box's greeting of one kind from a WAV file (any rate, resampled), or clear
    it. The limits are the phone's: a greeting of 1 s to 60 s of sound, a name of at
    most 2.5 s (it is said before "please leave your message")."""
    from linebox.calls.flows import GREETING_MAX_SECONDS, MIN_VOICE_SECONDS, NAME_MAX_SECONDS
    from linebox.calls.speech import SpeechError, trim
    from linebox.wavfile import read_wav_any_rate

    if args.clear == bool(args.file):
        raise LineboxError("greeting: give a WAV file, or --clear")
    kind = args.kind
    samples = None
    if args.file:
        longest = NAME_MAX_SECONDS if kind == "name" else GREETING_MAX_SECONDS
        # Refused from the header before decoding: an 18-hour file is not read into memory.
        samples = read_wav_any_rate(args.file, max_seconds=longest)
        try:
            samples = trim(samples)
        except SpeechError:
            raise LineboxError(f"greeting: {args.file}: the file is silent") from None
        seconds = len(samples) / 8000
        shortest = 0.3 if kind == "name" else MIN_VOICE_SECONDS
        if seconds < shortest:
            raise LineboxError(f"greeting: {args.file}: {seconds:.1f} s of sound is too short "
                               f"(at least {shortest:g} s)")
    args.box, box = None, args.box
    try:
        cfg, store = _store(args, read_only=False)
    except OSError as e:
        raise LineboxError(f"greeting: data folder: {e.strerror or e}"
                           f"{f': {e.filename}' if e.filename else ''}") from None
    try:
        if box not in cfg.boxes:
            raise LineboxError(f"no box {box} in {cfg.source}")
        if samples is None:
            store.clear_greeting(box, kind)
            print(f"box {box}: {kind} greeting removed")
        else:
            store.set_greeting(box, samples, kind)
            print(f"box {box}: {kind} greeting set ({len(samples) / 8000:.1f} s)")
    except OSError as e:
        raise LineboxError(f"greeting: cannot write in {cfg.device.data_dir}: "
                           f"{e.strerror or e}") from None
    finally:
        store.close()
    return 0
