"""Caller ID as a voice modem reports it on-hook (``AT+VCID=1``, formatted).

The modem prints one field a line between the first and second ``RING``:
``DATE = 0321``, ``TIME = 1405``, ``NMBR = 5551234567``, ``NAME = JOHN DOE`` (USR and
Conexant, callattendant's parser and NCID's ncidd logs; some firmware writes ``NMBR=...``
without spaces), ``P``/``O`` for private/unavailable, and ``MESG = <hex>`` for a message
it could not format. The lines become one ``CallerId`` at the next RING or after
``quiet`` seconds without another field.
"""

import re

from linebox.caller import CallerId
from linebox.dsp.callerid import parse_message

CALLERID_LINE = re.compile(r"^(DATE|TIME|NMBR|NAME|MESG|DDN_NMBR)\s*=\s*(.*)$")


def callerid_fact(fields: dict[str, str]) -> CallerId:
    """The caller ID from a block of ``+VCID=1`` lines (keys DATE, NMBR, ...)."""
    out = {"number": None, "name": None, "number_absent": None, "name_absent": None}
    mesg = fields.get("MESG", "").replace(" ", "")
    if mesg:
        try:
            parsed = parse_message(bytes.fromhex(mesg))
        except ValueError:
            parsed = None
        if parsed:
            for key in out:
                out[key] = parsed[key]
    number = fields.get("NMBR", fields.get("DDN_NMBR"))
    if number:
        if number in ("P", "O"):
            out["number_absent"], out["number"] = number, None
        else:
            out["number"] = number
    name = fields.get("NAME")
    if name:
        if name in ("P", "O"):
            out["name_absent"], out["name"] = name, None
        else:
            out["name"] = name
    return CallerId.from_fields(out)


class CallerIdGatherer:
    """Collects the field lines of one caller ID; ``due(now)`` says when it is complete."""

    def __init__(self, quiet: float) -> None:
        self.quiet = quiet
        self._fields: dict[str, str] = {}
        self._at = 0.0

    def feed(self, line: str, now: float) -> bool:
        """Take ``line`` if it is a caller-ID field; True if it was one."""
        m = CALLERID_LINE.match(line)
        if not m:
            return False
        self._fields[m[1]] = m[2].strip()
        self._at = now
        return True

    @property
    def pending(self) -> bool:
        return bool(self._fields)

    def due(self, now: float) -> bool:
        return bool(self._fields) and now - self._at >= self.quiet

    def take(self) -> CallerId:
        fields, self._fields = self._fields, {}
        return callerid_fact(fields)

    def clear(self) -> None:
        self._fields = {}
