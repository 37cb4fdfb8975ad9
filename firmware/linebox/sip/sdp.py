"""SDP offer/answer for one audio stream (RFC 4566, RFC 3264): PCMU or PCMA at 20 ms,
and RFC 4733 telephone-event when the phone offers it. To an INVITE without SDP (a
delayed offer, RFC 3261 §13.2.1) we offer all three, and the phone's answer in its ACK
goes through the same `negotiate`."""

import re
import time
from dataclasses import dataclass

from linebox.sip.message import SipParseError

STATIC = {0: "PCMU", 8: "PCMA"}
OFFER_DTMF_PAYLOAD = 101          # our telephone-event payload type when we offer
# What a phone's answer to our offer must keep to (RFC 3264 §6.1: a subset of the offer).
OFFERED = {0: "PCMU", 8: "PCMA", OFFER_DTMF_PAYLOAD: "TELEPHONE-EVENT"}
_RTPMAP = re.compile(r"([0-9]{1,3}) ([A-Za-z0-9_.-]+)/([0-9]+)(?:/[0-9]+)?")


@dataclass
class Offer:
    """What the phone's SDP says about its audio."""

    host: str
    port: int
    payloads: list[int]
    names: dict[int, str]         # payload type -> encoding name, upper case
    direction: str                # sendrecv | sendonly | recvonly | inactive

    @property
    def on_hold(self) -> bool:
        return self.direction in ("sendonly", "inactive") or self.host == "0.0.0.0"


@dataclass
class Media:
    """What was agreed: where to send, in what, and whether each side sends."""

    host: str
    port: int
    codec: str                    # PCMU | PCMA
    payload: int
    dtmf_payload: int | None
    direction: str                # our direction, as in our answer


def parse_offer(body: bytes) -> Offer:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("SDP not UTF-8") from None
    session_host = None
    media: Offer | None = None
    direction = "sendrecv"
    for line in text.splitlines():
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:].strip()
        if kind == "c":
            parts = value.split()
            if len(parts) != 3 or parts[0] != "IN" or parts[1] != "IP4":
                raise SipParseError("SDP: only IN IP4 connections")
            host = parts[2].split("/")[0]
            if media is None:
                session_host = host
            else:
                media.host = host
        elif kind == "m":
            if media is not None:
                break                          # the first audio stream is the one we use
            parts = value.split()
            if len(parts) < 4 or parts[0] != "audio" or parts[2] != "RTP/AVP":
                continue
            if not parts[1].isdigit() or not all(p.isdigit() and int(p) < 128 for p in parts[3:]):
                raise SipParseError("SDP: bad m= line")
            pts = [int(p) for p in parts[3:]]
            media = Offer(host=session_host or "", port=int(parts[1]), payloads=pts,
                          names={p: STATIC[p] for p in pts if p in STATIC}, direction=direction)
        elif kind == "a":
            if value in ("sendrecv", "sendonly", "recvonly", "inactive"):
                if media is None:
                    direction = value
                else:
                    media.direction = value
            elif value.startswith("rtpmap:") and media is not None:
                m = _RTPMAP.fullmatch(value[7:].strip())
                if m and int(m.group(1)) in media.payloads:
                    # Only 8 kHz ones are ours (opus/48000, telephone-event/48000 are not).
                    name = m.group(2).upper()
                    media.names[int(m.group(1))] = name if m.group(3) == "8000" else f"{name}/{m.group(3)}"
    if media is None:
        raise SipParseError("SDP: no RTP/AVP audio stream")
    if not media.host or not 0 <= media.port < 65536:
        raise SipParseError("SDP: no connection address")
    return media


def negotiate(offer: Offer) -> Media | None:
    """Our choice from the phone's offer; None when we share no codec (488)."""
    codec = next(((p, offer.names[p]) for p in offer.payloads
                  if offer.names.get(p) in ("PCMU", "PCMA")), None)
    if codec is None:
        return None
    dtmf = next((p for p in offer.payloads if offer.names.get(p) == "TELEPHONE-EVENT"), None)
    ours = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}.get(
        offer.direction, "sendrecv")
    if offer.host == "0.0.0.0":
        ours = "inactive" if ours in ("inactive", "sendonly") else "recvonly"
    return Media(host=offer.host, port=offer.port, codec=codec[1], payload=codec[0],
                 dtmf_payload=dtmf, direction=ours)


def negotiate_answer(answer: Offer) -> Media | None:
    """What the phone's answer to our offer settles; None when it kept nothing we
    offered (RFC 3264 §6.1: the answer is a subset of the offer)."""
    kept = [p for p in answer.payloads if OFFERED.get(p) == answer.names.get(p)]
    return negotiate(Offer(answer.host, answer.port, kept, answer.names, answer.direction))


class SessionDescription:
    """Our side of one call's SDP: the origin line keeps its id, the version grows with
    every new answer (RFC 3264 §8)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.id = int(time.time())
        self.version = self.id

    def offer(self) -> bytes:
        """Our offer, when the phone made none: PCMU, PCMA, telephone-event, sendrecv."""
        return self.answer(Media(self.host, self.port, "PCMU", 0, OFFER_DTMF_PAYLOAD, "sendrecv"),
                           extra_codecs=((8, "PCMA"),))

    def answer(self, media: Media, extra_codecs=()) -> bytes:
        self.version += 1
        pts = ([media.payload] + [pt for pt, _ in extra_codecs]
               + ([media.dtmf_payload] if media.dtmf_payload is not None else []))
        lines = [
            "v=0",
            f"o=linebox {self.id} {self.version} IN IP4 {self.host}",
            "s=Linebox",
            f"c=IN IP4 {self.host}",
            "t=0 0",
            f"m=audio {self.port} RTP/AVP {' '.join(map(str, pts))}",
            f"a=rtpmap:{media.payload} {media.codec}/8000",
            *(f"a=rtpmap:{pt} {name}/8000" for pt, name in extra_codecs),
        ]
        if media.dtmf_payload is not None:
            lines += [f"a=rtpmap:{media.dtmf_payload} telephone-event/8000",
                      f"a=fmtp:{media.dtmf_payload} 0-15"]
        lines += ["a=ptime:20", f"a={media.direction}", ""]
        return "\r\n".join(lines).encode()
