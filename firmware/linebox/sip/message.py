"""SIP messages (RFC 3261 §7, §20, §25): a strict, size-limited parser and a builder.

Everything a phone sends passes through ``parse`` first; it either returns a message
whose mandatory headers are present and well formed, or raises ``SipParseError`` (the
server answers 400 when it can, else drops the datagram). Nothing here does I/O.
"""

import re
from dataclasses import dataclass, field

MAX_MESSAGE = 8192          # bytes; a REGISTER or INVITE from a phone is 1-3 kB
MAX_HEADERS = 64
MAX_HEADER_LINE = 2048
MAX_BODY = 4096             # an SDP offer is well under this

# RFC 3261 §7.3.3 compact forms, plus RFC 6665's o (Event).
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
           "l": "content-length", "c": "content-type", "k": "supported", "s": "subject",
           "e": "content-encoding", "o": "event", "u": "allow-events", "r": "refer-to"}
REQUIRED = ("via", "from", "to", "call-id", "cseq")
SINGLE = ("from", "to", "call-id", "cseq", "content-length", "max-forwards", "expires")

_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_METHOD = _TOKEN
_REQUEST_LINE = re.compile(r"([A-Za-z0-9.!%*_+`'~-]+) (sips?:[^ ]+) SIP/2\.0")
_STATUS_LINE = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9]) ([^\r\n]*)")
_HEADER_NAME = _TOKEN
_CSEQ = re.compile(r"([0-9]{1,10})\s+([A-Za-z0-9.!%*_+`'~-]+)")
_VIA = re.compile(r"SIP\s*/\s*2\.0\s*/\s*(UDP|TCP|TLS|WS|WSS|SCTP)\s+([^\s;]+)\s*(;.*)?", re.I)
_NAME_ADDR = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"\s*|([^<"]*?)\s*)?<([^>]*)>\s*(;.*)?')
_SIP_URI = re.compile(r"sips?:(?:([^@;?:]+)(?::[^@;?]*)?@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
                      r"(?::([0-9]{1,5}))?((?:;[^?]*)?)(\?.*)?")


class SipParseError(ValueError):
    """The bytes are not a SIP message this server accepts."""


@dataclass
class Uri:
    """A sip: URI, split (the user part is what the dial plan reads)."""

    user: str | None
    host: str
    port: int | None
    params: dict
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class Address:
    """A From, To or Contact value: display name, URI and header parameters (tag, expires)."""

    name: str | None
    uri: Uri
    params: dict
    text: str


@dataclass
class Via:
    transport: str
    host: str
    port: int | None
    params: dict

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")


@dataclass
class Message:
    """A parsed request or response. Header names are lowercased, full forms."""

    method: str | None = None             # requests
    uri: str | None = None
    status: int | None = None             # responses
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    @property
    def call_id(self) -> str:
        return self.get("call-id")

    @property
    def cseq(self) -> tuple[int, str]:
        m = _CSEQ.fullmatch(self.get("cseq").strip())
        return int(m.group(1)), m.group(2).upper()

    @property
    def vias(self) -> list[Via]:
        return [parse_via(part) for v in self.get_all("via") for part in split_commas(v)]

    @property
    def from_(self) -> Address:
        return parse_address(self.get("from"))

    @property
    def to(self) -> Address:
        return parse_address(self.get("to"))

    def contacts(self) -> list[Address] | str:
        """The Contact values, or "*" (REGISTER un-registering everything)."""
        values = [p for v in self.get_all("contact") for p in split_commas(v)]
        if len(values) == 1 and values[0].strip() == "*":
            return "*"
        return [parse_address(v) for v in values]

    def expires(self) -> int | None:
        v = self.get("expires")
        if v is None:
            return None
        v = v.strip()
        if not v.isdigit() or len(v) > 10:
            raise SipParseError("bad Expires")
        return int(v)


def split_commas(value: str) -> list[str]:
    """Split a header value on commas outside quotes and angle brackets."""
    out, cur, quote, angle, esc = [], [], False, False, False
    for ch in value:
        if esc:
            esc = False
        elif ch == "\\" and quote:
            esc = True
        elif ch == '"':
            quote = not quote
        elif ch == "<" and not quote:
            angle = True
        elif ch == ">" and not quote:
            angle = False
        elif ch == "," and not quote and not angle:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return [p for p in out if p]


def parse_params(text: str | None) -> dict:
    """``;a=1;b`` to {"a": "1", "b": ""}; names lowercased."""
    params: dict = {}
    if not text:
        return params
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.partition("=")
        name = name.strip().lower()
        if not _TOKEN.fullmatch(name):
            raise SipParseError("bad parameter")
        params[name] = value.strip().strip('"')
    return params


def parse_uri(text: str) -> Uri:
    m = _SIP_URI.fullmatch(text.strip())
    if not m:
        raise SipParseError("bad URI")
    port = int(m.group(3)) if m.group(3) else None
    if port is not None and not 0 < port < 65536:
        raise SipParseError("bad port")
    return Uri(user=m.group(1), host=m.group(2).lower(), port=port,
               params=parse_params(m.group(4)), text=text.strip())


