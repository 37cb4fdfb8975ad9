"""Linebox as a gateway behind a PBX (``[sip] mode = "trunk"``, issue 12 "Beyond one box").

Everything here runs on the SIP service's own thread (sip/server.py hands over what
concerns it), except `TrunkPhones.ring`, which the lines call and which hands over too:

- `Registration`: REGISTER to the PBX with the gateway's account (RFC 3261 §10.2),
  answering a 401/407 digest challenge (RFC 2617 / RFC 7616: MD5 or MD5-sess, qop=auth
  or none), refreshing before the granted lifetime runs out, backing off after a failure
  (credentials refused, no answer, 5xx). Its state is logged, published as a
  ``trunk_state`` event (retained on MQTT at ``.../trunk/state``); `probe` is
  ``linebox hwcheck``'s look at the PBX.
- `PbxCalls` / `PbxInvite`: the UAC INVITE to the PBX, with the credentials on a
  407/401, CANCEL, the ACK of every final answer, and the dialog's route set (the 2xx's
  Record-Route reversed, RFC 3261 §12.1.2).
- `TrunkPhones`: the gateway's `Phones` in trunk mode: every line's call rings its
  ``inbound_uri`` (the line's own, else ``[sip]``'s), once the caller ID came (or 4.5 s
  of the line's clock after the first ring), with it as the From display name and user
  and as a P-Asserted-Identity (RFC 3325; a withheld number: the anonymous From and
  ``Privacy: id``, RFC 3323); the PBX's answer is bridged to the line (gateway/bridge.py).
- `Trunk.on_invite`: calls from the PBX: only from its addresses (`TrunkGate`; everyone
  else 403); a box number leaves a message, any other number goes out through a free
  line by the gateway's outbound route (gateway/outbound.py, sip/outcall.py).

Transport (``[sip] transport``): UDP on the service's socket (what every PBX offers a
gateway), or TCP: `PbxLink` opens a connection to the registrar/proxy and hands it to the
service's own TCP machinery (its selector, stream framing and `send`), so the PBX's
answers and requests on it are read as a phone's are; the Contact says
``;transport=tcp``, so the PBX sends its calls over TCP too (on this connection or to
the service's TCP listener).
"""

import hashlib
import logging
import secrets
import selectors
import socket
import time
import urllib.parse
from dataclasses import dataclass, field

from linebox import events as ev_
from linebox.backoff import Backoff
from linebox.caller import CallerId
from linebox.gateway.phones import Phones, RingAttempt
from linebox.sip import message as sipmsg
from linebox.sip.auth import parse_authorization
from linebox.sip.message import Message, SipParseError
from linebox.sip.transport import Peer, TcpConnection, local_address_for

log = logging.getLogger(__name__)

T1, T2 = 0.5, 4.0                    # RFC 3261 §17.1.1.1
TIMER_64T1 = 64 * T1
MAX_AUTH_TRIES = 2                   # a second challenge to fresh credentials = refused
REFRESH_MARGIN = 0.5                 # a short registration is refreshed halfway (refresh_after)
USER_AGENT = "Linebox gateway"
TCP_CONNECT_TIMEOUT = 2.0            # the SIP thread waits this long for the PBX's SYN-ACK


# ================================================================ digest (client side)
def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


@dataclass
class Credentials:
    """The gateway's account: ``password``, or ``ha1`` made with the PBX's realm."""

    username: str
    password: str | None = None
    ha1: str | None = None

    def ha1_for(self, realm: str) -> str:
        if self.password is not None:
            return md5(f"{self.username}:{realm}:{self.password}")
        return self.ha1


def parse_challenge(value: str | None) -> dict | None:
    """A ``WWW-Authenticate`` / ``Proxy-Authenticate`` Digest challenge as a dict."""
    if not value:
        return None
    p = parse_authorization(value)
    if p is None or "nonce" not in p or "realm" not in p:
        return None
    return p


