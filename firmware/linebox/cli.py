"""The `linebox` command line. Each subcommand lives beside the code it drives; this module
only parses arguments and turns errors a person can act on into one line and exit 2."""

import argparse
import importlib
import sys

from linebox import __version__
from linebox.errors import LineboxError

DEFAULT_CONFIG = "/etc/linebox/linebox.toml"


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="linebox", description="Voicemail appliance for analog phone lines.")
    p.add_argument("--version", action="version", version=f"linebox {__version__}")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    a = sub.add_parser("analyze", help="run the line listener over a recording")
    a.add_argument("file", help="WAV file, or - for standard input")
    a.add_argument("--plan", default="us", help="tone plan: us, uk, de, fr, eu")
    a.add_argument("--json", action="store_true", help="one JSON object a line")
    a.set_defaults(handler="linebox.analyze:main")

    c = sub.add_parser("config", help="configuration")
    csub = c.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    cc = csub.add_parser("check", help="check a configuration file")
    cc.add_argument("--config", default=DEFAULT_CONFIG)
    cc.set_defaults(handler="linebox.config:cmd_check")

    ph = sub.add_parser("pin-hash", help="read a PIN on standard input, print its hash")
    ph.add_argument("--box", help="refuse the box's own number as its PIN")
    ph.set_defaults(handler="linebox.voicemail.pins:cmd_pin_hash")

    u = sub.add_parser("unlock", help="lift the login lock of a box")
    u.add_argument("box")
    u.add_argument("--config", default=DEFAULT_CONFIG)
    u.add_argument("--data")
    u.set_defaults(handler="linebox.voicemail.unlock:cmd_unlock")

    sp = sub.add_parser("sip-password", help="read an extension's SIP password on standard input, print its HA1")
    sp.add_argument("extension")
    sp.add_argument("--config", default=DEFAULT_CONFIG)
    sp.set_defaults(handler="linebox.sip.cli:cmd_sip_password")

    s = sub.add_parser("sim", help="run a scenario on simulated lines")
    s.add_argument("scenario")
    s.add_argument("--config", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--json", action="store_true")
    s.add_argument("--web", metavar="HOST:PORT", help="serve the web portal (until SIGTERM/Ctrl-C after the scenario)")
    s.add_argument("--realtime", action="store_true", help="pace the scenario at real time")
    s.set_defaults(handler="linebox.sim.runner:main")

    m = sub.add_parser("messages", help="list messages")
    m.add_argument("--config", default=DEFAULT_CONFIG)
    m.add_argument("--data")
    m.add_argument("--box")
    m.add_argument("--json", action="store_true")
    m.set_defaults(handler="linebox.voicemail.cli:cmd_messages")

    g = sub.add_parser("greeting", help="set a box's greeting from a WAV file")
    g.add_argument("box")
    g.add_argument("file", nargs="?", help="WAV file; omit with --clear")
    g.add_argument("--clear", action="store_true", help="remove that greeting (back to the system one)")
    g.add_argument("--kind", choices=("unavailable", "temporary", "name"), default="unavailable",
                   help="unavailable (the box's greeting), temporary (overrides it until "
                        "cleared) or name (said by the system greeting)")
    g.add_argument("--config", default=DEFAULT_CONFIG)
    g.add_argument("--data")
    # writes_data: run as the data folder's owner (linebox.access); these inputs are read first.
    g.set_defaults(handler="linebox.voicemail.cli:cmd_greeting", writes_data=("file",))

    ap = sub.add_parser("admin-password", help="set the web portal administrator's password (read on stdin)")
    ap.add_argument("--config", default=DEFAULT_CONFIG)
    ap.add_argument("--data")
    ap.set_defaults(handler="linebox.web.auth:cmd_admin_password")

    d = sub.add_parser("demo", help="a complete story on a simulated line")
    d.add_argument("--json", action="store_true")
    d.set_defaults(handler="linebox.sim.demo:main")

    r = sub.add_parser("run", help="run the appliance (the daemon)")
    r.add_argument("--config", default=DEFAULT_CONFIG)
    r.set_defaults(handler="linebox.run:main")

    from linebox.commands import help_text
    k = sub.add_parser("cmd", help="run one command against the data folder (daemon stopped)",
                       epilog=help_text() + "\n\nSee docs/commands.md.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    k.add_argument("action", help="mark_heard, delete, undelete, list, unlock, answering, rings")
    k.add_argument("payload", nargs="?", help='a JSON object like \'{"box": "100"}\', or the '
                   "main argument as plain text")
    k.add_argument("--config", default=DEFAULT_CONFIG)
    k.add_argument("--data")
    k.set_defaults(handler="linebox.commands:cmd_main", writes_data=())

    h = sub.add_parser("hwcheck", help="check the configured hardware")
    h.add_argument("--config", default=DEFAULT_CONFIG)
    h.set_defaults(handler="linebox.hw.check:main")
    return p


def _resolve(spec: str):
    mod, _, fn = spec.partition(":")
    return getattr(importlib.import_module(mod), fn)


def _as_data_owner(args) -> None:
    """A command that writes the data folder runs as the folder's owner: as root, it
    becomes that user (see linebox.access), so the service keeps owning its files."""
    import os

    if os.geteuid() != 0:
        return
    from linebox.access import become_data_owner
    from linebox.config import load_config

    for name in ("config", "data"):      # relative to where the administrator stands
        if getattr(args, name, None):
            setattr(args, name, os.path.abspath(getattr(args, name)))
    cfg = load_config(args.config, data_dir=getattr(args, "data", None))
    become_data_owner(cfg.device.data_dir, args, args.writes_data)


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    from linebox import log

    log.setup(args.log_level)
    try:
        handler = _resolve(args.handler)
        if getattr(args, "writes_data", None) is not None:
            _as_data_owner(args)
        return handler(args) or 0
    except PermissionError as e:
        from linebox.access import denied

        print(f"linebox: error: {denied(e.filename) if e.filename else e}", file=sys.stderr)
        return 2
    except LineboxError as e:
        print(f"linebox: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
