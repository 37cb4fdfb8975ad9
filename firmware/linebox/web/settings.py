"""Settings changed from the portal, written into the configuration file.

The file is edited with tomlkit, which keeps its comments and layout; the result is
checked by the same parser as ``linebox config check`` before it replaces the file
(atomically, keeping its mode), and then put into the running appliance
(``actions.apply_live``): no restart. A new PIN goes where a PIN changed by phone goes
(the store's ``pins.json``), never into the file.
"""

import os
import threading
import tomllib
from pathlib import Path

import tomlkit

from linebox.config import ConfigError, parse_config
from linebox.fileio import write_file_atomic
from linebox.voicemail.pins import hash_pin, pin_problem
from linebox.web.portal import BOX_NUMBER, Refusal

OWNER_KEYS = ("pin", "email", "email_on_new", "language")
ADMIN_BOX_KEYS = ("name", "pin_required", "max_messages", "max_message_seconds",
                  "keep_heard_days", "trash_days", "retract_minutes")
LINE_KEYS = ("rings", "toll_saver_rings", "route", "answer", "block")
_edit_lock = threading.Lock()


def view(portal, s) -> dict:
    cfg = portal.config
    boxes = [{"number": b.number, "name": b.name, "language": b.language, "email": _emails_text(b.email),
              "email_on_new": b.email_on_new, **({
                  "pin_required": b.pin_required, "max_messages": b.max_messages,
                  "max_message_seconds": b.max_message_seconds, "keep_heard_days": b.keep_heard_days,
                  "trash_days": b.trash_days, "retract_minutes": b.retract_minutes} if s.admin else {})}
             for b in cfg.boxes.values() if s.may_see(b.number)]
    out = {"boxes": boxes, "editable": _editable(portal)}
    if s.admin:
        settings = portal.line_settings()
        out["lines"] = [{"id": ln.id, "rings": settings[ln.id]["rings"], "answer": settings[ln.id]["answering"],
                         "toll_saver_rings": ln.toll_saver_rings, "route": ln.route, "block": list(ln.block)}
                        for ln in cfg.lines]
        a = cfg.attendant
        out["attendant"] = None if a is None else {"options": dict(a.options), "default": a.default}
    return out


def _emails_text(email) -> str:
    """One address, or several (a list in the file) separated by commas."""
    if not email:
        return ""
    return email if isinstance(email, str) else ", ".join(email)


def _emails_value(value):
    """What the file gets for the e-mail field: nothing, one address, or a list."""
    if value is None:
        return None
    if isinstance(value, list):
        parts = value
    elif isinstance(value, str):
        parts = [v for v in value.replace(",", " ").split() if v]
    else:
        return value                  # the config parser names what is wrong with it
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts


def _editable(portal) -> bool:
    src = portal.config.source
    return bool(src) and not src.startswith("<") and Path(src).is_file()


def _edit(portal, change, who: str, what: str) -> None:
    """Apply ``change(doc)`` to the configuration file, check, write, apply live."""
    if not _editable(portal):
        raise Refusal(409, "settings: this configuration was not read from a file")
    path = Path(portal.config.source)
    with _edit_lock:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise Refusal(500, f"settings: {path}: {e.strerror}") from None
        doc = tomlkit.parse(text)
        change(doc)
        new_text = tomlkit.dumps(doc)
        try:
            old = parse_config(tomllib.loads(text), str(path))
            cfg = parse_config(tomllib.loads(new_text), str(path))
        except (ConfigError, tomllib.TOMLDecodeError) as e:
            raise Refusal(400, str(e)) from None
        mode = path.stat().st_mode & 0o777
        try:
            write_file_atomic(path, new_text.encode("utf-8"))
            os.chmod(path, mode)
        except OSError as e:
            raise Refusal(500, f"settings: {path}: {e.strerror}") from None
    changed = {ln.id for ln in cfg.lines
               if any(ln.id == o.id and (ln.rings, ln.answer) != (o.rings, o.answer) for o in old.lines)}
    portal.apply_config(cfg, changed, who, what)


def _box_table(doc, number: str):
    for t in doc.get("box", []):
        if t.get("number") == number:
            return t
    raise Refusal(404, f"no [[box]] with number {number} in the file")


def _set(table, key: str, value) -> None:
    if value is None:
        if key in table:
            del table[key]
    else:
        table[key] = value


