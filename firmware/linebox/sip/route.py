"""Record-Route and Route (RFC 3261 §12.1.1, §12.2.1.1, §16.12): when a proxy stays in
the path of a dialog, the requests we send inside it go through that proxy.

The route set is the request's Record-Route values in their order (we are the UAS); our
2xx copies them back. A request inside the dialog then names the phone's Contact as its
Request-URI and carries the route set as Route headers when the first proxy is a loose
router (``;lr``); for a strict router the first route becomes the Request-URI and the
Contact goes last in the Route list. It is sent to the first route's address.
"""

import ipaddress

from linebox.sip.message import SipParseError, parse_address, split_commas
from linebox.sip.transport import Peer

MAX_ROUTES = 8          # a longer Record-Route is refused with 400 (an office has one proxy)


def route_set(record_routes: list[str]) -> tuple[str, ...]:
    """The dialog's route set from the request's Record-Route header values; raises
    SipParseError for a value that is not a SIP name-addr, or too many of them."""
    out = []
    for value in record_routes:
        for part in split_commas(value):
            addr = parse_address(part)
            if not part.strip().startswith("<"):
                raise SipParseError("Record-Route without <>")
            out.append(f"<{addr.uri.text}>")
    if len(out) > MAX_ROUTES:
        raise SipParseError("too many Record-Route entries")
    return tuple(out)


def request_target(route: tuple[str, ...], target: str) -> tuple[str, list[str]]:
    """(Request-URI, Route header values) for a request to ``target`` over ``route``."""
    if not route:
        return target, []
    first = parse_address(route[0]).uri
    if "lr" in first.params:
        return target, list(route)
    # A strict router (RFC 2543): its URI is the Request-URI, without its parameters'
    # headers; the remote target goes last (RFC 3261 §12.2.1.1).
    return first.text.split("?", 1)[0], [*route[1:], f"<{target}>"]


def next_hop(route: tuple[str, ...], peer: Peer) -> Peer:
    """Where a request over ``route`` goes: the first route's address and port over UDP
    when it is an IPv4 address; where the dialog's requests came from otherwise (a TCP
    connection, a name we do not resolve on the SIP thread)."""
    if not route or peer.transport != "UDP":
        return peer
    uri = parse_address(route[0]).uri
    try:
        host = str(ipaddress.IPv4Address(uri.host))
    except ValueError:
        return peer
    if uri.params.get("transport", "udp").lower() != "udp":
        return peer
    return Peer("UDP", (host, uri.port or 5060))
