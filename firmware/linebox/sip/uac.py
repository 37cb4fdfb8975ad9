"""Linebox calling the IP phones (the gateway's inbound half): INVITE forking to every
registered contact of a ring group, CANCEL, the phone's answer bridged to the analog
line, and blind transfer (REFER, RFC 3515) of such a call.

Everything here runs on the SIP service's thread, except `SipPhones.ring` and the
attempt's hooks, which the analog line's thread calls: they only post to the
service's inbox.

RFC 3261 as a UAC: the INVITE is resent at T1, 2T1... over UDP until a response
(§17.1.1.2, Timer A), given up after 64*T1 without one (Timer B); a 2xx is ACKed to the
phone's Contact in a new transaction (§13.2.2.4), every retransmission again; a
non-2xx is ACKed hop by hop with the INVITE's branch (§17.1.1.3); CANCEL goes only
after a provisional response (§9.1), with the INVITE's Via, and a 2xx that crosses it
is ACKed and hung up with BYE. The caller ID, decoded between the first two rings,
follows in an UPDATE (RFC 3311) to phones whose provisional response allows UPDATE,
in the From display name and number (RFC 4916) and P-Asserted-Identity (RFC 3325).
"""

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

from linebox import FRAME
from linebox.caller import CallerId
from linebox.calls.engine import Hangup
from linebox.gateway.bridge import bridged
from linebox.gateway.phones import Phones, RingAttempt
from linebox.sip import message as sipmsg
from linebox.sip.message import SipParseError
from linebox.sip.rtp import JitterBuffer, SipLine, open_rtp_socket
from linebox.sip.sdp import SessionDescription, negotiate, parse_offer
from linebox.sip.transport import Peer, local_address_for

log = logging.getLogger(__name__)

T1, T2 = 0.5, 4.0
TIMER_B = 64 * T1
OFFER_PAYLOADS = ((0, "PCMU"), (8, "PCMA"))
DTMF_PAYLOAD = 101


class BridgedSipLine(SipLine):
    """The phone's leg of a bridged call: `SipLine` whose audio skips the leg's own
    20 ms clock each way, so the delay each way stays under 60 ms
    (bench/gateway_bench.py):

    - phone → line: the analog line's end of the bridge pulls the phone's frames itself
      (``feed``), when it plays them: the socket is read then and the frame comes out of
      an adaptive `JitterBuffer` on the line's clock. One playout buffer, not this leg's
      jitter buffer and then a FIFO into the line, each waiting for its clock's slot;
    - line → phone: the frame in each RTP packet is pulled from the bridge
      (``source``) as the packet leaves, not a slot earlier when the flow ran.

    `linebox.gateway.bridge.bridged` sets both up (``bridge_to``). Until then, and after,
    it is a `SipLine` with the adaptive buffer on its own clock. The socket and the
    buffer are shared by the two threads under a lock."""

    def __init__(self, *args, **kw) -> None:
        self._rx_lock = threading.RLock()
        self.jb = JitterBuffer()
        super().__init__(*args, **kw)
        self.source = None        # callable() -> frame for the next packet, or None
        self._feeding = False     # the bridge pulls the phone's audio (``feed``)

    # -- the bridge's hooks --------------------------------------------------------
    def bridge_to(self, end) -> None:
        """``end`` (the phone's `BridgeEnd`) takes its frames from here and gives ours."""
        with self._rx_lock:
            self.source = end.pull
            self._feeding = True
        end.feeder = self.feed

    def unbridge(self, end) -> None:
        if end.feeder == self.feed:
            end.feeder = None
        with self._rx_lock:
            self.source = None
            self._feeding = False

    def feed(self):
        """The phone's next frame, decoded, for the line playing it now (the line's
        thread); None when none is here (the line plays silence)."""
        with self._rx_lock:
            SipLine._drain(self)
            payload = self.jb.take(self.clock())
        return None if payload is None else self.decode(payload)

    @property
    def trimmed(self) -> int:
        return self.jb.trimmed

    # -- SipLine, under the lock ----------------------------------------------------
    def _send(self, out) -> None:
        if self.source is not None:
            out = self.source()
        super()._send(out)

    def _drain(self) -> None:
        # Bridged, the line's pulls read the socket (``feed``): this leg's own slots
        # need not try too (a failed recvfrom a frame is not free).
        if not self._feeding:
            SipLine._drain(self)

    def _receive_one(self) -> bool:
        with self._rx_lock:
            return super()._receive_one()

    def _next_frame(self, now: float):
        with self._rx_lock:
            return super()._next_frame(now)

    def _audio(self, ts: int, payload: bytes) -> None:
        if len(payload) < FRAME:
            payload += (b"\xff" if self.media.codec == "PCMU" else b"\xd5") * (FRAME - len(payload))
        self.jb.put(ts, payload[:FRAME], self.clock())

    def _playout(self) -> bytes | None:
        return None if self._feeding else self.jb.take(self.clock())