def parse_address(text: str | None) -> Address:
    if text is None:
        raise SipParseError("missing address")
    m = _NAME_ADDR.fullmatch(text)
    if m:
        name = m.group(1) if m.group(1) is not None else (m.group(2) or None)
        return Address(name=name, uri=parse_uri(m.group(3)), params=parse_params(m.group(4)),
                       text=text.strip())
    # addr-spec without brackets: parameters after the URI belong to the header.
    uri, sep, rest = text.strip().partition(";")
    return Address(name=None, uri=parse_uri(uri), params=parse_params(rest if sep else None),
                   text=text.strip())


def parse_via(text: str) -> Via:
    m = _VIA.fullmatch(text.strip())
    if not m:
        raise SipParseError("bad Via")
    host, _, port = m.group(2).rpartition(":") if m.group(2).count(":") == 1 else (m.group(2), "", "")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise SipParseError("bad Via port")
    return Via(transport=m.group(1).upper(), host=host or m.group(2), port=int(port) if port else None,
               params=parse_params(m.group(3)))


def parse(data: bytes) -> Message:
    """Parse one whole message (a datagram, or one framed from a TCP stream)."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError("message too large")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise SipParseError("no end of headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("headers not UTF-8") from None
    if "\x00" in text:
        raise SipParseError("NUL in headers")
    lines = text.split("\r\n")
    msg = _start_line(lines[0])
    _headers(msg, lines[1:])
    length = msg.get("content-length")
    if length is not None:
        length = length.strip()
        if not length.isdigit() or int(length) > MAX_BODY:
            raise SipParseError("bad Content-Length")
        if len(body) < int(length):
            raise SipParseError("body shorter than Content-Length")
        body = body[:int(length)]
    elif len(body) > MAX_BODY:
        raise SipParseError("body too large")
    msg.body = body
    _check(msg)
    return msg


def _start_line(line: str) -> Message:
    if line.startswith("SIP/"):
        m = _STATUS_LINE.fullmatch(line)
        if not m:
            raise SipParseError("bad status line")
        return Message(status=int(m.group(1)), reason=m.group(2))
    m = _REQUEST_LINE.fullmatch(line)
    if not m:
        raise SipParseError("bad request line")
    return Message(method=m.group(1).upper(), uri=m.group(2))


def _headers(msg: Message, lines: list[str]) -> None:
    for line in lines:
        if len(line) > MAX_HEADER_LINE:
            raise SipParseError("header line too long")
        if line[:1] in (" ", "\t"):
            if not msg.headers:
                raise SipParseError("continuation without a header")
            k, v = msg.headers[-1]
            msg.headers[-1] = (k, v + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not _HEADER_NAME.fullmatch(name):
            raise SipParseError("bad header line")
        msg.headers.append((COMPACT.get(name, name), value.strip()))
        if len(msg.headers) > MAX_HEADERS:
            raise SipParseError("too many headers")


def _check(msg: Message) -> None:
    for name in REQUIRED:
        if msg.get(name) is None:
            raise SipParseError(f"missing {name}")
    for name in SINGLE:
        if len(msg.get_all(name)) > 1:
            raise SipParseError(f"more than one {name}")
    if not _CSEQ.fullmatch(msg.get("cseq").strip()):
        raise SipParseError("bad CSeq")
    cid = msg.call_id
    if not cid or len(cid) > 256 or any(c.isspace() for c in cid):
        raise SipParseError("bad Call-ID")
    if not msg.vias:
        raise SipParseError("no Via")
    parse_address(msg.get("from"))     # raises if From or To is not an address
    parse_address(msg.get("to"))
    if msg.is_request:
        parse_uri(msg.uri)
        if msg.cseq[1] != msg.method:
            raise SipParseError("CSeq method differs from the request's")
        mf = msg.get("max-forwards")
        if mf is not None and not mf.strip().isdigit():
            raise SipParseError("bad Max-Forwards")


def build(start: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    """A message on the wire; Content-Length is added here."""
    lines = [start] + [f"{k}: {v}" for k, v in headers] + [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("utf-8") + body


# Header names as they are written on the wire.
CANONICAL = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq",
             "record-route": "Record-Route"}


def response(req: Message, status: int, reason: str, extra: list[tuple[str, str]] = (),
             to_tag: str | None = None, body: bytes = b"", received: tuple | None = None) -> bytes:
    """A response to ``req`` (RFC 3261 §8.2.6): its Via (with received/rport filled in
    for RFC 3581), From, To (with our tag), Call-ID and CSeq."""
    headers = []
    first = True
    for k, v in req.headers:
        if k == "via":
            for part in split_commas(v):
                if first and received is not None:
                    part = _fill_rport(part, received)
                first = False
                headers.append(("Via", part))
        elif k in ("from", "call-id", "cseq"):
            headers.append((CANONICAL[k], v))
        elif k == "to":
            if to_tag and "tag=" not in v.lower():
                v = f"{v};tag={to_tag}"
            headers.append(("To", v))
    headers += list(extra)
    return build(f"SIP/2.0 {status} {reason}", headers, body)


def _fill_rport(via: str, received: tuple) -> str:
    """RFC 3581 §4: answer where the request came from."""
    host, port = received
    parts = via.split(";")
    out = [parts[0]]
    has_rport = False
    for p in parts[1:]:
        name = p.split("=", 1)[0].strip().lower()
        if name == "rport":
            out.append(f"rport={port}")
            has_rport = True
        elif name != "received":
            out.append(p)
    if has_rport or parse_via(via).host != host:
        out.append(f"received={host}")
    return ";".join(out)
