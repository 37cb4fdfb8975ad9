"""Who is calling: one `CallerId` type for what the listener decodes, what a modem
reports and what the store keeps with a message.

Caller ID is whatever the far end (or anyone on the line) chose to send, so its text is
cleaned here, at the source: control characters (ESC sequences that repaint a terminal,
CR/LF that would forge e-mail header lines) never travel further.
"""

import unicodedata
from dataclasses import asdict, dataclass

ABSENT = ("O", "P")          # out of area, private (GR-30-CORE / ETSI EN 300 659)
FIELDS = ("number", "name", "number_absent", "name_absent")


def clean_text(value) -> str | None:
    """``value`` as printable text (control and format characters dropped), or None."""
    if value is None:
        return None
    text = "".join(ch for ch in str(value)
                   if unicodedata.category(ch)[0] != "C" or ch == " ").strip()
    return text or None


@dataclass(frozen=True, slots=True)
class CallerId:
    """The caller as presented: number and name, or why each is absent."""

    number: str | None = None
    name: str | None = None
    number_absent: str | None = None     # "O" out of area, "P" private
    name_absent: str | None = None
    datetime: str | None = None          # MMDDHHMM as sent, when sent
    extension: str | None = None         # the SIP extension that calls (an IP phone)

    @classmethod
    def from_fields(cls, fields: dict | None) -> "CallerId":
        """From a mapping with some of the FIELDS (a listener event, a modem's report),
        cleaned of control characters."""
        fields = fields or {}

        def absent(key):
            v = fields.get(key)
            return v if v in ABSENT else None

        return cls(number=clean_text(fields.get("number")), name=clean_text(fields.get("name")),
                   number_absent=absent("number_absent"), name_absent=absent("name_absent"),
                   datetime=clean_text(fields.get("datetime")))

    def fields(self) -> dict:
        """The four transcript/report fields (contract §5 `callerid`)."""
        d = asdict(self)
        return {k: d[k] for k in FIELDS}


def blocked_by(callerid: "CallerId | None", patterns) -> str | None:
    """The first of a line's ``block`` patterns that the caller matches, else None: a
    number (its digits: "+1 555-123" matches "1555123"), a prefix ending in "*", or
    "withheld" (the number withheld or out of area: caller ID said why it is absent)."""
    if callerid is None or not patterns:
        return None
    digits = "".join(c for c in (callerid.number or "") if c.isdigit())
    for p in patterns:
        if p == "withheld":
            if not digits and callerid.number_absent is not None:
                return p
            continue
        want = p.lstrip("+")
        if not digits:
            continue
        if want.endswith("*") and digits.startswith(want[:-1]) or digits == want:
            return p
    return None