@dataclass
class Fork:
    """One INVITE to one registered contact."""

    attempt: "SipRing"
    extension: str
    uri: str                       # the contact's URI: our Request-URI
    peer: Peer
    call_id: str
    from_tag: str
    from_hdr: str
    to_hdr: str
    branch: str
    cseq: int
    sock: object
    sdp: SessionDescription
    data: bytes = b""
    state: str = "calling"         # calling | proceeding | answered | cancelling | done
    to_tag: str | None = None
    remote_contact: str | None = None
    allows_update: bool = False
    updated: bool = False
    cancel_wanted: bool = False
    response_to: str | None = None  # the To of the phone's response (with its tag)
    ack: bytes = b""                # the ACK to its 2xx, for the 2xx's retransmissions
    interval: float = T1
    sent_at: float = field(default_factory=time.monotonic)
    invite_cseq: int = 0            # the INVITE's number, which its ACK and CANCEL carry

    def __post_init__(self) -> None:
        self.invite_cseq = self.cseq   # (cseq itself grows with each UPDATE)


class SipRing(RingAttempt):
    """A ring attempt over SIP: its hooks hand over to the SIP thread."""

    def __init__(self, uac: "SipPhones", line_id, extensions, callerid) -> None:
        super().__init__(line_id, extensions, callerid)
        self.uac = uac
        self.forks: list[Fork] = []

    def _stop_ringing(self, reason: str) -> None:
        self.uac.post("cancel", self, reason)

    def _show_caller(self, callerid: CallerId) -> None:
        self.uac.post("callerid", self)


