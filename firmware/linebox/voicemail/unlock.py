"""`linebox unlock BOX`: lift the login lock of a box (the web portal calls the same
``Store.unlock``)."""

from linebox.errors import LineboxError


def cmd_unlock(args) -> int:
    from linebox.config import load_config
    from linebox.voicemail.store import Store

    cfg = load_config(args.config, data_dir=args.data)
    if args.box not in cfg.boxes:
        raise LineboxError(f"no box {args.box} in {cfg.source}")
    store = Store(cfg.device.data_dir, cfg.boxes)
    store.open(recover=False, exclusive=True)   # the daemon keeps the database in memory
    try:
        state = store.lock_state(args.box)
        was = store.unlock(args.box, by="linebox unlock")
    finally:
        store.close()
    if was:
        print(f"box {args.box}: unlocked ({state['failures']} failed logins forgotten)")
    else:
        print(f"box {args.box}: was not locked" + (f" ({state['failures']} failed logins forgotten)"
                                                  if state["failures"] else ""))
    return 0
