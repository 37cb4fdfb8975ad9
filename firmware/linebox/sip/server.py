"""Linebox as the SIP server of the office's IP phones: registrar, voicemail calls,
message-waiting (contract §9).

One thread owns every SIP state (transactions, registrations, dialogs, subscriptions)
and does all the signalling; the calls' audio runs on one media thread, every call on a
shared 20 ms clock (``_media_loop``), and drives the same call engine and flows as an
analog line's, under the appliance lock.
The bus reaches this thread through a queue, so a store change never waits on the
network.
"""

import heapq
import itertools
import logging
import queue
import secrets
import selectors
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from linebox import events as ev_
from linebox.caller import CallerId
from linebox.calls.engine import LineRunner
from linebox.calls.flows import sip_entry
from linebox.errors import LineboxError
from linebox.sip import message as sipmsg
from linebox.sip.auth import DigestAuth, Verdict
from linebox.sip.message import Message, SipParseError
from linebox.sip.route import next_hop, request_target, route_set
from linebox.sip.rtp import FRAME_SECONDS, MAX_LATE, SipLine, open_rtp_socket, receive_all
from linebox.sip.sdp import Media, SessionDescription, negotiate, negotiate_answer, parse_offer
from linebox.sip.transport import MAX_TCP_CONNECTIONS, Peer, TcpConnection, local_address_for

log = logging.getLogger(__name__)

T1, T2 = 0.5, 4.0                  # RFC 3261 §17.1.1.1 timer values
TIMER_64T1 = 64 * T1                # B, F, H, J: how long a transaction lives
MEDIA_PHASES = 1                    # every call on one shared 20 ms tick (see _media_loop)
MAX_CALLS = 24                      # a Pi Zero 2 W holds about 8 (bench/sip_bench.py)
MAX_SUBSCRIPTIONS = 128
MAX_SUBSCRIPTIONS_PER_EXTENSION = 8
MAX_CONTACTS = 5                    # per extension
MAX_TRANSACTIONS = 2048
# One source (address and port: a phone's SIP socket) may hold a quarter of them: a phone
# stuck sending new requests (baresip 1.0.0's mwi module can SUBSCRIBE in a tight loop)
# gets 503 itself instead of filling the table for 32 s and locking every other phone
# out. (A flooder rotating its ports still meets MAX_TRANSACTIONS, and the digest
# throttle per address.)
MAX_TRANSACTIONS_PER_ADDRESS = 512
EXPIRES_DEFAULT, EXPIRES_MIN, EXPIRES_MAX = 3600, 60, 7200
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, INFO, REFER"
SERVER = "Linebox"
DELAYED_MEDIA = Media("0.0.0.0", 9, "PCMU", 0, None, "inactive")   # a line before the answer


def dial_plan(dialled: str, extension, boxes, outbound=None) -> tuple[str, str | None] | None:
    """What a dialled number means (contract §9): ("login", box or None), ("message",
    box), or with the gateway ("outbound", number) when ``outbound(dialled)`` finds the
    number to dial on a line; None for anything else."""
    if dialled in ("*56", "*98"):
        return "login", None
    if dialled.startswith("*56") and dialled[3:] in boxes:
        return "login", dialled[3:]
    if dialled == "*97" and extension.mailboxes:
        return "login", extension.mailboxes[0]
    if dialled in boxes:
        return "message", dialled
    found = outbound(dialled) if outbound is not None else None
    if found is not None:
        return "outbound", found[0]
    return None


@dataclass
class Binding:
    uri: str
    peer: Peer
    expires_at: float
    call_id: str
    cseq: int


@dataclass
class ServerTransaction:
    key: tuple
    peer: Peer
    is_invite: bool
    response: bytes | None = None
    final: int = 0
    acked: bool = False
    interval: float = T1
    expires_at: float = 0.0


@dataclass
class ClientTransaction:
    branch: str
    data: bytes
    peer: Peer
    on_final: object = None            # callable(status)
    interval: float = T1
    deadline: float = 0.0
    done: bool = False


@dataclass
class Dialog:
    """What a request inside a dialog needs: who is who, where to send, the CSeqs."""

    call_id: str
    local_tag: str
    local: str                          # our From when we send (their To, with our tag)
    remote: str                         # their From, with their tag
    remote_tag: str
    target: str                         # their Contact URI
    peer: Peer
    extension: str
    cseq: int = field(default_factory=lambda: secrets.randbelow(10000) + 1)
    remote_cseq: int = 0
    route: tuple = ()                   # the Record-Route set (sip/route.py)


@dataclass
class SipCall:
    dialog: Dialog
    line: SipLine
    sdp: SessionDescription
    runner: LineRunner | None = None
    ok: bytes = b""                     # the 200 to the INVITE, resent until ACK
    acked: bool = False
    interval: float = T1
    answered_at: float = 0.0
    ended: str | None = None            # why, once the SIP side is over
    bye_sent: bool = False
    invite_branch: str = ""
    offered: object = None              # our offer awaits the answer in the ACK: (ext, route, dialled, caller), or True in a re-INVITE
    outbound: object = None             # a call out through a line (sip/outcall.py)


@dataclass
class Subscription:
    dialog: Dialog
    boxes: tuple[str, ...]
    account: str
    expires_at: float


class _ExtensionBus:
    """The bus as a SIP call's runner sees it: every event names the extension."""

    def __init__(self, bus, extension: str) -> None:
        self.bus = bus
        self.extension = extension

    def publish(self, event: dict) -> None:
        # A phone's call has no analog line: its state is the extension's, not a line's.
        if event.get("event") == ev_.LINE_STATE:
            event = {"event": ev_.EXTENSION_CALL_STATE, "extension": self.extension,
                     "state": event.get("state")}
        self.bus.publish({**event, "extension": self.extension})


