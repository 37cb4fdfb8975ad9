"""The shape of the message database, checked when it is loaded.

A ``db.json`` that is valid JSON but not a database (``{"messages": []}``, a record
without ``state``, an id that is not a number) would crash every command that reads
it; :func:`db_problem` says what is wrong, and the storage then treats the file like a
damaged one (the backup, then the audio files). A record whose ``state`` is a string
this Linebox does not know is kept: it is logged and listed, never dropped.
"""

from numbers import Real

from linebox.voicemail.storebase import is_id

_STR_OR_NONE = ("caller_number", "caller_name", "received", "prev_state")
_NUM_OR_NONE = ("saved_at", "heard_at", "trashed_at")


def db_problem(data: dict) -> str | None:
    """What is wrong with the shape of a loaded database, or None."""
    for name, table in data.items():
        if not isinstance(table, dict):
            return f"table {name!r} is not an object"
        for key, doc in table.items():
            if not is_id(key):
                return f"table {name!r}: document id {key[:20]!r} is not a number"
            if not isinstance(doc, dict):
                return f"table {name!r}: document {key} is not an object"
    for key, rec in data.get("messages", {}).items():
        problem = record_problem(key, rec)
        if problem is not None:
            return f"message {key}: {problem}"
    meta = data.get("meta", {}).get("1")
    if meta is not None:
        return meta_problem(meta)
    return None


def record_problem(key: str, rec: dict) -> str | None:
    mid = rec.get("id")
    if not is_id(mid) or int(mid) != int(key):
        return "id is missing or not its number"
    for field in ("box", "state"):
        v = rec.get(field)
        if not isinstance(v, str) or not v:
            return f"{field} is missing or not a string"
    if not is_id(rec["box"]):
        return "box is not a box number"
    if not _number(rec.get("received_ts")):
        return "received_ts is missing or not a number"
    if "seconds" in rec and not _number(rec["seconds"]):
        return "seconds is not a number"
    if "line" in rec and rec["line"] is not None and not isinstance(rec["line"], int):
        return "line is not a number"
    for field in _STR_OR_NONE:
        if rec.get(field) is not None and not isinstance(rec[field], str):
            return f"{field} is not a string"
    for field in _NUM_OR_NONE:
        if rec.get(field) is not None and not _number(rec[field]):
            return f"{field} is not a number"
    return None


def meta_problem(meta: dict) -> str | None:
    if "next_id" in meta and (not isinstance(meta["next_id"], int) or isinstance(meta["next_id"], bool)
                              or meta["next_id"] < 1):
        return "meta: next_id is not a positive integer"
    for field in ("last_deleted", "logins", "pending_notify"):
        if field in meta and not isinstance(meta[field], dict | list):
            return f"meta: {field} is not an object"
    return None


def _number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)