def change_box(portal, s, box: str, body: dict, who: str, flask_app) -> dict:
    allowed = OWNER_KEYS + (ADMIN_BOX_KEYS if s.admin else ())
    for key in body:
        if key not in OWNER_KEYS + ADMIN_BOX_KEYS:
            raise Refusal(400, f"settings: unknown key {key!r}")
        if key not in allowed:
            raise Refusal(403, f"settings: only the administrator may change {key!r}")
    if "pin" in body:
        problem = pin_problem(body["pin"], box) if isinstance(body["pin"], str) else "a PIN is digits"
        if problem:
            raise Refusal(400, f"settings: {problem}")
    rest = {k: v for k, v in body.items() if k != "pin"}
    if rest:
        def change(doc):
            t = _box_table(doc, box)
            for key, value in rest.items():
                _set(t, key, _emails_value(value) if key == "email" else value)
        _edit(portal, change, who, f"box {box}: {', '.join(sorted(rest))}")
    if "pin" in body:
        try:
            portal.set_pin_hash(box, hash_pin(body["pin"]), who)
        except Exception as e:  # noqa: BLE001 - reported as a refusal
            raise Refusal(409, str(e)) from None
        # Other browsers logged in with the old PIN are logged out.
        from flask import g
        flask_app.extensions["sessions"].end_box(box, keep=g.session.id)
    return {"changed": sorted(body)}


def add_box(portal, body: dict, who: str) -> dict:
    number, pin = body.get("number"), body.get("pin")
    if not isinstance(number, str) or not BOX_NUMBER.fullmatch(number):
        raise Refusal(400, "settings: a box number is 2 to 8 digits, as a string")
    if number in portal.config.boxes:
        raise Refusal(409, f"settings: box {number} already exists")
    problem = pin_problem(pin, number) if isinstance(pin, str) else "a PIN is digits"
    if problem:
        raise Refusal(400, f"settings: {problem}")
    extra = {k: v for k, v in body.items() if k not in ("number", "pin")}
    for key in extra:
        if key not in ("name", "language", "email", "email_on_new", *ADMIN_BOX_KEYS):
            raise Refusal(400, f"settings: unknown key {key!r}")

    def change(doc):
        t = tomlkit.table()
        t.add("number", number)
        for key, value in extra.items():
            value = _emails_value(value) if key == "email" else value
            if value is not None and value != "":
                t.add(key, value)
        t.add("pin_hash", hash_pin(pin))
        if "box" not in doc:
            doc.append("box", tomlkit.aot())
        doc["box"].append(t)
    _edit(portal, change, who, f"box {number} added")
    return {"box": number}


def remove_box(portal, box: str, who: str) -> dict:
    def change(doc):
        boxes = doc["box"]
        for i, t in enumerate(boxes):
            if t.get("number") == box:
                del boxes[i]
                return
        raise Refusal(404, f"no [[box]] with number {box} in the file")
    _edit(portal, change, who, f"box {box} removed")
    return {"box": box}


def change_line(portal, line_id: int, body: dict, who: str) -> dict:
    if not any(ln.id == line_id for ln in portal.config.lines):
        raise Refusal(404, f"no line {line_id}")
    for key in body:
        if key not in LINE_KEYS:
            raise Refusal(400, f"settings: unknown key {key!r}")

    def change(doc):
        for t in doc.get("line", []):
            if t.get("id") == line_id:
                for key, value in body.items():
                    _set(t, key, None if key == "block" and value == [] else value)
                return
        raise Refusal(404, f"no [[line]] with id {line_id} in the file")
    _edit(portal, change, who, f"line {line_id}: {', '.join(sorted(body))}")
    return {"line": line_id, "changed": sorted(body)}


def change_attendant(portal, body: dict, who: str) -> dict:
    for key in body:
        if key not in ("options", "default", "timeout_seconds"):
            raise Refusal(400, f"settings: unknown key {key!r}")

    def change(doc):
        if "attendant" not in doc:
            raise Refusal(409, "settings: there is no [attendant] table in the file")
        t = doc["attendant"]
        for key, value in body.items():
            if key == "options" and isinstance(value, dict):
                inline = tomlkit.inline_table()
                inline.update(value)
                t["options"] = inline
            else:
                _set(t, key, value)
    _edit(portal, change, who, f"attendant: {', '.join(sorted(body))}")
    return {"changed": sorted(body)}