class SipService:
    """The SIP side of `linebox run`: ``start()`` binds UDP and TCP on [sip] listen and
    serves until ``stop()``. ``app`` is the Appliance, ``lock`` the appliance lock."""

    def __init__(self, config, app, lock, clock=time.monotonic) -> None:
        self.cfg = config.sip
        self.config = config
        self.extensions = config.extensions or {}
        self.app = app
        self.lock = lock
        self.clock = clock
        self.auth = DigestAuth(self.cfg.realm, {n: e.ha1 for n, e in self.extensions.items()}, clock)
        self.bindings: dict[str, dict[str, Binding]] = {n: {} for n in self.extensions}
        self.server_txns: dict[tuple, ServerTransaction] = {}
        self.txns_per_address: dict[tuple, int] = {}
        self.client_txns: dict[str, ClientTransaction] = {}
        self.calls: dict[tuple, SipCall] = {}            # (call-id, our tag) -> call
        self.calls_by_id: dict[str, SipCall] = {}
        self.subs: dict[tuple, Subscription] = {}
        self.counts: dict[str, dict] = {}
        self.timers: list = []
        self._seq = itertools.count()
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.sel = selectors.DefaultSelector()
        self.tcp: dict[tuple, TcpConnection] = {}
        self.thread: threading.Thread | None = None
        self.port = self.cfg.port
        self._media_calls: list[SipCall] = []
        self._media_lock = threading.Lock()
        self._media_wake = threading.Event()
        self._media_origin = clock()
        self._media_next_phase = 0
        self.media_thread: threading.Thread | None = None
        self.allow = ALLOW
        from linebox.sip.uac import SipPhones  # the gateway: ringing the phones
        self.uac = SipPhones(self)
        from linebox.sip.outcall import OutboundInvites  # the gateway: calls out
        self.outcalls = OutboundInvites(self)
        self.trunk = None
        if self.cfg.mode == "trunk":
            from linebox.gateway.trunk import Trunk  # Linebox as a gateway behind a PBX
            self.trunk = Trunk(self)

    # ================================================================ life cycle
    def start(self) -> None:
        host = self.cfg.host
        try:
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind((host, self.cfg.port))
            self.port = self.udp.getsockname()[1]
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((host, self.port))
            self.listener.listen(16)
        except OSError as e:
            raise LineboxError(f"sip: cannot listen on {host}:{self.cfg.port}: {e.strerror or e}") from None
        self.udp.setblocking(False)
        self.listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.sel.register(self.udp, selectors.EVENT_READ, "udp")
        self.sel.register(self.listener, selectors.EVENT_READ, "listen")
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        with self.lock:
            self.counts = {b: self.app.store.counts(b) for b in self.config.boxes}
            self.app.bus.subscribe(self._on_bus)
            # Trunk mode: the lines ring the PBX (gateway/trunk.py), else the phones here.
            self.app.phones = self.trunk.phones if self.trunk is not None else self.uac
            for n in self.extensions:
                self.app.bus.publish({"event": ev_.EXTENSION_STATE, "extension": n,
                                      "state": "unregistered"})
        self._every(1.0, self._sweep)
        self.thread = threading.Thread(target=self._loop, name="sip", daemon=True)
        self.thread.start()
        self.media_thread = threading.Thread(target=self._media_loop, name="sip-media", daemon=True)
        self.media_thread.start()
        if self.trunk is not None:
            self.call_soon(self.trunk.start)
        log.info("listening on %s:%d (UDP and TCP), realm %s, %d extension(s)",
                 host, self.port, self.cfg.realm, len(self.extensions))

    def stop(self) -> None:
        self.inbox.put(("stop",))
        self._wake()
        if self.thread is not None:
            self.thread.join(timeout=5.0)
        for call in list(self.calls.values()):
            call.line.end("shutdown")
        deadline = time.monotonic() + 3.0        # the flows hear the hang-up and finish
        while self._media_calls and time.monotonic() < deadline:
            time.sleep(0.02)
        self.stopping.set()
        if self.media_thread is not None:
            self._media_wake.set()
            self.media_thread.join(timeout=2.0)
        with self.lock:
            if self.app.phones is self.uac or (self.trunk is not None and self.app.phones is self.trunk.phones):
                self.app.phones = None
            try:
                self.app.bus.unsubscribe(self._on_bus)
            except ValueError:
                pass
        for s in [self.udp, self.listener, self._wake_r, self._wake_w, *[c.sock for c in self.tcp.values()]]:
            try:
                s.close()
            except OSError:
                pass

    def call_soon(self, fn) -> None:
        """Run ``fn()`` on the SIP thread (which owns every SIP state), from any thread."""
        self.inbox.put(("run", fn))
        self._wake()

    def publish(self, event: dict) -> None:
        """A bus event from the SIP thread (the appliance lock held while it is delivered)."""
        with self.lock:
            self.app.bus.publish(event)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _on_bus(self, ev: dict) -> None:
        # Called on whatever thread published (under the appliance lock): hand over.
        if ev.get("event") == "box_changed":
            self.inbox.put(("counts", ev["box"], ev["counts"]))
            self._wake()

    # ================================================================ the loop
    def _loop(self) -> None:
        while True:
            timeout = 1.0
            if self.timers:
                timeout = max(0.0, min(timeout, self.timers[0][0] - self.clock()))
            for key, _ in self.sel.select(timeout):
                try:
                    self._readable(key)
                except Exception:      # noqa: BLE001 - one bad packet never stops the server
                    log.exception("error handling input")
            while not self.inbox.empty():
                item = self.inbox.get()
                if item[0] == "stop":
                    self._shutdown()
                    return
                try:
                    self._inbox(item)
                except Exception:      # noqa: BLE001
                    log.exception("error handling %s", item[0])
            now = self.clock()
            while self.timers and self.timers[0][0] <= now:
                _, _, fn = heapq.heappop(self.timers)
                try:
                    fn()
                except Exception:      # noqa: BLE001
                    log.exception("timer failed")

    def _readable(self, key) -> None:
        what = key.data
        if what == "wake":
            try:
                self._wake_r.recv(4096)
            except OSError:
                pass
        elif what == "udp":
            for _ in range(64):
                try:
                    data, addr = self.udp.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    return
                self._datagram(data, Peer("UDP", addr[:2]))
        elif what == "listen":
            try:
                sock, addr = self.listener.accept()
            except OSError:
                return
            if len(self.tcp) >= MAX_TCP_CONNECTIONS:
                sock.close()
                return
            sock.setblocking(False)
            conn = TcpConnection(sock, addr[:2])
            self.tcp[conn.addr] = conn
            self.sel.register(sock, selectors.EVENT_READ, conn)
        else:
            conn = what
            try:
                data = conn.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            msgs = conn.feed(data) if data else None
            if msgs is None:
                self._close_tcp(conn)
                return
            for m in msgs:
                self._datagram(m, Peer("TCP", conn.addr))

    def _close_tcp(self, conn: TcpConnection) -> None:
        self.tcp.pop(conn.addr, None)
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def send(self, peer: Peer, data: bytes) -> None:
        try:
            if peer.transport == "UDP":
                self.udp.sendto(data, peer.addr)
            else:
                conn = self.tcp.get(peer.addr)
                if conn is not None:
                    conn.sock.setblocking(True)
                    conn.sock.settimeout(1.0)
                    try:
                        conn.sock.sendall(data)
                    finally:
                        conn.sock.setblocking(False)
        except OSError as e:
            log.debug("send to %s failed: %s", peer.addr, e)

    def _at(self, delay: float, fn) -> None:
        heapq.heappush(self.timers, (self.clock() + delay, next(self._seq), fn))

    def _every(self, interval: float, fn) -> None:
        def again():
            fn()
            self._at(interval, again)
        self._at(interval, again)

    # ================================================================ input
    def _datagram(self, data: bytes, peer: Peer) -> None:
        if not data.strip(b"\r\n \t\x00"):
            if peer.transport == "TCP" and data.startswith(b"\r\n\r\n"):
                self.send(peer, b"\r\n")             # RFC 5626 §4.4.1 pong
            return
        try:
            msg = sipmsg.parse(data)
        except SipParseError as e:
            self._malformed(data, peer, str(e))
            return
        if msg.is_request:
            self._request(msg, peer)
        else:
            self._response(msg)

    def _malformed(self, data: bytes, peer: Peer, why: str) -> None:
        """400 when the headers a response needs are there; silence otherwise."""
        log.info("malformed SIP from %s:%s (%s)", peer.addr[0], peer.addr[1], why)
        if data.startswith(b"SIP/") or len(data) > sipmsg.MAX_MESSAGE:
            return
        try:
            head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
        except UnicodeDecodeError:
            return
        lines = head.split("\r\n")
        if " SIP/2.0" not in lines[0] or lines[0].split(" ", 1)[0] == "ACK":
            return
        keep = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = sipmsg.COMPACT.get(name.strip().lower(), name.strip().lower())
            if name in ("via", "from", "to", "call-id", "cseq") and name not in keep:
                keep[name] = value.strip()
        if len(keep) < 5 or any(c in v for v in keep.values() for c in "\x00\r\n"):
            return
        reason = "Bad Request"
        self.send(peer, sipmsg.build(f"SIP/2.0 400 {reason}",
                                     [(sipmsg.CANONICAL[k], v) for k, v in keep.items()]))

    def _reply(self, req: Message, peer: Peer, status: int, reason: str, extra=(), to_tag=None,
               body: bytes = b"", txn: ServerTransaction | None = None) -> bytes:
        extra = [*extra, ("Server", SERVER)]
        if (req.method in ("INVITE", "SUBSCRIBE") and 100 < status < 300 and to_tag
                and "tag" not in req.to.params):
            # RFC 3261 §12.1.1: a response that makes a dialog copies the Record-Route.
            extra = [*(("Record-Route", v) for v in req.get_all("record-route")), *extra]
        log.debug("%s %s from %s:%s: %d %s", req.method, req.call_id, *peer.addr, status, reason)
        data = sipmsg.response(req, status, reason, extra, to_tag=to_tag, body=body,
                               received=peer.addr if peer.transport == "UDP" else None)
        self.send(peer, data)
        if txn is not None and status >= 100:
            txn.response = data
            if status >= 200:
                txn.final = status
                self._final_sent(txn)
        return data

    def _request(self, req: Message, peer: Peer) -> None:
        top = req.vias[0]
        branch = top.branch or f"{req.call_id}:{req.cseq[0]}"
        method = req.method
        if method == "ACK":
            txn = self.server_txns.get((branch, "INVITE"))
            if txn is not None and txn.final >= 300:
                txn.acked = True               # the ACK to our error: stop resending it
                return
            self._ack(req)
            return
        key = (branch, method)
        txn = self.server_txns.get(key)
        if txn is not None:
            if txn.response is not None:
                self.send(peer, txn.response)  # a retransmission: the same answer again
            return
        source = peer.addr
        held = self.txns_per_address.get(source, 0)
        if len(self.server_txns) >= MAX_TRANSACTIONS or held >= MAX_TRANSACTIONS_PER_ADDRESS:
            if held >= MAX_TRANSACTIONS_PER_ADDRESS and held % 64 == 0:
                log.warning("SIP: %s:%s holds %d transactions: new requests from it get 503",
                            *source, held)
            self._reply(req, peer, 503, "Service Unavailable", [("Retry-After", "5")])
            return
        txn = ServerTransaction(key, peer, method == "INVITE", expires_at=self.clock() + TIMER_64T1)
        self.server_txns[key] = txn
        self.txns_per_address[source] = held + 1
        handler = getattr(self, f"_on_{method.lower()}", None)
        if handler is None:
            self._reply(req, peer, 405, "Method Not Allowed", [("Allow", ALLOW)], txn=txn)
            return
        handler(req, peer, txn)

    def _forget_txn(self, key: tuple) -> None:
        txn = self.server_txns.pop(key, None)
        if txn is None:
            return
        source = txn.peer.addr
        left = self.txns_per_address.get(source, 1) - 1
        if left > 0:
            self.txns_per_address[source] = left
        else:
            self.txns_per_address.pop(source, None)

    def _final_sent(self, txn: ServerTransaction) -> None:
        """Timer G for errors to an INVITE over UDP: resend until the ACK."""
        if not txn.is_invite or txn.final < 300 or txn.peer.transport != "UDP":
            return

        def resend():
            if txn.acked or self.server_txns.get(txn.key) is not txn:
                return
            self.send(txn.peer, txn.response)
            txn.interval = min(2 * txn.interval, T2)
            self._at(txn.interval, resend)
        self._at(txn.interval, resend)

    def _response(self, resp: Message) -> None:
        if self.trunk is not None and self.trunk.txns.response(resp):
            return
        if self.uac.response(resp):
            return
        branch = resp.vias[0].branch
        ct = self.client_txns.get(branch or "")
        if ct is None or resp.status < 200 or ct.done:
            return
        ct.done = True
        self.client_txns.pop(branch, None)
        if ct.on_final is not None:
            ct.on_final(resp.status)

    # ================================================================ authentication
    def _authenticate(self, req: Message, peer: Peer, txn) -> str | None:
        """The extension that sent ``req``, or None (the answer has been sent)."""
        header = req.get("authorization")
        verdict, user = self.auth.check(req.method, req.uri, header, peer.addr)
        if verdict == Verdict.OK:
            return user
        if verdict == Verdict.THROTTLED:
            self._forget_txn(txn.key)                # silence: no work for a flooder
            return None
        if verdict == Verdict.CHALLENGE:
            stale = header is not None
            self._reply(req, peer, 401, "Unauthorized",
                        [("WWW-Authenticate", self.auth.challenge(stale=stale))],
                        to_tag=secrets.token_hex(6), txn=txn)
            return None
        self._reply(req, peer, 403, "Forbidden", to_tag=secrets.token_hex(6), txn=txn)
        return None

    # ================================================================ OPTIONS, REGISTER
    def _on_options(self, req: Message, peer: Peer, txn) -> None:
        self._reply(req, peer, 200, "OK", [("Allow", ALLOW), ("Accept", "application/sdp"),
                                           ("Supported", "")], to_tag=secrets.token_hex(6), txn=txn)

    def _on_register(self, req: Message, peer: Peer, txn) -> None:
        user = self._authenticate(req, peer, txn)
        if user is None:
            return
        if req.to.uri.user != user:
            log.warning("extension %s from %s tried to register %s", user, peer.addr[0], req.to.uri.user)
            self._reply(req, peer, 403, "Forbidden", txn=txn)
            return
        try:
            contacts = req.contacts()
            default = req.expires()
        except SipParseError:
            self._reply(req, peer, 400, "Bad Request", txn=txn)
            return
        default = EXPIRES_DEFAULT if default is None else default
        now = self.clock()
        mine = self.bindings[user]
        before = bool(mine)
        if contacts == "*":
            if default != 0:
                self._reply(req, peer, 400, "Bad Request", txn=txn)
                return
            mine.clear()
        else:
            for c in contacts:
                exp = c.params.get("expires")
                exp = int(exp) if exp and exp.isdigit() and len(exp) < 10 else default
                if 0 < exp < EXPIRES_MIN:
                    self._reply(req, peer, 423, "Interval Too Brief", [("Min-Expires", str(EXPIRES_MIN))],
                                txn=txn)
                    return
                key = c.uri.text
                old = mine.get(key)
                if old is not None and old.call_id == req.call_id and req.cseq[0] <= old.cseq:
                    continue                     # out of order (RFC 3261 §10.3 step 7)
                if exp == 0:
                    mine.pop(key, None)
                    continue
                if key not in mine and len(mine) >= MAX_CONTACTS:
                    oldest = min(mine.values(), key=lambda b: b.expires_at)
                    mine.pop(oldest.uri, None)
                mine[key] = Binding(key, peer, now + min(exp, EXPIRES_MAX), req.call_id, req.cseq[0])
        extra = [("Contact", f"<{b.uri}>;expires={max(0, int(b.expires_at - now))}") for b in mine.values()]
        self._reply(req, peer, 200, "OK", extra + [("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                                                          time.gmtime()))],
                    to_tag=secrets.token_hex(6), txn=txn)
        log.info("extension %s: %d contact(s) from %s:%s", user, len(mine), *peer.addr)
        self._registration_changed(user, before)
        if contacts != "*" and mine and self.extensions[user].unsolicited_mwi:
            self._unsolicited(user)

    def _registration_changed(self, user: str, before: bool) -> None:
        now_on = bool(self.bindings[user])
        if now_on != before:
            state = "registered" if now_on else "unregistered"
            log.info("extension %s %s", user, state)
            with self.lock:
                self.app.bus.publish({"event": ev_.EXTENSION_STATE, "extension": user,
                                      "state": state})

    def _sweep(self) -> None:
        """Once a second: expired registrations, subscriptions and transactions."""
        now = self.clock()
        for user, mine in self.bindings.items():
            gone = [k for k, b in mine.items() if b.expires_at <= now]
            if gone:
                for k in gone:
                    del mine[k]
                self._registration_changed(user, True)
        for key, sub in list(self.subs.items()):
            if sub.expires_at <= now:
                self._notify(sub, terminated="timeout")
                self.subs.pop(key, None)
        for key, txn in list(self.server_txns.items()):
            if txn.expires_at <= now:
                if txn.is_invite and txn.final == 0 and self._pending_outbound(key[0]):
                    continue           # a call out still ringing: its CANCEL must find it
                self._forget_txn(key)

    # ================================================================ calls
    def _pending_outbound(self, branch: str) -> bool:
        """A call out through a line whose INVITE (``branch``) has no final answer yet."""
        return any(c.outbound is not None and c.invite_branch == branch and not c.ok and c.ended is None
                   for c in self.calls.values())

    def _on_invite(self, req: Message, peer: Peer, txn) -> None:
        to_tag = req.to.params.get("tag")
        if to_tag:
            self._reinvite(req, peer, txn, to_tag)
            return
        if self.trunk is not None:
            self.trunk.on_invite(req, peer, txn)
            return
        user = self._authenticate(req, peer, txn)
        if user is None:
            return
        ext = self.extensions[user]
        if req.from_.uri.user != user:
            log.warning("extension %s from %s called as %s", user, peer.addr[0], req.from_.uri.user)
        dialled = urllib.parse.unquote(sipmsg.parse_uri(req.uri).user or "")
        route = dial_plan(dialled, ext, self.config.boxes, self.outcalls.number_for)
        self.accept_invite(req, peer, txn, ext, route, dialled)

    def accept_invite(self, req: Message, peer: Peer, txn, ext, route, dialled: str,
                      caller: CallerId | None = None) -> None:
        """Answer a new INVITE for ``route`` (see `dial_plan`) on behalf of ``ext`` (its
        ``number`` names the call in events): 404 for no route, 486/488/400 when it
        cannot be taken, else 200 and the call's flow (the dialog's Route set from the
        INVITE's Record-Route, RFC 3261 §12.1.1, sip/route.py); ``caller``: the
        caller as the flows see it (default: the extension)."""
        user = ext.number
        tag = secrets.token_hex(6)
        if route is None:
            log.info("extension %s dialled %r: no such number", user, dialled)
            self._reply(req, peer, 404, "Not Found", to_tag=tag, txn=txn)
            return
        if len(self.calls) >= MAX_CALLS:
            self._reply(req, peer, 486, "Busy Here", to_tag=tag, txn=txn)
            return
        # No SDP: a delayed offer (RFC 3261 §13.2.1, RFC 3264 §5). We offer in the 200
        # and the phone answers in its ACK; until then the line neither sends nor expects.
        delayed = not req.body.strip()
        try:
            media = DELAYED_MEDIA if delayed else negotiate(parse_offer(req.body))
        except SipParseError:
            media = None
        if media is None:
            self._reply(req, peer, 488, "Not Acceptable Here", to_tag=tag, txn=txn)
            return
        contact = self._contact_uri(req)
        try:
            routes = route_set(req.get_all("record-route"))
        except SipParseError:
            contact = None
        if contact is None:
            self._reply(req, peer, 400, "Bad Request", to_tag=tag, txn=txn)
            return
        if route[0] == "outbound":
            self.outcalls.invite(req, peer, txn, user, ext, route[1], media, contact, tag, dialled)
            call = self.calls.get((req.call_id, tag))
            if call is not None:
                call.dialog.route = routes
            return
        self._reply(req, peer, 100, "Trying", txn=txn)
        local = local_address_for(peer.addr[0], self.cfg.host)
        sock = open_rtp_socket(local if self.cfg.host in ("0.0.0.0", "") else self.cfg.host)
        sdp = SessionDescription(local, sock.getsockname()[1])
        dialog = Dialog(call_id=req.call_id, local_tag=tag, local=f"{req.get('to')};tag={tag}",
                        remote=req.get("from"), remote_tag=req.from_.params.get("tag", ""),
                        target=contact, peer=peer, extension=user, remote_cseq=req.cseq[0],
                        route=routes)
        call = SipCall(dialog=dialog, line=SipLine(sock, media, peer.addr[0]), sdp=sdp, invite_branch=txn.key[0])
        call.ok = self._reply(req, peer, 200, "OK", [("Contact", self._our_contact(peer)),
                                                      ("Allow", ALLOW), ("Content-Type", "application/sdp")],
                              to_tag=tag, body=sdp.offer() if delayed else sdp.answer(media), txn=txn)
        call.answered_at = self.clock()
        self.calls[(req.call_id, tag)] = call
        self.calls_by_id[req.call_id] = call
        self._retransmit_ok(call)
        log.info("extension %s dialled %s: %s %s", user, dialled, route[0], route[1] or "(asks)")
        if delayed:
            call.offered = (ext, route, dialled, caller)    # started by the answer in the ACK
            return
        self._start_call(call, ext, route, dialled, caller)

    def _start_call(self, call: SipCall, ext, route, dialled: str, caller: CallerId | None = None) -> None:
        caller = caller or CallerId(number=ext.number, name=ext.name, extension=ext.number)
        self.start_media_call(call, ext.number, sip_entry(self.app.svc, route[0], route[1]), caller,
                              {"event": ev_.SIP_CALL, "caller_number": caller.number,
                               "caller_name": caller.name, "dialled": dialled, "line": None})

    def start_media_call(self, call: SipCall, extension: str, flow, callerid: CallerId,
                         event: dict | None = None, listen: bool = True) -> None:
        """Run ``flow`` (a flow factory, as a line's) over the call's RTP, its events
        naming ``extension``; ``event`` is published first. ``listen`` False: a bridged
        leg (the line's side listens)."""
        bus = _ExtensionBus(self.app.bus, extension)
        with self.lock:
            call.runner = LineRunner(call.line, None, "us", bus, flow, rings_needed=lambda: 0)
            if event is not None:
                bus.publish(event)
            call.runner.start_call(flow, callerid, listen=listen)
        self._media_next_phase = (self._media_next_phase + 1) % MEDIA_PHASES
        call.line.align(self._media_slot(self._media_next_phase))
        with self._media_lock:
            self._media_calls.append(call)
        self._media_wake.set()

    def new_dialog(self, call_id, local_tag, local, remote, remote_tag, target, peer, extension,
                   cseq) -> Dialog:
        """A dialog we started (the gateway's INVITE to a phone)."""
        return Dialog(call_id=call_id, local_tag=local_tag, local=local, remote=remote,
                      remote_tag=remote_tag, target=target, peer=peer, extension=extension,
                      cseq=cseq)

    def start_leg(self, dialog: Dialog, line: SipLine, sdp, flow, extension: str, callerid) -> SipCall:
        """A call we placed to a phone (the gateway), answered and ACKed: its audio runs
        like a phone's own call, under ``flow``."""
        call = SipCall(dialog=dialog, line=line, sdp=sdp, acked=True)
        self.calls[(dialog.call_id, dialog.local_tag)] = call
        self.calls_by_id[dialog.call_id] = call
        bus = _ExtensionBus(self.app.bus, extension)
        with self.lock:
            call.runner = LineRunner(call.line, None, "us", bus, flow, rings_needed=lambda: 0)
            call.runner.start_call(flow, callerid, listen=False)   # the line's side listens
        self._media_next_phase = (self._media_next_phase + 1) % MEDIA_PHASES
        call.line.align(self._media_slot(self._media_next_phase))
        with self._media_lock:
            self._media_calls.append(call)
        self._media_wake.set()
        return call

    def _on_refer(self, req: Message, peer: Peer, txn) -> None:
        """RFC 3515 blind transfer, by a phone in a call the gateway bridged."""
        call = self._find_call(req)
        if call is None:
            self._reply(req, peer, 481, "Call/Transaction Does Not Exist", txn=txn)
            return
        if not req.get("refer-to"):
            self._reply(req, peer, 400, "Bad Request", txn=txn)
            return
        self.uac.refer(req, peer, txn, call)

    def _media_slot(self, phase: int) -> float:
        """The next 20 ms slot of the shared media clock (in one of MEDIA_PHASES phases,
        now one: every call sends and receives on the same instants)."""
        origin = self._media_origin + phase * FRAME_SECONDS / MEDIA_PHASES
        slots = int((self.clock() - origin) / FRAME_SECONDS) + 1
        return origin + slots * FRAME_SECONDS

    def _media_loop(self) -> None:
        """Every call's audio on one shared 20 ms clock, in this one thread, like an
        analog line's loop but for all the calls at once: at each slot every call sends
        its frame, then takes what the phone sent (``send_frame``; ``receive_all``, one
        poll for all the sockets; ``take_frame``; never under the appliance lock), then each frame runs through its call's flow
        (``process``, the lock taken once for the lot).

        One wake-up a slot for all the calls, and no hand-off between threads per frame:
        a wake-up (cold caches, the GIL changing hands) costs more than a frame's work
        (bench/sip_bench.py). The recorder writes once a second and its fsync runs on a
        thread of its own, so the disk does not hold the clock up; a slow frame (saving a
        message, checking a PIN) delays the next slot, whose packets then go out at once."""
        slot = None
        while not self.stopping.is_set():
            with self._media_lock:
                calls = list(self._media_calls)
            if not calls:
                slot = None
                self._media_wake.wait(0.5)
                self._media_wake.clear()
                continue
            now = self.clock()
            if slot is None:
                slot = self._media_slot(0)
            elif now - slot > MAX_LATE:
                slot = now                       # a stall: start pacing afresh
            if slot > now:
                self._media_wake.wait(slot - now)    # a new call wakes us to list it
                self._media_wake.clear()
                continue
            for call in calls:
                call.line.send_frame(call.runner.out, slot)
            receive_all([call.line for call in calls])
            self._media_step([(call, call.line.take_frame(drained=True)) for call in calls])
            slot += FRAME_SECONDS

    def _media_step(self, batch) -> None:
        """One frame of each call of ``batch`` [(call, tick)] through its runner."""
        over = []
        with self.lock:
            for call, tick in batch:
                runner = call.runner
                try:
                    runner.process(tick)
                except Exception:  # noqa: BLE001 - a broken call must not take the others with it
                    log.exception("call failed")
                    try:
                        if runner.flow is not None:
                            runner.hang_up()
                    except Exception:  # noqa: BLE001
                        log.exception("call failed to hang up")
                        runner.flow = None
                if runner.flow is None:
                    over.append(call)
        if over:
            with self._media_lock:
                for call in over:
                    self._media_calls.remove(call)
            for call in over:
                call.line.close()
                self.inbox.put(("call_over", call))
            self._wake()

    def _inbox(self, item) -> None:
        if item[0] == "run":
            item[1]()
        elif item[0] == "counts":
            self._counts_changed(item[1], item[2])
        elif item[0] == "outbound":
            self.outcalls.progress(item[1])
        elif item[0] == "uac":
            self.uac.handle(item[1:])
        elif item[0] == "call_over":
            call = item[1]
            self.uac.leg_over(call)
            if call.ended is None:
                call.ended = "flow"
                self._send_bye(call)
            self.calls.pop((call.dialog.call_id, call.dialog.local_tag), None)
            if self.calls_by_id.get(call.dialog.call_id) is call:
                del self.calls_by_id[call.dialog.call_id]

    def _retransmit_ok(self, call: SipCall) -> None:
        """RFC 3261 §13.3.1.4: the 200 is resent until the ACK; no ACK in 64*T1: BYE."""
        if call.dialog.peer.transport != "UDP":
            call.interval = TIMER_64T1

        def again():
            if call.acked or call.ended:
                return
            if self.clock() - call.answered_at >= TIMER_64T1:
                log.info("call %s: no ACK; hanging up", call.dialog.call_id)
                self._end_call(call, "no_ack")
                return
            if call.dialog.peer.transport == "UDP":
                self.send(call.dialog.peer, call.ok)
            call.interval = min(2 * call.interval, T2)
            self._at(call.interval, again)
        self._at(call.interval, again)

    def _find_call(self, req: Message) -> SipCall | None:
        tag = req.to.params.get("tag")
        call = self.calls.get((req.call_id, tag))
        if call is None or call.dialog.remote_tag != req.from_.params.get("tag", ""):
            return None
        return call

    def _ack(self, req: Message) -> None:
        call = self._find_call(req)
        if call is None or call.acked:
            return
        call.acked = True
        if call.offered is not None:
            self._answer_in_ack(call, req)

    def _answer_in_ack(self, call: SipCall, req: Message) -> None:
        """The phone's answer to the offer in our 200 (RFC 3264 §5; RFC 3261 §13.3.1.4:
        an ACK without an acceptable answer ends the call with a BYE)."""
        offered, call.offered = call.offered, None
        try:
            media = negotiate_answer(parse_offer(req.body)) if req.body.strip() else None
        except SipParseError:
            media = None
        if media is None:
            log.info("call %s: no acceptable answer to our offer in the ACK; hanging up", req.call_id)
            self._end_call(call, "no_answer")
            return
        call.line.set_media(media)
        log.info("call %s: answer in the ACK, %s %s", req.call_id, media.codec, media.direction)
        if offered is not True:                 # True: a re-INVITE's offer, the call goes on
            self._start_call(call, *offered)

    def _on_bye(self, req: Message, peer: Peer, txn) -> None:
        call = self._find_call(req)
        if call is None:
            self._reply(req, peer, 481, "Call/Transaction Does Not Exist", txn=txn)
            return
        self._reply(req, peer, 200, "OK", txn=txn)
        call.ended = "bye"
        call.line.end("bye")
        self._forget_unstarted(call)

    def _on_cancel(self, req: Message, peer: Peer, txn) -> None:
        branch = req.vias[0].branch
        invite = self.server_txns.get((branch, "INVITE"))
        if invite is None:
            self._reply(req, peer, 481, "Call/Transaction Does Not Exist", txn=txn)
            return
        self._reply(req, peer, 200, "OK", txn=txn)
        call = self.calls_by_id.get(req.call_id)
        if call is not None and call.outbound is not None and not call.ok:
            self.outcalls.cancel(call)            # a call out not answered yet: 487
            return
        if call is not None and call.invite_branch == branch and not call.acked:
            # We answer at once, so a CANCEL meets a 200 already on its way: end the call
            # here too (the phone will also send its BYE after the ACK).
            self._end_call(call, "cancel")

    def _end_call(self, call: SipCall, cause: str) -> None:
        if call.outbound is not None and not call.ok:
            self.outcalls.cancel(call, cause)     # no dialog yet: a final response, no BYE
            return
        if call.ended is None:
            call.ended = cause
            self._send_bye(call)
        call.line.end(cause)
        self._forget_unstarted(call)

    def _forget_unstarted(self, call: SipCall) -> None:
        """A call that ends before its flow began (a delayed offer never answered): no
        media loop will report it over, so it is put away here."""
        if call.runner is None:
            call.offered = None
            call.line.close()
            self._inbox(("call_over", call))

    def _send_bye(self, call: SipCall) -> None:
        if call.bye_sent:
            return
        call.bye_sent = True
        self._send_in_dialog(call.dialog, "BYE", [])

    def _reinvite(self, req: Message, peer: Peer, txn, to_tag: str) -> None:
        call = self._find_call(req)
        if call is None:
            self._reply(req, peer, 481, "Call/Transaction Does Not Exist", txn=txn)
            return
        delayed = not req.body.strip()
        try:
            media = call.line.media if delayed else negotiate(parse_offer(req.body))
        except SipParseError:
            media = None
        if media is None:
            self._reply(req, peer, 488, "Not Acceptable Here", txn=txn)
            return
        call.line.set_media(media)
        call.dialog.remote_cseq = req.cseq[0]
        log.info("call %s: re-INVITE, %s %s", req.call_id, media.codec, media.direction)
        call.ok = self._reply(req, peer, 200, "OK", [("Contact", self._our_contact(peer)),
                                                      ("Content-Type", "application/sdp")],
                              body=call.sdp.offer() if delayed else call.sdp.answer(media), txn=txn)
        call.offered = True if delayed else None   # a re-INVITE without SDP: ours, answered in the ACK
        call.acked = False
        call.answered_at = self.clock()
        call.interval = T1
        self._retransmit_ok(call)

    def _on_info(self, req: Message, peer: Peer, txn) -> None:
        """SIP INFO key presses (application/dtmf-relay), sent by some phones instead of
        RFC 4733."""
        call = self._find_call(req)
        if call is None:
            self._reply(req, peer, 481, "Call/Transaction Does Not Exist", txn=txn)
            return
        if (req.get("content-type") or "").lower().startswith("application/dtmf-relay"):
            for line in req.body.decode("utf-8", "replace").splitlines():
                name, _, value = line.partition("=")
                key = value.strip()
                if name.strip().lower() == "signal" and len(key) == 1 and key in "0123456789*#":
                    call.line.press(key)
        self._reply(req, peer, 200, "OK", txn=txn)

    def _on_notify(self, req: Message, peer: Peer, txn) -> None:
        self._reply(req, peer, 481, "Subscription Does Not Exist", txn=txn)

    # ================================================================ message-waiting
    def _on_subscribe(self, req: Message, peer: Peer, txn) -> None:
        event = (req.get("event") or "").split(";")[0].strip().lower()
        user = self._authenticate(req, peer, txn)
        if user is None:
            return
        if event != "message-summary":
            self._reply(req, peer, 489, "Bad Event", [("Allow-Events", "message-summary")], txn=txn)
            return
        try:
            expires = req.expires()
        except SipParseError:
            self._reply(req, peer, 400, "Bad Request", txn=txn)
            return
        expires = EXPIRES_DEFAULT if expires is None else expires
        if 0 < expires < EXPIRES_MIN:
            self._reply(req, peer, 423, "Interval Too Brief", [("Min-Expires", str(EXPIRES_MIN))], txn=txn)
            return
        expires = min(expires, EXPIRES_MAX)
        to_tag = req.to.params.get("tag")
        now = self.clock()
        if to_tag:
            sub = self.subs.get((req.call_id, to_tag))
            if sub is None or sub.dialog.extension != user:
                self._reply(req, peer, 481, "Subscription Does Not Exist", txn=txn)
                return
            sub.expires_at = now + expires
            sub.dialog.peer = peer
            self._reply(req, peer, 200, "OK", [("Expires", str(expires))], txn=txn)
            if expires == 0:
                self._notify(sub, terminated="timeout")
                self.subs.pop((req.call_id, to_tag), None)
            else:
                self._notify(sub)
            return
        target = urllib.parse.unquote(sipmsg.parse_uri(req.uri).user or "")
        if target == user:
            boxes = self.extensions[user].mailboxes
        elif target in self.config.boxes:
            boxes = (target,)
        else:
            self._reply(req, peer, 404, "Not Found", txn=txn)
            return
        mine = sum(1 for s in self.subs.values() if s.dialog.extension == user)
        if len(self.subs) >= MAX_SUBSCRIPTIONS or mine >= MAX_SUBSCRIPTIONS_PER_EXTENSION:
            self._reply(req, peer, 503, "Service Unavailable", [("Retry-After", "60")], txn=txn)
            return
        contact = self._contact_uri(req)
        try:
            routes = route_set(req.get_all("record-route"))
        except SipParseError:
            contact = None
        if contact is None:
            self._reply(req, peer, 400, "Bad Request", txn=txn)
            return
        tag = secrets.token_hex(6)
        dialog = Dialog(call_id=req.call_id, local_tag=tag, local=f"{req.get('to')};tag={tag}",
                        remote=req.get("from"), remote_tag=req.from_.params.get("tag", ""),
                        target=contact, peer=peer, extension=user, remote_cseq=req.cseq[0],
                        route=routes)
        host = local_address_for(peer.addr[0], self.cfg.host)
        sub = Subscription(dialog, tuple(boxes), f"sip:{target}@{host}", now + expires)
        self._reply(req, peer, 200, "OK", [("Expires", str(expires)), ("Contact", self._our_contact(peer))],
                    to_tag=tag, txn=txn)
        if expires == 0:
            self._notify(sub, terminated="timeout")       # a fetch: one NOTIFY, then over
            return
        self.subs[(req.call_id, tag)] = sub
        log.info("extension %s subscribed to message-summary of %s", user, target)
        self._notify(sub)

    def summary_body(self, boxes, account: str) -> bytes:
        """RFC 3842 §5.2: the boxes' counts added up; "old" is what was listened to."""
        new = sum(self.counts.get(b, {}).get("new", 0) for b in boxes)
        old = sum(self.counts.get(b, {}).get("saved", 0) for b in boxes)
        return (f"Messages-Waiting: {'yes' if new else 'no'}\r\n"
                f"Message-Account: {account}\r\n"
                f"Voice-Message: {new}/{old} (0/0)\r\n").encode()

    def _notify(self, sub: Subscription, terminated: str | None = None) -> None:
        # Never "active;expires=0": a phone re-subscribes when expires runs out (libre
        # at 90 % of it), so a zero would have it re-subscribe at once, again and again.
        left = max(1, int(sub.expires_at - self.clock()))
        state = f"terminated;reason={terminated}" if terminated else f"active;expires={left}"
        self._send_in_dialog(sub.dialog, "NOTIFY", [
            ("Event", "message-summary"), ("Subscription-State", state),
            ("Content-Type", "application/simple-message-summary")],
            self.summary_body(sub.boxes, sub.account),
            on_final=lambda status, key=(sub.dialog.call_id, sub.dialog.local_tag):
                self._notify_answered(key, status))

    def _notify_answered(self, key, status: int) -> None:
        if status in (408, 481) or status >= 500:
            if self.subs.pop(key, None) is not None:
                log.info("subscription %s ended (NOTIFY answered %d)", key[0], status)

    def _counts_changed(self, box: str, counts: dict) -> None:
        if self.counts.get(box) == counts:
            return
        self.counts[box] = counts
        for sub in list(self.subs.values()):
            if box in sub.boxes:
                self._notify(sub)
        for n, ext in self.extensions.items():
            if ext.unsolicited_mwi and box in ext.mailboxes:
                self._unsolicited(n)

    def _unsolicited(self, user: str) -> None:
        """A NOTIFY outside any subscription to each registered contact (what many desk
        phones expect from their server)."""
        ext = self.extensions[user]
        for b in self.bindings[user].values():
            host = local_address_for(b.peer.addr[0], self.cfg.host)
            account = f"sip:{user}@{host}"
            dialog = Dialog(call_id=secrets.token_hex(12), local_tag=secrets.token_hex(6),
                            local=f"<sip:{user}@{host}>", remote=f"<sip:{user}@{host}>", remote_tag="",
                            target=b.uri, peer=b.peer, extension=user)
            dialog.local = f"{dialog.local};tag={dialog.local_tag}"
            self._send_in_dialog(dialog, "NOTIFY", [
                ("Event", "message-summary"), ("Subscription-State", "active"),
                ("Content-Type", "application/simple-message-summary")],
                self.summary_body(ext.mailboxes, account))

    # ================================================================ sending requests
    def _send_in_dialog(self, dialog: Dialog, method: str, extra, body: bytes = b"", on_final=None) -> None:
        dialog.cseq += 1
        peer = next_hop(dialog.route, dialog.peer)
        request_uri, routes = request_target(dialog.route, dialog.target)
        extra = [*(("Route", r) for r in routes), *extra]
        host = local_address_for(peer.addr[0], self.cfg.host)
        branch = "z9hG4bK" + secrets.token_hex(10)
        headers = [
            ("Via", f"SIP/2.0/{peer.transport} {host}:{self.port};branch={branch};rport"),
            ("Max-Forwards", "70"), ("From", dialog.local), ("To", dialog.remote),
            ("Call-ID", dialog.call_id), ("CSeq", f"{dialog.cseq} {method}"),
            ("Contact", self._our_contact(peer)), ("User-Agent", SERVER), *extra]
        data = sipmsg.build(f"{method} {request_uri} SIP/2.0", headers, body)
        ct = ClientTransaction(branch, data, peer, on_final, deadline=self.clock() + TIMER_64T1)
        self.client_txns[branch] = ct
        self.send(peer, data)

        def again():
            if ct.done:
                return
            if self.clock() >= ct.deadline:
                ct.done = True
                self.client_txns.pop(branch, None)
                if on_final is not None:
                    on_final(408)
                return
            if peer.transport == "UDP":
                self.send(peer, data)
                ct.interval = min(2 * ct.interval, T2)
            else:
                ct.interval = TIMER_64T1
            self._at(ct.interval, again)
        self._at(T1 if peer.transport == "UDP" else TIMER_64T1, again)

    def _our_contact(self, peer: Peer) -> str:
        host = local_address_for(peer.addr[0], self.cfg.host)
        tp = ";transport=tcp" if peer.transport == "TCP" else ""
        return f"<sip:linebox@{host}:{self.port}{tp}>"

    def _contact_uri(self, req: Message) -> str | None:
        try:
            contacts = req.contacts()
        except SipParseError:
            return None
        if contacts == "*" or not contacts:
            return None
        return contacts[0].uri.text

    def _shutdown(self) -> None:
        if self.trunk is not None:
            self.trunk.stop()
        for call in list(self.calls.values()):
            self._end_call(call, "shutdown")
        for sub in list(self.subs.values()):
            self._notify(sub, terminated="noresource")
