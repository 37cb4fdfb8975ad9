"""One table of the commands that change the appliance from outside.

MQTT (``<base>/cmd/<action>``), the command line (``linebox cmd ACTION [JSON]``) and the
web portal all go through :func:`dispatch`: each command is declared once, with its
arguments (typed and bounded), its help text and its handler, by the module that owns
what it changes. Adding a command is one :func:`command` declaration; docs/commands.md
describes each one.

A handler is called as ``handler(app, **args)`` with ``app`` the
:class:`~linebox.app.Appliance` and ``args`` already checked: box numbers and lines are
configured ones, message ids are ASCII digits. What it returns (JSON-able) is the
``result``; a :class:`~linebox.errors.LineboxError` it raises becomes ``ok: false`` with
that plain message. Anything else is a bug: logged with its traceback, answered as
``internal error`` and never shown to the sender.
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from linebox.errors import LineboxError
from linebox.linesettings import MAX_RINGS, MIN_RINGS, min_rings

log = logging.getLogger(__name__)

MAX_PAYLOAD = 4096              # bytes: the largest payload a command is read from
MAX_ID = 12                     # digits in a message id (the store's are 6)
MAX_REQUEST_ID = 64             # characters of a string request_id
LED_PATTERNS = ("off", "on", "blink", "fast")
LIST_STATES = ("new", "heard", "saved", "trash")
LIST_FIELDS = ("id", "box", "state", "caller_number", "caller_name", "received", "seconds",
               "line", "recovered")


class CommandError(LineboxError):
    """A command that cannot be carried out; the text says why, in plain words."""


@dataclass(frozen=True)
class Arg:
    """One argument: ``kind`` is box, message, line, bool, int or choice."""

    name: str
    kind: str
    help: str
    required: bool = True
    lo: int | None = None                # int: bounds
    hi: int | None = None
    choices: tuple[str, ...] = ()        # choice: the allowed strings
    nullable: bool = False               # JSON null allowed (and passed as None)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    args: tuple[Arg, ...]
    handler: Callable[..., Any]
    example: str                         # a JSON payload, for errors and docs
    plain: str | None = None             # the argument a plain-text payload stands for
    one_of: bool = False                 # exactly one of the arguments, not all
    daemon_only: bool = False            # needs the running daemon (lamps, the config)
    settings: bool = False               # changes what the retained settings show


TABLE: dict[str, Command] = {}


def command(name: str, help: str, *args: Arg, example: str, plain: str | None = None,
            one_of: bool = False, daemon_only: bool = False, settings: bool = False):
    """Declare a command; decorates its handler."""
    def register(fn):
        if name in TABLE:
            raise ValueError(f"command {name!r} declared twice")
        TABLE[name] = Command(name, help, args, fn, example, plain, one_of, daemon_only,
                              settings)
        return fn
    return register


# ---------------------------------------------------------------- reading a payload

def _bounded_int(text: str) -> int:
    # A 4,301-digit integer makes int() raise ValueError; nothing here needs 19 digits.
    if len(text.lstrip("-")) > 18:
        raise CommandError("a number in the payload is too long")
    return int(text)


def _no_constant(text: str):
    raise CommandError(f"{text} is not allowed in a command")


def parse_payload(action: str, payload: bytes | str) -> dict:
    """The arguments in a payload: a JSON object, or for a command with a main argument
    that argument as plain text (``cmd/delete`` ``000012``). Raises CommandError."""
    cmd = TABLE.get(action)
    if cmd is None:
        raise CommandError(f"unknown action {action!r} (known: {', '.join(TABLE)})")
    if len(payload) > MAX_PAYLOAD:
        raise CommandError(f"payload too large ({len(payload)} bytes; at most {MAX_PAYLOAD})")
    if isinstance(payload, bytes):
        try:
            payload = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError("payload is not UTF-8 text") from None
    text = payload.strip()
    if text[:1] in ("{", "["):
        try:
            args = json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
        except CommandError:
            raise
        except json.JSONDecodeError as e:
            raise CommandError(f"bad JSON: {e.msg} at character {e.pos}") from None
        except RecursionError:
            raise CommandError("bad JSON: nested too deeply") from None
        except Exception:                   # noqa: BLE001 - whatever the parser throws
            raise CommandError("bad JSON") from None
        if not isinstance(args, dict):
            raise CommandError(f"payload must be a JSON object like {cmd.example}")
        return args
    if text and cmd.plain is not None:
        return {cmd.plain: text}
    if not text and not any(a.required for a in cmd.args) and not cmd.one_of:
        return {}
    raise CommandError(f"payload must be a JSON object like {cmd.example}")


# ---------------------------------------------------------------- checking arguments

def _digits(value: str, most: int) -> bool:
    # isdigit() alone takes "٠٠٠٠٠١" (Arabic-Indic digits) and superscripts.
    return 0 < len(value) <= most and value.isascii() and value.isdigit()


def _check_one(cmd: Command, arg: Arg, value, app) -> Any:
    if value is None and arg.nullable:
        return None
    kind = arg.kind
    if kind == "box":
        if not isinstance(value, str) or not _digits(value, 8):
            raise CommandError(f'{arg.name} must be a box number string like "100"')
        if value not in app.config.boxes:
            raise CommandError(f"no box {value!r}")
    elif kind == "message":
        if not isinstance(value, str) or not _digits(value, MAX_ID):
            raise CommandError(f'{arg.name} must be a message id string like "000012"')
    elif kind == "line":
        if not isinstance(value, int) or isinstance(value, bool):
            raise CommandError(f"{arg.name} must be an integer")
        if value not in {line.id for line in app.config.lines}:
            raise CommandError(f"no line {value}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise CommandError(f"{arg.name} must be true or false")
    elif kind == "int":
        if (not isinstance(value, int) or isinstance(value, bool)
                or not arg.lo <= value <= arg.hi):
            raise CommandError(f"{arg.name} must be an integer from {arg.lo} to {arg.hi}")
    elif kind == "choice":
        if value not in arg.choices or not isinstance(value, str):
            null = " or null" if arg.nullable else ""
            raise CommandError(f"{arg.name} must be one of {', '.join(arg.choices)}{null}")
    return value


def check(action: str, args: dict, app) -> dict:
    """The checked arguments of a command (raises CommandError, calls nothing)."""
    cmd = TABLE.get(action)
    if cmd is None:
        raise CommandError(f"unknown action {action!r} (known: {', '.join(TABLE)})")
    if not isinstance(args, dict):
        raise CommandError(f"arguments must be a JSON object like {cmd.example}")
    names = [a.name for a in cmd.args]
    for key in args:
        if key not in names:
            expected = f"expected {' or '.join(names)}" if names else "expected none"
            raise CommandError(f"unknown key {str(key)[:40]!r} ({expected})")
    if cmd.one_of and len(args) != 1:
        raise CommandError(f"give either {' or '.join(repr(n) for n in names)}"
                           .replace("'", '"'))
    out = {}
    for arg in cmd.args:
        if arg.name not in args:
            if arg.required and not cmd.one_of:
                raise CommandError(f"missing {arg.name!r} (like {cmd.example})")
            continue
        out[arg.name] = _check_one(cmd, arg, args[arg.name], app)
    return out


def _request_id(args: dict):
    rid = args.pop("request_id", None)
    if rid is None:
        return None
    if isinstance(rid, str) and len(rid) <= MAX_REQUEST_ID:
        return rid
    if isinstance(rid, int) and not isinstance(rid, bool):
        return rid
    raise CommandError(f"request_id must be a string (at most {MAX_REQUEST_ID} characters) "
                       "or an integer")


def dispatch(app, action: str, args: dict, *, daemon: bool = True) -> dict:
    """Check and run one command: ``{"ok", "error", "action", "request_id"}`` and, when
    the handler returned something, ``result``. Never raises for what a sender sent.
    ``daemon=False`` (the CLI) refuses the commands that need the running daemon."""
    out: dict[str, Any] = {"ok": False, "error": None, "action": action, "request_id": None}
    try:
        args = dict(args) if isinstance(args, dict) else args
        if isinstance(args, dict):
            out["request_id"] = _request_id(args)
        cmd = TABLE.get(action)
        if cmd is not None and cmd.daemon_only and not daemon:
            raise CommandError(f"{action} needs the running daemon (send it over MQTT)")
        checked = check(action, args, app)
        result = TABLE[action].handler(app, **checked)
    except LineboxError as e:
        out["error"] = str(e)
        return out
    except Exception as e:                  # noqa: BLE001 - a bug must not stop the caller
        log.error("command %s failed: %s: %s", action, type(e).__name__, e, exc_info=True)
        out["error"] = "internal error (see the appliance's log)"
        return out
    out["ok"] = True
    if result is not None:
        out["result"] = result
    return out


# ---------------------------------------------------------------- the store's commands

BOX = Arg("box", "box", "a box number")
MESSAGE = Arg("message", "message", "a message id")
LINE = Arg("line", "line", "a line id")


def _message(app, message: str) -> dict:
    rec = app.store.get(message)
    if rec is None:
        raise CommandError(f"no message {message}")
    return rec


@command("mark_heard", "Mark new messages heard (the lamp goes off): every new message "
         "of a box, or one message. Only new messages change: a saved one stays saved, "
         "one in the trash stays there. The result is how many changed.",
         Arg("box", "box", "every new message of this box", required=False),
         Arg("message", "message", "this message", required=False),
         example='{"box": "100"}', plain="box", one_of=True)
def _mark_heard(app, box: str | None = None, message: str | None = None) -> int:
    todo = [_message(app, message)] if message is not None else app.store.messages(box, ["new"])
    n = 0
    for m in todo:
        if m["state"] == "new":
            app.store.set_state(m["id"], "heard")
            n += 1
    return n


@command("delete", "Move a message to the trash (undelete brings it back while it is "
         "there). The result is the message id.",
         MESSAGE, example='{"message": "000012"}', plain="message")
def _delete(app, message: str) -> str:
    if _message(app, message)["state"] == "trash":
        raise CommandError(f"message {message} is already in the trash")
    app.store.delete(message)
    return message


@command("undelete", "Bring a message back from the trash to the state it had: a given "
         "message, or the box's last deleted. The result is the message id.",
         Arg("box", "box", "the last message deleted in this box", required=False),
         Arg("message", "message", "this message", required=False),
         example='{"box": "100"}', plain="box", one_of=True)
def _undelete(app, box: str | None = None, message: str | None = None) -> str:
    if message is not None:
        rec = _message(app, message)
        if rec["state"] != "trash":
            raise CommandError(f"message {message} is not in the trash")
        app.store.set_state(message, rec.get("prev_state") or "saved")
        return message
    rec = app.store.undelete_last(box)
    if rec is None:
        raise CommandError(f"box {box}: nothing to undelete")
    return rec["id"]


@command("save", "Keep a message (heard or new) as saved: retention does not move it to "
         "the trash. The result is the message id.",
         MESSAGE, example='{"message": "000012"}', plain="message")
def _save(app, message: str) -> str:
    if _message(app, message)["state"] == "trash":
        raise CommandError(f"message {message} is in the trash (undelete it first)")
    app.store.set_state(message, "saved")
    return message


@command("purge", "Delete a message in the trash for good (its recording too). The "
         "result is the message id.",
         MESSAGE, example='{"message": "000012"}', plain="message")
def _purge(app, message: str) -> str:
    if _message(app, message)["state"] != "trash":
        raise CommandError(f"message {message} is not in the trash")
    app.store.purge(message)
    return message


@command("list", "The messages of a box, oldest first (all but the trash, or those of "
         "one state). The result is a list of messages.",
         BOX, Arg("state", "choice", "only messages in this state", required=False,
                  choices=LIST_STATES),
         example='{"box": "100"}', plain="box")
def _list(app, box: str, state: str | None = None) -> list[dict]:
    states = [state] if state else ["new", "heard", "saved"]
    return [{k: m.get(k) for k in LIST_FIELDS} for m in app.store.messages(box, states)]


@command("unlock", "Lift a box's PIN lockout (after too many wrong PINs) and start its "
         "count of failures again.", BOX, example='{"box": "100"}', plain="box")
def _unlock(app, box: str) -> None:
    app.store.unlock(box, by="command")


# ---------------------------------------------------------------- the lines' settings

@command("answering", "Switch answering on a line on or off (kept across restarts and "
         "reload; the config's `answer` is the default).",
         LINE, Arg("on", "bool", "true to answer calls"),
         example='{"line": 1, "on": true}', settings=True)
def _answering(app, line: int, on: bool) -> None:
    app.settings.set(line, answering=on)


@command("rings", f"Rings before answering on a line, {MIN_RINGS} to {MAX_RINGS} and more "
         "than the line's toll_saver_rings (kept across restarts and reload; the config's "
         "`rings` is the default).",
         LINE, Arg("rings", "int", "rings before answering", lo=MIN_RINGS, hi=MAX_RINGS),
         example='{"line": 1, "rings": 3}', settings=True)
def _rings(app, line: int, rings: int) -> None:
    cfg = app.config.line(line)
    if rings < min_rings(cfg):
        raise CommandError(f"rings must be more than line {line}'s toll_saver_rings "
                           f"({cfg.toll_saver_rings})")
    app.settings.set(line, rings=rings)


# ---------------------------------------------------------------- the appliance

@command("led_test", "Show a pattern on every message lamp (off, on, blink, fast); null "
         "ends the test.",
         Arg("pattern", "choice", "the pattern, or null", choices=LED_PATTERNS, nullable=True),
         example='{"pattern": "blink"}', plain="pattern", daemon_only=True)
def _led_test(app, pattern: str | None) -> None:
    app.leds.test_pattern(pattern)


@command("reload", "Re-read the configuration file for what can change without a restart "
         "(answering and rings defaults per line).", example="{}", daemon_only=True,
         settings=True)
def _reload(app) -> None:
    app.reload()


# ---------------------------------------------------------------- `linebox cmd`

def help_text() -> str:
    """Every command with its arguments, for ``linebox cmd --help``."""
    lines = ["commands (payload: a JSON object, or the main argument as plain text):"]
    for cmd in TABLE.values():
        args = ", ".join(a.name + ("" if a.required and not cmd.one_of else "?")
                         for a in cmd.args) or "-"
        lines.append(f"  {cmd.name:<11} {args:<18} e.g. {cmd.example}")
    return "\n".join(lines)


def cmd_main(args) -> int:
    """`linebox cmd ACTION [JSON]`: one command against the data folder, for when the
    daemon is not running (its changes reach MQTT as states at the daemon's next start,
    not as events)."""
    from linebox.app import Appliance
    from linebox.config import load_config
    from linebox.events import Bus

    payload = args.payload if args.payload is not None else ""
    if args.action in TABLE and TABLE[args.action].daemon_only:
        raise LineboxError(f"cmd {args.action}: needs the running daemon "
                           f"(send it over MQTT to <base>/cmd/{args.action})")
    cfg = load_config(args.config, data_dir=args.data)
    try:
        parsed = parse_payload(args.action, payload)
    except CommandError as e:
        raise LineboxError(f"cmd {args.action}: {e}") from None
    app = Appliance(cfg, Bus())
    # Never repair recordings here (a daemon could be writing one): recover=False.
    app.store.open(recover=False)
    try:
        reply = dispatch(app, args.action, parsed, daemon=False)
    finally:
        app.store.close()
    if not reply["ok"]:
        raise LineboxError(f"cmd {args.action}: {reply['error']}")
    result = reply.get("result")
    if isinstance(result, list):
        for item in result:
            print(json.dumps(item, ensure_ascii=False))
    else:
        print(json.dumps(result if result is not None else "ok", ensure_ascii=False))
    return 0
