"""The SIP side of a phone's call out through an analog line (gateway/outbound.py).

An INVITE to ``<outbound_prefix><number>`` (or an emergency number) from an
authenticated extension: 100 Trying, then the line's progress decides (RFC 3261
§13.3.1): dial tone heard -> 183 Session Progress with the SDP answer and early media
(the phone hears the dialling, ringback, SIT); busy -> 486, reorder or no dial tone ->
503, SIT -> 404, ringback for 3 minutes -> 480; the answer (voice, or the end of
ringback) -> 200 OK with the same SDP, resent until the ACK. The phone's CANCEL before
the answer gets 487 and puts the line on-hook; its BYE after it too; the line hanging
up sends the phone a BYE (the call's runner ends, as any call's does).

The call's audio is an ordinary SIP call's (a LineRunner over a SipLine on the shared
media clock) running the bridge's ``bridged`` flow on the phone's end.
"""

import logging

from linebox.caller import CallerId
from linebox.calls.engine import LineRunner
from linebox.gateway.bridge import bridged
from linebox.gateway.outbound import KeysAsTones, Outbound, Refused
from linebox.sip.rtp import SipLine, open_rtp_socket
from linebox.sip.sdp import SessionDescription
from linebox.sip.transport import local_address_for

log = logging.getLogger(__name__)