def digest_authorization(challenge: dict, creds: Credentials, method: str, uri: str,
                         nc: int = 1, cnonce: str | None = None) -> str:
    """The ``Authorization`` value answering ``challenge`` (RFC 2617 §3.2.2): MD5 or
    MD5-sess, qop=auth when offered, else the RFC 2069 form. ValueError for anything
    else (qop=auth-int only, SHA-256 only)."""
    algorithm = challenge.get("algorithm", "MD5")
    if algorithm.upper() not in ("MD5", "MD5-SESS"):
        raise ValueError(f"the PBX asks for digest algorithm {algorithm} (only MD5 is supported)")
    realm, nonce = challenge["realm"], challenge["nonce"]
    qops = [q.strip().lower() for q in challenge.get("qop", "").split(",") if q.strip()]
    if qops and "auth" not in qops:
        raise ValueError(f"the PBX asks for qop {challenge.get('qop')} (only auth is supported)")
    cnonce = cnonce or secrets.token_hex(8)
    ha1 = creds.ha1_for(realm)
    if algorithm.upper() == "MD5-SESS":
        ha1 = md5(f"{ha1}:{nonce}:{cnonce}")
    ha2 = md5(f"{method}:{uri}")
    parts = [f'username="{creds.username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if qops:
        nc_text = f"{nc:08x}"
        response = md5(f"{ha1}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}")
        parts += [f'response="{response}"', f"algorithm={algorithm}", f'cnonce="{cnonce}"',
                  "qop=auth", f"nc={nc_text}"]
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
        parts += [f'response="{response}"', f"algorithm={algorithm}"]
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(parts)


def challenge_of(resp: Message) -> tuple[str, dict] | None:
    """(header to answer with, challenge) of a 401 or 407, or None."""
    if resp.status == 401:
        c = parse_challenge(resp.get("www-authenticate"))
        return ("Authorization", c) if c else None
    if resp.status == 407:
        c = parse_challenge(resp.get("proxy-authenticate"))
        return ("Proxy-Authorization", c) if c else None
    return None


# ================================================================ addresses
def uri_target(uri: str) -> tuple[str, int]:
    """(host, port) a sip: URI sends to (UDP, default port 5060)."""
    u = sipmsg.parse_uri(uri)
    return u.host.strip("[]"), u.port or 5060


def sip_user(number: str) -> str:
    """A caller ID number as a SIP URI's user part (RFC 3261 §25.1: ``#`` and anything
    but the user's unreserved characters escaped)."""
    return urllib.parse.quote(number, safe="-_.!~*'()&=+$,;?/")


def display_name(name: str | None) -> str:
    """``"NAME" `` for a From or P-Asserted-Identity, or "" (quotes and backslashes
    dropped: a caller ID name is no place for escapes)."""
    if not name:
        return ""
    safe = name.replace("\\", "").replace('"', "")[:64]
    return f'"{safe}" '


def resolve(host: str, port: int) -> tuple[str, int] | None:
    """The IPv4 address of ``host``; None when the name does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return None
    return (infos[0][4][0], port) if infos else None


def refresh_after(granted: int) -> float:
    """When to refresh a registration granted for ``granted`` seconds: halfway for a
    short one, a minute before the end for a long one (ASSUMED: what desk phones do)."""
    return max(granted * REFRESH_MARGIN, granted - 60.0) if granted > 120 else granted * REFRESH_MARGIN


# ================================================================ client transactions
@dataclass
class ClientTxn:
    """A request we sent: retransmitted over UDP (Timer A/E) until answered, given up
    after 64*T1 (Timer B/F: the answer is None)."""

    branch: str
    data: bytes
    peer: Peer
    method: str
    on_response: object                  # callable(Message | None)
    interval: float = T1
    deadline: float = 0.0
    provisional: bool = False            # an INVITE stops resending on a 1xx
    done: bool = False


class Transactions:
    """The trunk's own client transactions on the service's socket and timers."""

    def __init__(self, service) -> None:
        self.service = service
        self.txns: dict[str, ClientTxn] = {}

    def send(self, peer: Peer, method: str, start: str, headers: list, body: bytes, branch: str,
             on_response) -> ClientTxn:
        data = sipmsg.build(start, headers, body)
        svc = self.service
        txn = ClientTxn(branch, data, peer, method, on_response, deadline=svc.clock() + TIMER_64T1)
        self.txns[branch] = txn
        svc.send(peer, data)

        def again():
            if txn.done:
                return
            if svc.clock() >= txn.deadline:
                txn.done = True
                self.txns.pop(branch, None)
                on_response(None)
                return
            if not txn.provisional and peer.transport == "UDP":
                svc.send(peer, data)            # a reliable transport resends nothing (§17.1.1.2)
            txn.interval = txn.interval * 2 if method == "INVITE" else min(2 * txn.interval, T2)
            svc._at(min(txn.interval, max(0.0, txn.deadline - svc.clock())), again)
        svc._at(T1, again)
        return txn

    def response(self, resp: Message) -> bool:
        """Hand ``resp`` to its transaction; False when it is not one of ours."""
        txn = self.txns.get(resp.vias[0].branch or "")
        if txn is None:
            return False
        if resp.cseq[1] != txn.method:
            return True
        if resp.status < 200:
            txn.provisional = True
            if txn.method == "INVITE":
                txn.deadline = float("inf")    # Timer C's job: the caller decides how long to ring
        elif txn.method == "INVITE" and resp.status < 300:
            # A 2xx the ACK did not reach comes again: keep taking it (each is ACKed
            # again) for 64*T1, RFC 3261 §13.2.2.4.
            if not txn.done:
                txn.done = True
                self.service._at(TIMER_64T1, lambda: self.txns.pop(txn.branch, None))
        else:
            txn.done = True
            self.txns.pop(txn.branch, None)
        txn.on_response(resp)
        return True


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(10)


class PbxLink:
    """How the trunk reaches the PBX at an address: over UDP, the service's socket; over
    TCP (``transport = "tcp"``), a connection Linebox opens (once, and again after the
    PBX closed it), adopted by the service like an accepted one: its selector reads it,
    its framing splits the stream, ``service.send`` writes to it by the PBX's address."""

    def __init__(self, service, transport: str) -> None:
        self.service = service
        self.transport = transport.upper()

    def via(self, host: str, branch: str) -> str:
        return f"SIP/2.0/{self.transport} {host}:{self.service.port};branch={branch};rport"

    def uri_params(self) -> str:
        """What the Contact's URI adds: how the PBX reaches us back (RFC 3261 §19.1.1)."""
        return ";transport=tcp" if self.transport == "TCP" else ""

    def peer(self, target: tuple[str, int]) -> tuple[Peer | None, str]:
        """(the peer to send to, "") or (None, why it cannot be reached)."""
        if self.transport == "UDP":
            return Peer("UDP", target), ""
        svc = self.service
        if target in svc.tcp:
            return Peer("TCP", target), ""
        bound = svc.cfg.host
        try:
            # ASSUMED: a PBX on the LAN answers a SYN at once; a dead one costs the SIP
            # thread TCP_CONNECT_TIMEOUT per attempt, which the backoff spaces out.
            sock = socket.create_connection(target, timeout=TCP_CONNECT_TIMEOUT,
                                            source_address=(bound, 0) if bound not in ("", "0.0.0.0") else None)
        except OSError as e:
            return None, f"cannot connect to {target[0]}:{target[1]} over TCP: {e.strerror or e}"
        sock.setblocking(False)
        conn = TcpConnection(sock, target)
        svc.tcp[target] = conn
        svc.sel.register(sock, selectors.EVENT_READ, conn)
        log.info("connected to the PBX at %s:%d over TCP", *target)
        return Peer("TCP", target), ""


# ================================================================ registration
class Registration:
    """Linebox's registration at the PBX. States: ``registering``, ``registered``,
    ``failed`` (retrying after a backoff), ``stopped``."""

    def __init__(self, service, trunk_cfg, txns: Transactions) -> None:
        self.service = service
        self.cfg = trunk_cfg
        self.txns = txns
        self.link = PbxLink(service, trunk_cfg.transport)
        self.creds = Credentials(trunk_cfg.username, trunk_cfg.password, trunk_cfg.ha1)
        self.uri = trunk_cfg.registrar
        host, port = uri_target(self.uri)
        self.registrar_host, self.registrar_port = host, port
        self.aor = f"sip:{trunk_cfg.username}@{host}"
        self.call_id = secrets.token_hex(12) + "@linebox"
        self.from_tag = secrets.token_hex(6)
        self.cseq = secrets.randbelow(1000) + 1
        self.requested = trunk_cfg.expires
        self.state = "stopped"
        self.reason = ""
        self.granted = 0
        self.expires_at = 0.0
        self.backoff = Backoff(first=5.0, limit=300.0)
        self.peer: Peer | None = None
        self._generation = 0              # timers of an older cycle do nothing
        self._auth_tries = 0
        self._last_nonce: str | None = None
        self._challenge: tuple[str, dict] | None = None   # the last one, answered again
        self._nc = 0

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._set_state("registering", "")
        self._register()

    def stop(self) -> None:
        """Un-register (Expires: 0), best effort: the answer is not waited for."""
        was = self.state
        self._generation += 1
        self._set_state("stopped", "shutdown")
        if was == "registered" and self.peer is not None:
            self._send(expires=0, auth=None)

    # -- sending -------------------------------------------------------------------------
    def contact(self) -> str:
        host = local_address_for(self.peer.addr[0], self.service.cfg.host)
        return f"<sip:{self.cfg.username}@{host}:{self.service.port}{self.link.uri_params()}>"

    def _register(self, auth: tuple[str, str] | None = None) -> None:
        target = resolve(self.registrar_host, self.registrar_port)
        if target is None:
            self._failed(f"cannot resolve {self.registrar_host}")
            return
        peer, why = self.link.peer(target)
        if peer is None:
            self._failed(why)
            return
        self.peer = peer
        self._send(self.requested, auth)

    def _send(self, expires: int, auth: tuple[str, str] | None) -> None:
        if auth is None and self._challenge is not None:
            # Answer the last challenge again (next nonce count): a refresh or the
            # un-registering at shutdown then needs no extra round trip.
            self._nc += 1
            header, challenge = self._challenge
            try:
                auth = (header, digest_authorization(challenge, self.creds, "REGISTER", self.uri, nc=self._nc))
            except ValueError:
                auth = None
        self.cseq += 1
        host = local_address_for(self.peer.addr[0], self.service.cfg.host)
        branch = new_branch()
        headers = [
            ("Via", self.link.via(host, branch)),
            ("Max-Forwards", "70"),
            ("From", f"<{self.aor}>;tag={self.from_tag}"), ("To", f"<{self.aor}>"),
            ("Call-ID", self.call_id), ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", self.contact()), ("Expires", str(expires)),
            ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"), ("User-Agent", USER_AGENT)]
        if auth is not None:
            headers.append(auth)
        generation = self._generation
        self.txns.send(self.peer, "REGISTER", f"REGISTER {self.uri} SIP/2.0", headers, b"", branch,
                       lambda resp: self._answered(resp, generation, expires))

    # -- answers -------------------------------------------------------------------------
    def _answered(self, resp: Message | None, generation: int, expires: int) -> None:
        if generation != self._generation or expires == 0:
            return
        if resp is None:
            self._failed(f"no answer from {self.peer.addr[0]}:{self.peer.addr[1]}")
            return
        status = resp.status
        if status < 200:
            return
        if status < 300:
            self._registered(resp)
            return
        ch = challenge_of(resp)
        if ch is not None:
            header, challenge = ch
            stale = challenge.get("stale", "").lower() == "true"
            if self._auth_tries >= MAX_AUTH_TRIES or (self._last_nonce == challenge["nonce"] and not stale):
                self._failed(f"the PBX refused the credentials of {self.cfg.username!r} ({status})",
                             refused=True)
                return
            self._auth_tries += 1
            self._last_nonce = challenge["nonce"]
            self._challenge, self._nc = (header, challenge), 0
            self._send(self.requested, None)
            return
        if status == 423:
            try:
                floor = int((resp.get("min-expires") or "").strip())
            except ValueError:
                floor = 0
            if self.requested < floor <= 86400:
                log.info("registrar wants at least %d s; asking again", floor)
                self.requested = floor
                self._send(self.requested, None)
                return
        retry = None
        if status in (500, 503):
            try:
                retry = float((resp.get("retry-after") or "").split(";")[0].strip())
            except ValueError:
                retry = None
        if status == 403 and self._auth_tries:
            self._failed(f"the PBX refused the credentials of {self.cfg.username!r} ({status} {resp.reason})",
                         refused=True)
            return
        self._failed(f"{status} {resp.reason}", refused=status in (401, 403, 407), retry=retry)

    def _granted(self, resp: Message) -> int:
        ours = self.contact()[1:-1]
        try:
            contacts = resp.contacts()
        except SipParseError:
            contacts = []
        if contacts != "*":
            for c in contacts:
                if c.uri.text == ours and c.params.get("expires", "").isdigit():
                    return int(c.params["expires"])
        try:
            e = resp.expires()
        except SipParseError:
            e = None
        return self.requested if e is None else e

    def _registered(self, resp: Message) -> None:
        granted = self._granted(resp)
        if granted <= 0:
            self._failed("the registrar kept no binding for our contact")
            return
        self._auth_tries = 0
        self.backoff.reset()
        self.granted = granted
        self.expires_at = self.service.clock() + granted
        self._set_state("registered", f"{granted} s")
        self._generation += 1
        generation = self._generation
        self.service._at(refresh_after(granted), lambda: self._refresh(generation))

    def _refresh(self, generation: int) -> None:
        if generation != self._generation:
            return
        self._auth_tries = 0
        self._register()

    def _failed(self, why: str, refused: bool = False, retry: float | None = None) -> None:
        delay = self.backoff.next()
        if retry is not None:
            delay = max(delay, min(retry, 3600.0))
        if refused:
            delay = max(delay, 60.0)        # a wrong password stays wrong: do not hammer the PBX
        self._auth_tries = 0
        self._last_nonce = None
        self._challenge = None
        self._generation += 1
        generation = self._generation
        if self.state == "registered" and self.service.clock() < self.expires_at:
            log.warning("registration refresh at %s failed: %s (still registered for %d s)",
                        self.uri, why, int(self.expires_at - self.service.clock()))
            delay = min(delay, max(1.0, (self.expires_at - self.service.clock()) / 2))
        else:
            self._set_state("failed", why)
            log.warning("registration at %s failed: %s; trying again in %d s", self.uri, why, delay)
        self.service._at(delay, lambda: self._refresh(generation))

    def _set_state(self, state: str, reason: str) -> None:
        if state == self.state and reason == self.reason:
            return
        changed = state != self.state
        self.state, self.reason = state, reason
        if state == "registered":
            log.info("registered at %s as %s (%s)", self.uri, self.cfg.username, reason)
        if changed:
            self.service.publish({"event": ev_.TRUNK_STATE, "state": state, "registrar": self.uri,
                                  "reason": reason})


# ================================================================ who may call in
class TrunkGate:
    """Only the PBX may send Linebox calls in trunk mode: the addresses the registrar and
    the proxy resolve to (looked up again every few minutes), and ``pbx_addresses``."""

    RESOLVE_EVERY = 300.0

    def __init__(self, trunk_cfg, clock=time.monotonic) -> None:
        self.cfg = trunk_cfg
        self.clock = clock
        self._addresses: set[str] = set()
        self._at = -1e18

    def addresses(self) -> set[str]:
        now = self.clock()
        if now - self._at >= self.RESOLVE_EVERY:
            found = set()
            for uri in (self.cfg.registrar, self.cfg.proxy):
                host, port = uri_target(uri)
                r = resolve(host, port)
                if r is not None:
                    found.add(r[0])
            for a in self.cfg.pbx_addresses:
                r = resolve(a, 5060)
                if r is not None:
                    found.add(r[0])
            if found:
                self._addresses = found
            self._at = now
        return self._addresses

    def allows(self, peer: Peer) -> bool:
        return peer.addr[0] in self.addresses()


# ================================================================ a call to the PBX
@dataclass
class PbxInvite:
    """One INVITE to the PBX. ``on_answer(invite, resp)`` once a 2xx came (the ACK is
    sent); ``on_fail(invite, status, reason)`` for a final error, a timeout (408) or a
    CANCEL that won (487). ``cancel()`` from the SIP thread."""

    uri: str
    from_user: str
    from_name: str | None
    sdp: bytes
    on_answer: object
    on_fail: object
    on_progress: object = None           # callable(invite, resp) for 1xx
    call_id: str = field(default_factory=lambda: secrets.token_hex(12) + "@linebox")
    from_tag: str = field(default_factory=lambda: secrets.token_hex(6))
    cseq: int = field(default_factory=lambda: secrets.randbelow(1000) + 1)
    branch: str = ""
    state: str = "new"                   # calling | early | answered | failed | cancelled
    headers: list = field(default_factory=list)
    to_header: str = ""
    route: list = field(default_factory=list)
    remote_target: str = ""
    remote_tag: str = ""
    auth_tries: int = 0
    cancel_wanted: bool = False
    from_header: str = ""
    session: tuple = ()                  # (host, port) our SDP offered
    asserted: bool = False               # P-Asserted-Identity with the From's number
    asserted_name: str | None = None     # ... and this name (None: no display name)
    anonymous: bool = False              # withheld: anonymous From, Privacy: id
    identity: list = field(default_factory=list)   # the headers those make (every INVITE)


class PbxCalls:
    """INVITEs to the PBX through the proxy, with the gateway's credentials."""

    def __init__(self, service, trunk_cfg, txns: Transactions) -> None:
        self.service = service
        self.cfg = trunk_cfg
        self.txns = txns
        self.link = PbxLink(service, trunk_cfg.transport)
        self.creds = Credentials(trunk_cfg.username, trunk_cfg.password, trunk_cfg.ha1)
        self.host, self.port = uri_target(trunk_cfg.proxy)
        self.peer: Peer | None = None
        self.domain = uri_target(trunk_cfg.registrar)[0]

    def local_host(self) -> str:
        return local_address_for(self.peer.addr[0], self.service.cfg.host)

    def invite(self, inv: PbxInvite) -> PbxInvite:
        target = resolve(self.host, self.port)
        if target is None:
            inv.state = "failed"
            inv.on_fail(inv, 503, f"cannot resolve {self.host}")
            return inv
        peer, why = self.link.peer(target)
        if peer is None:
            inv.state = "failed"
            inv.on_fail(inv, 503, why)
            return inv
        self.peer = peer
        inv.to_header = f"<{inv.uri}>"
        if inv.anonymous:
            # RFC 3323 §4.1.1.3: the anonymous From; "id" asks the PBX to show no identity
            # (nobody has one to show: the exchange withheld the number). No
            # P-Asserted-Identity then: there is nothing to assert.
            inv.from_header = f'"Anonymous" <sip:anonymous@anonymous.invalid>;tag={inv.from_tag}'
            inv.identity = [("Privacy", "id")]
        else:
            identity = f"<sip:{sip_user(inv.from_user)}@{self.domain}>"
            name = display_name(inv.from_name)
            inv.from_header = f"{name}{identity};tag={inv.from_tag}"
            # RFC 3325 §9.1: the identity the gateway asserts to its trust domain (the
            # PBX): the analog caller ID. Asterisk's chan_pjsip takes it with
            # trust_id_inbound = yes (else it reads the From, which says the same).
            inv.identity = [("P-Asserted-Identity", f"{display_name(inv.asserted_name)}{identity}")] \
                if inv.asserted else []
        inv.state = "calling"
        self._send_invite(inv, None)
        return inv

    def _send_invite(self, inv: PbxInvite, auth) -> None:
        inv.cseq += 1
        inv.branch = new_branch()
        host = self.local_host()
        headers = [
            ("Via", self.link.via(host, inv.branch)),
            ("Max-Forwards", "70"), ("From", inv.from_header), ("To", inv.to_header),
            ("Call-ID", inv.call_id), ("CSeq", f"{inv.cseq} INVITE"),
            ("Contact", f"<sip:{self.cfg.username}@{host}:{self.service.port}{self.link.uri_params()}>"),
            ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE"),
            *inv.identity, ("User-Agent", USER_AGENT), ("Content-Type", "application/sdp")]
        if auth is not None:
            headers.append(auth)
        inv.headers = headers
        self.txns.send(self.peer, "INVITE", f"INVITE {inv.uri} SIP/2.0", headers, inv.sdp, inv.branch,
                       lambda resp, b=inv.branch: self._answered(inv, b, resp))

    def cancel(self, inv: PbxInvite) -> None:
        """RFC 3261 §9.1: CANCEL once a provisional came (before: when it comes)."""
        if inv.state not in ("calling", "early"):
            return
        inv.cancel_wanted = True
        if inv.state == "early":
            self._send_cancel(inv)

    def _send_cancel(self, inv: PbxInvite) -> None:
        via = next(v for k, v in inv.headers if k == "Via")
        headers = [("Via", via), ("Max-Forwards", "70"), ("From", inv.from_header),
                   ("To", inv.to_header), ("Call-ID", inv.call_id), ("CSeq", f"{inv.cseq} CANCEL"),
                   ("User-Agent", USER_AGENT)]
        # The CANCEL has the INVITE's branch; its own transaction is keyed apart.
        data = sipmsg.build(f"CANCEL {inv.uri} SIP/2.0", headers)
        self.service.send(self.peer, data)
        self.service._at(T1, lambda: self._cancel_again(inv, data, T1))

    def _cancel_again(self, inv: PbxInvite, data: bytes, interval: float) -> None:
        if inv.state not in ("early", "calling") or interval > 8 or self.peer.transport != "UDP":
            return
        self.service.send(self.peer, data)
        self.service._at(2 * interval, lambda: self._cancel_again(inv, data, 2 * interval))

    def _ack(self, inv: PbxInvite, resp: Message, for_2xx: bool) -> None:
        host = self.local_host()
        to = resp.get("to")
        if for_2xx:
            # RFC 3261 §13.2.2.4: a new transaction, to the remote target, through the route set.
            headers = [("Via", self.link.via(host, new_branch()))]
            headers += [("Route", r) for r in inv.route]
            start = f"ACK {inv.remote_target or inv.uri} SIP/2.0"
        else:
            # §17.1.1.3: the error's ACK is part of the INVITE transaction.
            via = next(v for k, v in inv.headers if k == "Via")
            headers = [("Via", via)]
            start = f"ACK {inv.uri} SIP/2.0"
        headers += [("Max-Forwards", "70"), ("From", inv.from_header), ("To", to),
                    ("Call-ID", inv.call_id), ("CSeq", f"{inv.cseq} ACK"), ("User-Agent", USER_AGENT)]
        self.service.send(self.peer, sipmsg.build(start, headers))

    def _answered(self, inv: PbxInvite, branch: str, resp: Message | None) -> None:
        if branch != inv.branch and (resp is None or resp.status < 200):
            return
        if resp is None:
            if inv.state in ("calling", "early"):
                inv.state = "failed"
                inv.on_fail(inv, 408, "no answer from the PBX")
            return
        status = resp.status
        if status < 200:
            if status > 100 and inv.state == "calling":
                inv.state = "early"
            if inv.cancel_wanted and inv.state in ("calling", "early"):
                inv.state = "early"
                inv.cancel_wanted = False
                self._send_cancel(inv)
                return
            if inv.on_progress is not None and status > 100:
                inv.on_progress(inv, resp)
            return
        if status < 300:
            first = inv.state in ("calling", "early")
            self._dialog_from(inv, resp)
            self._ack(inv, resp, for_2xx=True)
            if not first:
                if inv.state == "failed":    # it came after we gave up: hang up at once
                    inv.state = "cancelled"
                    self.bye(inv)
                return                       # a retransmitted 200: ACKed again
            if inv.cancel_wanted:
                inv.state = "cancelled"      # the answer crossed our CANCEL: hang up
                self.bye(inv)
                inv.on_fail(inv, 487, "cancelled")
                return
            inv.state = "answered"
            inv.on_answer(inv, resp)
            return
        self._ack(inv, resp, for_2xx=False)
        if branch != inv.branch or inv.state not in ("calling", "early"):
            return
        ch = challenge_of(resp)
        if ch is not None and inv.auth_tries < MAX_AUTH_TRIES and not inv.cancel_wanted:
            inv.auth_tries += 1
            try:
                value = digest_authorization(ch[1], self.creds, "INVITE", inv.uri)
            except ValueError as e:
                log.warning("call to %s: %s", inv.uri, e)
            else:
                inv.state = "calling"
                self._send_invite(inv, (ch[0], value))
                return
        if ch is not None:
            log.warning("call to %s: the PBX refused the credentials of %r (%d)", inv.uri,
                        self.cfg.username, status)
        inv.state = "cancelled" if status == 487 else "failed"
        inv.on_fail(inv, status, resp.reason)

    def _dialog_from(self, inv: PbxInvite, resp: Message) -> None:
        """The dialog's route set (the 2xx's Record-Route, reversed), remote target and tag."""
        rr = [part for v in resp.get_all("record-route") for part in sipmsg.split_commas(v)]
        inv.route = list(reversed(rr))
        try:
            contacts = resp.contacts()
        except SipParseError:
            contacts = []
        if contacts and contacts != "*":
            inv.remote_target = contacts[0].uri.text
        inv.remote_tag = resp.to.params.get("tag", "")

    def bye(self, inv: PbxInvite) -> None:
        inv.cseq += 1
        host = self.local_host()
        branch = new_branch()
        headers = [("Via", self.link.via(host, branch)),
                   *[("Route", r) for r in inv.route], ("Max-Forwards", "70"),
                   ("From", inv.from_header), ("To", f"{inv.to_header};tag={inv.remote_tag}"),
                   ("Call-ID", inv.call_id), ("CSeq", f"{inv.cseq} BYE"), ("User-Agent", USER_AGENT)]
        self.txns.send(self.peer, "BYE", f"BYE {inv.remote_target or inv.uri} SIP/2.0", headers, b"",
                       branch, lambda resp: None)


# ================================================================ the whole trunk
def sdp_offer(host: str, port: int, session_id: int) -> bytes:
    """Our offer to the PBX (RFC 3264 §5): PCMU, PCMA, RFC 4733 events, 20 ms."""
    return "\r\n".join([
        "v=0", f"o=linebox {session_id} {session_id} IN IP4 {host}", "s=Linebox",
        f"c=IN IP4 {host}", "t=0 0", f"m=audio {port} RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15", "a=ptime:20", "a=sendrecv", ""]).encode()


@dataclass
class Caller:
    """Who called in from the PBX, as the flows and events see a caller."""

    number: str
    name: str


class Trunk:
    """``[sip] mode = "trunk"``: the registration, the calls to and from the PBX. Every
    method runs on the SIP thread except `ring` (any thread; it hands over)."""

    def __init__(self, service) -> None:
        self.service = service
        self.cfg = service.cfg.trunk
        self.txns = Transactions(service)
        self.registration = Registration(service, self.cfg, self.txns)
        self.pbx = PbxCalls(service, self.cfg, self.txns)
        self.gate = TrunkGate(self.cfg, service.clock)
        self.phones = TrunkPhones(self)

    @property
    def state(self) -> str:
        return self.registration.state

    def start(self) -> None:
        own = {line.id: line.inbound_uri for line in self.service.config.lines if line.inbound_uri}
        where = ", ".join([f"line {n} to {u}" for n, u in own.items()] +
                          ([f"{'the others' if own else 'all'} to {self.cfg.inbound_uri}"]
                           if self.cfg.inbound_uri else []))
        log.info("trunk mode: gateway %r at %s, analog calls: %s", self.cfg.username,
                 self.cfg.registrar, where)
        self.registration.start()

    def stop(self) -> None:
        self.registration.stop()

    # -- calls from the PBX ------------------------------------------------------------
    def dialled(self, req: Message) -> str:
        """The number the PBX sends out: the Request-URI's user, or (a PBX that sends to
        the registered contact as it is) the To header's."""
        user = urllib.parse.unquote(sipmsg.parse_uri(req.uri).user or "")
        if not user or user == self.cfg.username:
            user = urllib.parse.unquote(req.to.uri.user or "")
        return user

    def on_invite(self, req: Message, peer: Peer, txn) -> None:
        svc = self.service
        if not self.gate.allows(peer):
            # fail2ban matches this like the server's authentication failures.
            log.warning("call refused from %s:%s: not the PBX (trunk mode takes calls only from %s)",
                        peer.addr[0], peer.addr[1], ", ".join(sorted(self.gate.addresses())) or "nobody")
            svc._reply(req, peer, 403, "Forbidden", to_tag=secrets.token_hex(6), txn=txn)
            return
        dialled = self.dialled(req)
        frm = req.from_
        caller = Caller(number=urllib.parse.unquote(frm.uri.user or "") or "pbx",
                        name=(frm.name or "").strip().strip('"') or urllib.parse.unquote(frm.uri.user or "") or "PBX")
        cid = CallerId(number=caller.number, name=caller.name)
        pseudo = Caller(number=self.cfg.username, name=caller.name)
        if dialled in svc.config.boxes:
            log.info("the PBX sends %s (%s) to box %s", caller.number, caller.name, dialled)
            svc.accept_invite(req, peer, txn, pseudo, ("message", dialled), dialled,
                              caller=cid)
            return
        self.call_out(req, peer, txn, dialled, caller)

    def call_out(self, req: Message, peer: Peer, txn, dialled: str, caller: Caller) -> None:
        """The PBX's call to ``dialled``: out through a free line, by the gateway's
        outbound route (sip/outcall.py: 183 early media, 200, or the line's final answer)."""
        svc = self.service
        if not dialled or not set(dialled) <= set("0123456789*#") or len(dialled) > 32:
            log.info("the PBX sent a call to %r: not a number to dial", dialled)
            svc._reply(req, peer, 404, "Not Found", to_tag=secrets.token_hex(6), txn=txn)
            return
        if not svc.app.runners:
            log.info("the PBX sent a call to %s: no line to call out on", dialled)
            svc._reply(req, peer, 503, "Service Unavailable", to_tag=secrets.token_hex(6), txn=txn)
            return
        account = PbxAccount(number=self.cfg.username, name=caller.name,
                             lines=self.cfg.lines or tuple(r.id for r in svc.app.runners), dial=self.cfg.dial)
        log.info("the PBX sends %s (%s) out: %s", caller.number, caller.name, dialled)
        svc.accept_invite(req, peer, txn, account, ("outbound", dialled), dialled)


# ================================================================ analog calls to the PBX
# The caller ID comes between the first two rings (US, Bellcore GR-30: about 0.5-3.5 s
# after the first ring began) or before the first ring (UK, BT SIN 227, after a line
# reversal). A From cannot change once the INVITE went, and the PBX routes and logs by
# it, so on a line whose caller ID follows the first ring the INVITE waits for it, at
# most this long after the first ring (on the line's clock), then goes without. Real FXO
# gateways do the same: Grandstream's HT503/HT813 "PSTN Ring Thru Delay" rings through
# "after this delay or after caller id is detected (whichever comes first)", 2-10 s,
# default 6 s; Cisco/Linksys SPA3102's "PSTN Ring Thru Delay" (default 5 s) "should be
# set larger than the delay required to complete the PSTN caller-id delivery". ASSUMED:
# 4.5 s covers GR-30's window with the margin of a slow decoder, and ends before the
# second US ring (6 s), so the PBX's phones start ringing with the line's second ring.
CALLERID_WAIT_SECONDS = 4.5
CALLERID_POLL_SECONDS = 0.1          # how often the SIP thread looks at the line's clock
# Plans whose caller ID only ever comes before the first ring (BT SIN 227): what is not
# known at the first ring will not come. The INVITE still waits this little (ASSUMED: a
# decoder may finish the message's last bytes in the frames the first ring begins in;
# the first UK ring burst alone lasts 0.4 s).
CALLERID_BEFORE_RING_PLANS = frozenset({"uk"})
CALLERID_BEFORE_RING_GRACE = 0.5


def callerid_wait(plan: str | None, callerid: CallerId | None) -> float:
    """How long (seconds of the line's clock) after the first ring the INVITE may wait
    for the caller ID: nothing once any came with the ring (a number, a name, or why
    they are absent: withheld, unavailable), a moment on a line whose plan sends it
    before the first ring only, `CALLERID_WAIT_SECONDS` on the others."""
    if callerid is not None:
        return 0.0
    return CALLERID_BEFORE_RING_GRACE if plan in CALLERID_BEFORE_RING_PLANS else CALLERID_WAIT_SECONDS


def caller_identity(line_id, callerid: CallerId | None, display) -> dict:
    """What the INVITE to the PBX says of the caller: PbxInvite's ``from_user``,
    ``from_name``, ``asserted`` and ``anonymous``. ``display`` is `Phones.caller_display`.

    - a number: the From as ever ("JOHN DOE" <sip:5551234567@...>, "Line 1" for the
      name when none came) and a P-Asserted-Identity (RFC 3325) with the number and the
      name the exchange sent;
    - the number withheld ("P", RFC 3323): the anonymous From and ``Privacy: id``;
    - no caller ID, or "unavailable" ("O"): the line ("Line 1" <sip:line1@...>), which
      asserts nothing (no P-Asserted-Identity)."""
    cid = callerid or CallerId()
    if not cid.number and cid.number_absent == "P":
        return {"from_user": "anonymous", "from_name": "Anonymous", "asserted": False,
                "anonymous": True}
    name, number = display(line_id, callerid)
    if cid.number:
        # The asserted name is the one the exchange sent, or none ("Line 1", which the
        # From shows for a caller without a name, is no caller's name).
        return {"from_user": cid.number, "from_name": name, "asserted": True,
                "asserted_name": cid.name, "anonymous": False}
    return {"from_user": number, "from_name": name, "asserted": False, "anonymous": False}


class TrunkAttempt(RingAttempt):
    """An analog call ringing its line's ``inbound_uri`` at the PBX."""

    def __init__(self, phones: "TrunkPhones", line_id, callerid, runner=None) -> None:
        super().__init__(line_id, (), callerid)
        self.phones = phones
        self.runner = runner                # the line's runner: its clock times the wait
        self.invite: PbxInvite | None = None
        self.sent = False
        self.sock = None

    def _stop_ringing(self, reason: str) -> None:
        self.phones.trunk.service.call_soon(lambda: self.phones.stop(self, reason))

    def _show_caller(self, callerid) -> None:
        self.phones.trunk.service.call_soon(lambda: self.phones.send(self))


class TrunkPhones(Phones):
    """`Phones` in trunk mode: every line's call rings its ``inbound_uri`` at the PBX
    (the line's own, else ``[sip] inbound_uri``; its ring groups, queues and voicemail
    are the PBX's business); the answer is bridged."""

    takes_every_line = True

    def __init__(self, trunk: "Trunk") -> None:
        self.trunk = trunk

    # What `linebox sim`'s loop asks of its phones (a real PBX runs on its own).
    busy = False

    def step(self) -> None:
        pass

    def inbound_uri(self, line_id) -> str:
        """Where ``line_id``'s calls ring: its ``[[line]] inbound_uri``, else ``[sip]``'s."""
        line = next((c for c in self.trunk.service.config.lines if c.id == line_id), None)
        return (line.inbound_uri if line is not None else None) or self.trunk.cfg.inbound_uri

    def ring(self, line_id, extensions, callerid) -> RingAttempt | None:
        # Called on the line's thread, under the appliance lock: hand over.
        runner = next((r for r in self.trunk.service.app.runners if r.id == line_id), None)
        if runner is not None and not runner.line.full_duplex:
            log.info("line %s is half-duplex (it cannot be bridged): voicemail as usual", line_id)
            return None
        if self.trunk.registration.state == "failed":
            log.info("line %s: the PBX is unreachable (%s); voicemail as usual", line_id,
                     self.trunk.registration.reason)
            return None
        attempt = TrunkAttempt(self, line_id, callerid, runner)
        svc = self.trunk.service
        wait = callerid_wait(runner.plan if runner is not None else None, callerid)
        if not wait:
            svc.call_soon(lambda: self.send(attempt))
        elif runner is not None:
            deadline = runner.t + wait
            svc.call_soon(lambda: self._await_callerid(attempt, deadline, wait))
        else:                                # no line of ours (cannot happen): wall time
            svc.call_soon(lambda: svc._at(wait, lambda: self.send(attempt)))
        return attempt

    # -- on the SIP thread ---------------------------------------------------------------
    def _await_callerid(self, attempt: TrunkAttempt, deadline: float, wait: float) -> None:
        """Send once the line's clock reaches ``deadline`` without caller ID (it sends at
        once when the caller ID comes: `TrunkAttempt._show_caller`)."""
        if attempt.sent or not attempt.ringing:
            return
        if attempt.runner.t >= deadline:
            log.info("line %s: no caller ID %.1f s after the first ring; ringing the PBX without",
                     attempt.line_id, wait)
            self.send(attempt)
            return
        self.trunk.service._at(CALLERID_POLL_SECONDS, lambda: self._await_callerid(attempt, deadline, wait))

    def send(self, attempt: TrunkAttempt) -> None:
        if attempt.sent or not attempt.ringing:
            return
        attempt.sent = True
        trunk = self.trunk
        svc = trunk.service
        host_uri = uri_target(trunk.cfg.proxy)
        target = resolve(*host_uri)
        if target is None:
            attempt.failed(f"cannot resolve {host_uri[0]}")
            return
        local = local_address_for(target[0], svc.cfg.host)
        from linebox.sip.rtp import open_rtp_socket
        attempt.sock = open_rtp_socket(local)
        who = caller_identity(attempt.line_id, attempt.caller, self.caller_display)
        port = attempt.sock.getsockname()[1]
        session = int(time.time())
        inv = PbxInvite(uri=self.inbound_uri(attempt.line_id), sdp=sdp_offer(local, port, session),
                        on_answer=lambda i, r: self._answered(attempt, i, r),
                        on_fail=lambda i, status, why: self._failed(attempt, status, why), **who)
        inv.session = (local, port)
        attempt.invite = inv
        log.info("line %s: ringing %s at the PBX for %s (%s)%s", attempt.line_id, inv.uri, who["from_user"],
                 who["from_name"], " (withheld: Privacy id)" if who["anonymous"] else "")
        trunk.pbx.invite(inv)

    def stop(self, attempt: TrunkAttempt, reason: str) -> None:
        if attempt.invite is not None:
            self.trunk.pbx.cancel(attempt.invite)
        elif attempt.sock is not None:
            attempt.sock.close()

    def _failed(self, attempt: TrunkAttempt, status: int, why: str) -> None:
        log.info("line %s: the PBX did not take the call: %d %s", attempt.line_id, status, why)
        if attempt.sock is not None:
            attempt.sock.close()
        attempt.failed(f"{status} {why}")

    def _answered(self, attempt: TrunkAttempt, inv: PbxInvite, resp: Message) -> None:
        from linebox.gateway.bridge import bridged
        from linebox.sip.sdp import SessionDescription, negotiate, parse_offer
        from linebox.sip.server import Dialog, SipCall
        from linebox.sip.uac import BridgedSipLine
        svc = self.trunk.service
        try:
            media = negotiate(parse_offer(resp.body))
        except SipParseError:
            media = None
        if media is None:
            log.warning("line %s: the PBX's answer has no PCMU/PCMA audio; hanging up", attempt.line_id)
            self.trunk.pbx.bye(inv)
            attempt.sock.close()
            attempt.failed("488 no common codec")
            return
        bridge = attempt.answered(self.trunk.cfg.username)
        if bridge is None:                   # the voicemail route or the caller was first
            self.trunk.pbx.bye(inv)
            attempt.sock.close()
            return
        dialog = Dialog(call_id=inv.call_id, local_tag=inv.from_tag, local=inv.from_header,
                        remote=resp.get("to"), remote_tag=inv.remote_tag,
                        target=inv.remote_target or inv.uri, peer=self.trunk.pbx.peer,
                        extension=self.trunk.cfg.username, cseq=inv.cseq, route=list(inv.route))
        host, port = inv.session
        # RTP is taken from the answer's SDP address and from the PBX's (one that relays
        # media, as Asterisk does by default).
        call = SipCall(dialog=dialog, line=BridgedSipLine(attempt.sock, media, self.trunk.pbx.peer.addr[0]), sdp=SessionDescription(host, port),
                       acked=True, invite_branch=inv.branch)
        svc.calls[(inv.call_id, inv.from_tag)] = call
        svc.calls_by_id[inv.call_id] = call
        log.info("line %s: the PBX answered (%s %s); bridged", attempt.line_id, media.codec, media.host)
        bridge.on_close(lambda cause, end: log.info(
            "line %s: bridge to the PBX closed (%s): %s, %d frames from the PBX", attempt.line_id, cause,
            bridge.stats(), bridge.phone_end.pushed))
        svc.start_media_call(call, self.trunk.cfg.username, lambda c: bridged(c, bridge.phone_end),
                             CallerId(number=attempt.caller.number, name=attempt.caller.name),
                             listen=False)            # the line's side listens


# ================================================================ PBX calls out through a line
@dataclass(frozen=True)
class PbxAccount:
    """The PBX as the outbound route sees a caller: the lines of ``[sip] lines`` (all by
    default) and the numbers of ``[sip] dial`` (any by default: the PBX's own dial plan
    decides who may call what); emergency numbers always."""

    number: str
    name: str
    lines: tuple[int, ...]
    dial: tuple[str, ...] | None = None


# ================================================================ linebox hwcheck
def probe(trunk_cfg, bind_host: str = "0.0.0.0", timeout: float = 3.0) -> tuple[bool, str]:
    """Ask the registrar for the gateway's bindings (a REGISTER without Contact, RFC 3261
    §10.2.3: it changes nothing), answering its challenge: (ok, what was found). For
    ``linebox hwcheck``, with or without the daemon running."""
    host, port = uri_target(trunk_cfg.registrar)
    target = resolve(host, port)
    if target is None:
        return False, f"cannot resolve {host} (registrar {trunk_cfg.registrar})"
    creds = Credentials(trunk_cfg.username, trunk_cfg.password, trunk_cfg.ha1)
    aor = f"sip:{trunk_cfg.username}@{host}"
    call_id, tag = secrets.token_hex(12) + "@linebox", secrets.token_hex(6)
    tcp = getattr(trunk_cfg, "transport", "udp") == "tcp"
    bind = bind_host if bind_host not in ("", "0.0.0.0") else "0.0.0.0"
    try:
        if tcp:
            s = socket.create_connection(target, timeout=timeout, source_address=(bind, 0))
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((bind, 0))
    except OSError as e:
        return False, f"cannot reach {target[0]}:{target[1]} over {'TCP' if tcp else 'UDP'}: {e.strerror or e}"
    with s:
        s.settimeout(timeout)
        local = local_address_for(target[0], bind_host)
        auth = None
        stream = TcpConnection(s, target) if tcp else None
        for cseq in (1, 2, 3):
            branch = new_branch()
            headers = [("Via", f"SIP/2.0/{'TCP' if tcp else 'UDP'} {local}:{s.getsockname()[1]};branch={branch};rport"),
                       ("Max-Forwards", "70"), ("From", f"<{aor}>;tag={tag}"), ("To", f"<{aor}>"),
                       ("Call-ID", call_id), ("CSeq", f"{cseq} REGISTER"), ("User-Agent", USER_AGENT)]
            if auth is not None:
                headers.append(auth)
            data = sipmsg.build(f"REGISTER {trunk_cfg.registrar} SIP/2.0", headers)
            try:
                if tcp:
                    s.sendall(data)
                else:
                    s.sendto(data, target)
            except OSError as e:
                return False, f"cannot send to {target[0]}:{target[1]}: {e.strerror or e}"
            resp = _await_final(s, branch, stream)
            if resp is None:
                return False, f"no answer from {target[0]}:{target[1]} in {timeout:.0f} s"
            ch = challenge_of(resp)
            if ch is not None and cseq < 3 and auth is None:
                try:
                    auth = (ch[0], digest_authorization(ch[1], creds, "REGISTER", trunk_cfg.registrar))
                except ValueError as e:
                    return False, str(e)
                continue
            if ch is not None or (resp.status == 403 and auth is not None):
                return False, f"the PBX refused the credentials of {trunk_cfg.username!r} ({resp.status})"
            if 200 <= resp.status < 300:
                try:
                    contacts = resp.contacts()
                except SipParseError:
                    contacts = []
                n = 0 if contacts == "*" else len(contacts)
                return True, (f"{trunk_cfg.registrar} accepts {trunk_cfg.username!r}; "
                              f"{n} contact(s) registered now")
            return False, f"{resp.status} {resp.reason} from {target[0]}:{target[1]}"
    return False, "no final answer"


def _await_final(s: socket.socket, branch: str, stream: TcpConnection | None = None) -> Message | None:
    """The final answer to ``branch`` on a UDP socket, or on a TCP ``stream`` over it."""
    pending: list[bytes] = []
    while True:
        if not pending:
            try:
                data = s.recv(65535)
            except (TimeoutError, OSError):
                return None
            if stream is not None:
                got = stream.feed(data) if data else None
                if got is None:              # closed, or no SIP
                    return None
                pending.extend(got)
                continue
            pending.append(data)
        try:
            resp = sipmsg.parse(pending.pop(0))
        except SipParseError:
            continue
        if not resp.is_request and resp.vias and resp.vias[0].branch == branch and resp.status >= 200:
            return resp