class SipPhones(Phones):
    """The SIP service's phones: rings registered contacts, bridges the one that answers."""

    def __init__(self, service) -> None:
        self.sip = service
        self.forks: dict[str, Fork] = {}          # by branch (INVITE, and CANCEL: the same)
        self.by_call_id: dict[str, Fork] = {}
        self.legs: dict[tuple, SipRing] = {}      # (call-id, our tag) -> attempt, once bridged
        self._aside: set[str] = set()             # branches of our UPDATEs/NOTIFYs in flight

    # ---------------------------------------------------------------- from the line
    def ring(self, line_id, extensions, callerid):
        contacts = []
        for ext in extensions:
            bindings = self.sip.bindings.get(ext) or {}
            contacts += [(ext, b.uri, b.peer) for b in list(bindings.values())]
        if not contacts:
            return None
        attempt = SipRing(self, line_id, tuple(dict.fromkeys(e for e, _, _ in contacts)), callerid)
        self.post("ring", attempt, contacts)
        return attempt

    def post(self, *item) -> None:
        self.sip.inbox.put(("uac", *item))
        self.sip._wake()

    # ---------------------------------------------------------------- on the SIP thread
    def handle(self, item) -> None:
        kind = item[0]
        if kind == "ring":
            self._ring(item[1], item[2])
        elif kind == "cancel":
            for fork in item[1].forks:
                self._cancel(fork)
        elif kind == "callerid":
            for fork in item[1].forks:
                self._maybe_update(fork)

    def _ring(self, attempt: SipRing, contacts) -> None:
        if not attempt.ringing:
            return                        # cancelled before we got to it
        name, number = self.caller_display(attempt.line_id, attempt.caller)
        for ext, uri, peer in contacts:
            host = local_address_for(peer.addr[0], self.sip.cfg.host)
            sock = open_rtp_socket(host if self.sip.cfg.host in ("0.0.0.0", "") else self.sip.cfg.host)
            sdp = SessionDescription(host, sock.getsockname()[1])
            tag = secrets.token_hex(6)
            fork = Fork(attempt=attempt, extension=ext, uri=uri, peer=peer,
                        call_id=secrets.token_hex(12) + "@linebox", from_tag=tag,
                        from_hdr=f'"{_quote(name)}" <sip:{number}@{host}>;tag={tag}',
                        to_hdr=f"<sip:{ext}@{host}>", branch="z9hG4bK" + secrets.token_hex(10),
                        cseq=secrets.randbelow(10000) + 1, sock=sock, sdp=sdp)
            fork.data = self._invite(fork, host)
            attempt.forks.append(fork)
            self.forks[fork.branch] = fork
            self.by_call_id[fork.call_id] = fork
            self.sip.send(peer, fork.data)
            self._timer_a(fork)
            log.info("line %s: ringing extension %s at %s", attempt.line_id, ext, uri)

    def _via(self, fork: Fork, host: str, branch: str | None = None) -> str:
        return f"SIP/2.0/{fork.peer.transport} {host}:{self.sip.port};branch={branch or fork.branch};rport"

    def _invite(self, fork: Fork, host: str) -> bytes:
        pts = [p for p, _ in OFFER_PAYLOADS] + [DTMF_PAYLOAD]
        sdp = fork.sdp
        body = "\r\n".join([
            "v=0", f"o=linebox {sdp.id} {sdp.version} IN IP4 {host}", "s=Linebox",
            f"c=IN IP4 {host}", "t=0 0", f"m=audio {sdp.port} RTP/AVP {' '.join(map(str, pts))}",
            *[f"a=rtpmap:{p} {n}/8000" for p, n in OFFER_PAYLOADS],
            f"a=rtpmap:{DTMF_PAYLOAD} telephone-event/8000", f"a=fmtp:{DTMF_PAYLOAD} 0-15",
            "a=ptime:20", "a=sendrecv", ""]).encode()
        return sipmsg.build(f"INVITE {fork.uri} SIP/2.0", [
            ("Via", self._via(fork, host)), ("Max-Forwards", "70"),
            ("From", fork.from_hdr), ("To", fork.to_hdr), ("Call-ID", fork.call_id),
            ("CSeq", f"{fork.cseq} INVITE"), ("Contact", self.sip._our_contact(fork.peer)),
            ("Allow", self.sip.allow), ("User-Agent", "Linebox"), ("Content-Type", "application/sdp")], body)

    def _timer_a(self, fork: Fork) -> None:
        def again():
            if fork.state != "calling":
                return
            if time.monotonic() - fork.sent_at >= TIMER_B:
                log.info("extension %s: no answer to INVITE (%s)", fork.extension, fork.uri)
                self._fork_over(fork)
                return
            if fork.peer.transport == "UDP":
                self.sip.send(fork.peer, fork.data)
            fork.interval = min(2 * fork.interval, T2)
            self.sip._at(fork.interval, again)
        self.sip._at(fork.interval if fork.peer.transport == "UDP" else TIMER_B, again)

    def response(self, resp) -> bool:
        """A response to one of our requests: True if it was ours (INVITE, CANCEL,
        UPDATE, NOTIFY of a transfer)."""
        branch = resp.vias[0].branch or ""
        if branch in self._aside:
            if resp.status >= 200:
                self._aside.discard(branch)
            return True
        fork = self.forks.get(branch)
        if fork is None:
            # A 2xx retransmitted after its fork was answered: its Call-ID still tells.
            if resp.cseq[1] != "INVITE" or resp.status // 100 != 2:
                return False
            fork = self.by_call_id.get(resp.call_id)
            if fork is None:
                return False
        if resp.cseq[1] != "INVITE":
            return True                       # the 200 to our CANCEL
        if resp.status < 200:
            self._provisional(fork, resp)
        elif resp.status < 300:
            self._answer(fork, resp)
        else:
            self._refused(fork, resp)
        return True

    def _provisional(self, fork: Fork, resp) -> None:
        if fork.state == "calling":
            fork.state = "proceeding"
        tag = resp.to.params.get("tag")
        if tag and fork.to_tag is None:
            fork.to_tag = tag
            fork.response_to = resp.get("to")
            allow = (resp.get("allow") or "").upper()
            fork.allows_update = "UPDATE" in [a.strip() for a in allow.split(",")]
            contacts = _contacts(resp)
            fork.remote_contact = contacts or fork.uri
        if fork.cancel_wanted:
            self._cancel(fork)
        else:
            self._maybe_update(fork)

    def _maybe_update(self, fork: Fork) -> None:
        cid = fork.attempt.caller
        if (fork.updated or fork.state != "proceeding" or not fork.allows_update
                or not (cid.number or cid.name)):
            return
        fork.updated = True
        host = local_address_for(fork.peer.addr[0], self.sip.cfg.host)
        name, number = self.caller_display(fork.attempt.line_id, cid)
        ident = f'"{_quote(name)}" <sip:{number}@{host}>'
        fork.cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(10)
        self._aside.add(branch)
        self.sip.send(fork.peer, sipmsg.build(f"UPDATE {fork.remote_contact} SIP/2.0", [
            ("Via", self._via(fork, host, branch)), ("Max-Forwards", "70"),
            ("From", f"{ident};tag={fork.from_tag}"), ("To", fork.response_to),
            ("Call-ID", fork.call_id), ("CSeq", f"{fork.cseq} UPDATE"),
            ("Contact", self.sip._our_contact(fork.peer)), ("P-Asserted-Identity", ident)]))
        log.info("extension %s: caller ID %s sent in an UPDATE", fork.extension, number)

    def _cancel(self, fork: Fork) -> None:
        if fork.state == "calling":
            fork.cancel_wanted = True          # RFC 3261 §9.1: not before a provisional
            return
        if fork.state != "proceeding":
            return
        fork.state = "cancelling"
        host = local_address_for(fork.peer.addr[0], self.sip.cfg.host)
        data = sipmsg.build(f"CANCEL {fork.uri} SIP/2.0", [
            ("Via", self._via(fork, host)), ("Max-Forwards", "70"), ("From", fork.from_hdr),
            ("To", fork.to_hdr), ("Call-ID", fork.call_id), ("CSeq", f"{fork.invite_cseq} CANCEL")])
        self.sip.send(fork.peer, data)
        sent = time.monotonic()
        interval = [T1]

        def again():
            if fork.state != "cancelling" or time.monotonic() - sent >= TIMER_B:
                if fork.state == "cancelling":
                    self._fork_over(fork)
                return
            if fork.peer.transport == "UDP":
                self.sip.send(fork.peer, data)
            interval[0] = min(2 * interval[0], T2)
            self.sip._at(interval[0], again)
        self.sip._at(T1, again)

    def _refused(self, fork: Fork, resp) -> None:
        # Hop-by-hop ACK (§17.1.1.3): the INVITE's branch and Request-URI, their To.
        host = local_address_for(fork.peer.addr[0], self.sip.cfg.host)
        self.sip.send(fork.peer, sipmsg.build(f"ACK {fork.uri} SIP/2.0", [
            ("Via", self._via(fork, host)), ("Max-Forwards", "70"), ("From", fork.from_hdr),
            ("To", resp.get("to")), ("Call-ID", fork.call_id), ("CSeq", f"{fork.invite_cseq} ACK")]))
        if fork.state in ("done", "answered"):
            return
        if resp.status != 487:
            log.info("extension %s: INVITE answered %d %s", fork.extension, resp.status, resp.reason)
        self._fork_over(fork)

    def _fork_over(self, fork: Fork) -> None:
        if fork.state == "done":
            return
        fork.state = "done"
        self.forks.pop(fork.branch, None)
        if fork.ack == b"":
            self.by_call_id.pop(fork.call_id, None)
        try:
            fork.sock.close()
        except OSError:
            pass
        attempt = fork.attempt
        if attempt.ringing and all(f.state == "done" for f in attempt.forks):
            attempt.failed("no phone answered")

    def _answer(self, fork: Fork, resp) -> None:
        if fork.ack:
            self.sip.send(fork.peer, fork.ack)      # a retransmitted 2xx: the same ACK
            return
        host = local_address_for(fork.peer.addr[0], self.sip.cfg.host)
        target = _contacts(resp) or fork.remote_contact or fork.uri
        fork.to_tag = resp.to.params.get("tag", "")
        fork.response_to = resp.get("to")
        fork.ack = sipmsg.build(f"ACK {target} SIP/2.0", [
            ("Via", self._via(fork, host, "z9hG4bK" + secrets.token_hex(10))), ("Max-Forwards", "70"),
            ("From", fork.from_hdr), ("To", fork.response_to), ("Call-ID", fork.call_id),
            ("CSeq", f"{fork.invite_cseq} ACK")])
        self.sip.send(fork.peer, fork.ack)
        was = fork.state
        fork.state = "answered"
        self.forks.pop(fork.branch, None)
        try:
            media = negotiate(parse_offer(resp.body))
        except SipParseError:
            media = None
        # Our next request in the dialog (BYE, NOTIFY) numbers on from the last one we
        # sent in it (the INVITE, or a caller-ID UPDATE after it).
        dialog = self.sip.new_dialog(fork.call_id, fork.from_tag, fork.from_hdr, fork.response_to,
                                     fork.to_tag, target, fork.peer, fork.extension, fork.cseq)
        attempt = fork.attempt
        bridge = attempt.answered(fork.extension) if media is not None and was != "cancelling" else None
        if bridge is None:
            # Too late (another phone, the voicemail route, the caller gone) or no codec.
            self.sip._send_in_dialog(dialog, "BYE", [])
            fork.sock.close()
            log.info("extension %s answered too late: hung up", fork.extension)
            return
        log.info("line %s: extension %s answered (%s)", attempt.line_id, fork.extension, media.codec)
        for other in attempt.forks:
            if other is not fork:
                self._cancel(other)
        self.legs[(fork.call_id, fork.from_tag)] = attempt
        end = bridge.phone_end

        def flow(call):
            try:
                yield from bridged(call, end)
            except Hangup:
                return
        line = BridgedSipLine(fork.sock, media, fork.peer.addr[0])
        self.sip.start_leg(dialog, line, fork.sdp, flow, fork.extension, CallerId(number=fork.extension))

    # ---------------------------------------------------------------- REFER
    def refer(self, req, peer, txn, call) -> None:
        """A bridged phone's blind transfer: 202, NOTIFY sipfrag, then the line leg
        moves to the target (an extension or a box) and this phone's leg ends."""
        key = (call.dialog.call_id, call.dialog.local_tag)
        attempt = self.legs.get(key)
        if attempt is None or attempt.bridge is None:
            self.sip._reply(req, peer, 403, "Forbidden", txn=txn)      # only a gateway call
            return
        try:
            target = sipmsg.parse_address(req.get("refer-to")).uri.user or ""
        except (SipParseError, AttributeError, TypeError):
            target = ""
        import urllib.parse
        target = urllib.parse.unquote(target)
        if target in self.sip.config.boxes:
            kind = "box"
        elif target in self.sip.extensions:
            kind = "extension"
        else:
            log.info("extension %s: REFER to %r: no such extension or box", call.dialog.extension, target)
            self.sip._reply(req, peer, 404, "Not Found", txn=txn)
            return
        self.sip._reply(req, peer, 202, "Accepted", [("Contact", self.sip._our_contact(peer))], txn=txn)
        log.info("extension %s transferred line %s to %s %s", call.dialog.extension,
                 attempt.line_id, kind, target)
        attempt.transfer(kind, target)
        # The transfer is ours to carry out, at once (a blind transfer): the transferor
        # learns it is done (RFC 3515 §2.4.5), then its leg ends.
        for frag, state in (("SIP/2.0 100 Trying", "active;expires=60"),
                            ("SIP/2.0 200 OK", "terminated;reason=noresource")):
            self.sip._send_in_dialog(call.dialog, "NOTIFY", [
                ("Event", "refer"), ("Subscription-State", state),
                ("Content-Type", "message/sipfrag;version=2.0")], frag.encode() + b"\r\n")
        attempt.bridge.phone_end.close("transfer")

    def leg_over(self, call) -> None:
        self.legs.pop((call.dialog.call_id, call.dialog.local_tag), None)
        self.by_call_id.pop(call.dialog.call_id, None)


def _contacts(msg) -> str | None:
    try:
        contacts = msg.contacts()
    except SipParseError:
        return None
    if contacts == "*" or not contacts:
        return None
    return contacts[0].uri.text


def _quote(text: str) -> str:
    return text.replace("\\", "").replace('"', "")
