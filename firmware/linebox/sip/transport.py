"""SIP over UDP and TCP on one port (RFC 3261 §18): datagrams, and a TCP stream framed
by Content-Length. A `Peer` says where a message came from and how to answer it."""

import socket
from dataclasses import dataclass

from linebox.sip.message import MAX_MESSAGE

MAX_TCP_CONNECTIONS = 64


@dataclass(frozen=True)
class Peer:
    """Where a message came from: ``transport`` "UDP" or "TCP", the source address."""

    transport: str
    addr: tuple


class TcpConnection:
    """One phone's TCP connection: bytes in, whole messages out."""

    def __init__(self, sock: socket.socket, addr: tuple) -> None:
        self.sock = sock
        self.addr = addr
        self.buf = b""

    def feed(self, data: bytes) -> list[bytes] | None:
        """Whole messages now complete; None when the stream is not SIP (close it)."""
        self.buf += data
        out = []
        while True:
            self.buf = self.buf.lstrip(b"\r\n")      # RFC 5626 keep-alive CRLFs
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return None if len(self.buf) > MAX_MESSAGE else out
            length = 0
            for line in self.buf[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() in (b"content-length", b"l"):
                    if not value.strip().isdigit():
                        return None
                    length = int(value.strip())
            total = end + 4 + length
            if total > MAX_MESSAGE:
                return None
            if len(self.buf) < total:
                return out
            out.append(self.buf[:total])
            self.buf = self.buf[total:]


def local_address_for(remote_host: str, bound_host: str) -> str:
    """The address a phone reaches us at: the bound one, or (bound to 0.0.0.0) the one
    the kernel would route from toward that phone."""
    if bound_host not in ("0.0.0.0", ""):
        return bound_host
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((remote_host, 9))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