class OutboundInvites:
    """The outbound route of a SipService (``svc``)."""

    def __init__(self, svc) -> None:
        self.svc = svc
        self.router = Outbound(svc.config, lambda: svc.app.runners) if svc.config.lines else None

    def number_for(self, dialled: str):
        """(number, emergency) when ``dialled`` goes out through a line, else None."""
        return self.router.number_for(dialled) if self.router is not None else None

    # ------------------------------------------------------------ the INVITE
    def invite(self, req, peer, txn, user: str, ext, number: str, media, contact: str,
               tag: str, dialled: str) -> None:
        svc = self.svc
        emergency = number in svc.config.gateway.emergency
        local = local_address_for(peer.addr[0], svc.cfg.host)
        sock = open_rtp_socket(local if svc.cfg.host in ("0.0.0.0", "") else svc.cfg.host)
        sdp = SessionDescription(local, sock.getsockname()[1])
        from linebox.sip.server import Dialog, SipCall

        dialog = Dialog(call_id=req.call_id, local_tag=tag, local=f"{req.get('to')};tag={tag}",
                        remote=req.get("from"), remote_tag=req.from_.params.get("tag", ""),
                        target=contact, peer=peer, extension=user, remote_cseq=req.cseq[0])
        call = SipCall(dialog=dialog, line=SipLine(sock, media, peer.addr[0]), sdp=sdp,
                       invite_branch=txn.key[0])
        call.outbound = _Pending(req, peer, txn, ext, dialled)
        with svc.lock:
            try:
                oc = self.router.place(ext, number, emergency)
            except Refused as e:
                sock.close()
                # A number refused by the patterns may be toll fraud with a stolen password:
                # worth a warning; a busy line is an everyday thing.
                (log.warning if e.status == 403 else log.info)(
                    "extension %s from %s dialled %s: %d %s (%s)", user, peer.addr[0], dialled,
                    e.status, e.reason, e)
                svc._reply(req, peer, e.status, e.reason, to_tag=tag, txn=txn)
                return
            call.outbound.oc = oc
            oc.on_change(lambda _oc: self._changed(call))
        svc._reply(req, peer, 100, "Trying", txn=txn)
        svc.calls[(req.call_id, tag)] = call
        svc.calls_by_id[req.call_id] = call
        log.info("extension %s dialled %s: out through a line to %s%s", user, dialled, number,
                 " (emergency)" if emergency else "")

    def _changed(self, call) -> None:
        """On the line's thread, under the appliance lock: hand over to the SIP thread."""
        self.svc.inbox.put(("outbound", call))
        self.svc._wake()

    # ------------------------------------------------------------ the line's progress
    def progress(self, call) -> None:
        """On the SIP thread: tell the phone what the line did."""
        svc = self.svc
        p = call.outbound
        oc = p.oc
        state = oc.state
        if call.ended is not None and state != "ended":
            return                               # the phone gave up meanwhile
        if state == "early" and not p.early:
            p.early = True
            svc._reply(p.req, p.peer, 183, "Session Progress", self._answer_headers(call),
                       to_tag=call.dialog.local_tag, body=call.sdp.answer(call.line.media), txn=p.txn)
            self._start_media(call)
        elif state == "answered" and not call.ok:
            if call.runner is None:
                self._start_media(call)
            call.ok = svc._reply(p.req, p.peer, 200, "OK", self._answer_headers(call),
                                 to_tag=call.dialog.local_tag, body=call.sdp.answer(call.line.media),
                                 txn=p.txn)
            call.answered_at = svc.clock()
            svc._retransmit_ok(call)
            log.info("call %s: answered on line %s", call.dialog.call_id, oc.line_id)
        elif state == "failed" and not call.ok:
            call.ended = f"failed:{oc.result}"
            log.info("call %s: line %s: %s: %d %s", call.dialog.call_id, oc.line_id, oc.result,
                     oc.status, oc.reason)
            svc._reply(p.req, p.peer, oc.status, oc.reason, to_tag=call.dialog.local_tag, txn=p.txn)
            if call.runner is None:
                self._forget(call)
            else:
                call.line.end("rejected")
        # "ended" after the answer: the phone's runner sees the bridge closed and ends;
        # the call's end then sends the BYE as for any call.

    def cancel(self, call, cause: str = "cancel") -> None:
        """The phone's CANCEL (or shutdown) before the answer: 487, the line on-hook."""
        svc = self.svc
        p = call.outbound
        if call.ok or call.ended is not None:
            return
        call.ended = cause
        svc._reply(p.req, p.peer, 487 if cause == "cancel" else 503,
                   "Request Terminated" if cause == "cancel" else "Service Unavailable",
                   to_tag=call.dialog.local_tag, txn=p.txn)
        if p.oc is not None:
            with svc.lock:
                p.oc.hang_up(cause)
        if call.runner is None:
            self._forget(call)
        else:
            call.line.end(cause)

    # ------------------------------------------------------------ inside
    def _answer_headers(self, call):
        from linebox.sip.server import ALLOW

        return [("Contact", self.svc._our_contact(call.dialog.peer)), ("Allow", ALLOW),
                ("Content-Type", "application/sdp")]

    def _start_media(self, call) -> None:
        """The phone's leg: RTP both ways from now (early media), bridged to the line."""
        svc = self.svc
        p = call.outbound
        from linebox.sip.server import MEDIA_PHASES, _ExtensionBus

        bus = _ExtensionBus(svc.app.bus, p.ext.number)
        end = p.oc.phone_end

        def flow(leg):
            return bridged(leg, KeysAsTones(end, leg))
        with svc.lock:
            # (No sip_call event: that is a phone calling Linebox's voicemail; the line
            # publishes outbound_start / outbound_end for this one.)
            call.runner = LineRunner(call.line, None, "us", bus, flow, rings_needed=lambda: 0)
            # No listener on the phone's leg: the line's side listens (the bridge).
            call.runner.start_call(flow, CallerId(number=p.ext.number, name=p.ext.name),
                                   listen=False)
        svc._media_next_phase = (svc._media_next_phase + 1) % MEDIA_PHASES
        call.line.align(svc._media_slot(svc._media_next_phase))
        with svc._media_lock:
            svc._media_calls.append(call)
        svc._media_wake.set()

    def _forget(self, call) -> None:
        svc = self.svc
        call.line.close()
        svc.calls.pop((call.dialog.call_id, call.dialog.local_tag), None)
        if svc.calls_by_id.get(call.dialog.call_id) is call:
            del svc.calls_by_id[call.dialog.call_id]


class _Pending:
    """What the SIP side keeps of an outbound INVITE until its final response."""

    def __init__(self, req, peer, txn, ext, dialled: str) -> None:
        self.req = req
        self.peer = peer
        self.txn = txn
        self.ext = ext
        self.dialled = dialled
        self.oc = None
        self.early = False
