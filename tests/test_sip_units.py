"""The SIP pieces one by one: digest answers and their replay, the per-address limit,
the dial plan, SDP negotiation, the [sip] and [[extension]] tables and
`linebox sip-password`."""

import tomllib

import pytest

from conftest import run_linebox
from linebox.config import ConfigError, parse_config
from linebox.sip.auth import DigestAuth, FailureLimiter, Verdict, ha1, md5, parse_authorization
from linebox.sip.sdp import SessionDescription, negotiate, negotiate_answer, parse_offer
from linebox.sip.server import dial_plan
from linebox.voicemail.pins import hash_pin

REALM = "office"
URI = "sip:127.0.0.1:5060"


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _answer(challenge: str, password: str = "pw", nc: int = 1, method="REGISTER", uri=URI, user="201") -> str:
    p = parse_authorization(challenge)
    h1 = ha1(user, p["realm"], password)
    ncs = f"{nc:08x}"
    resp = md5(f"{h1}:{p['nonce']}:{ncs}:c1:auth:{md5(f'{method}:{uri}')}")
    return (f'Digest username="{user}", realm="{p["realm"]}", nonce="{p["nonce"]}", uri="{uri}", '
            f'response="{resp}", algorithm=MD5, qop=auth, nc={ncs}, cnonce="c1"')


def _auth(clock=None):
    return DigestAuth(REALM, {"201": ha1("201", REALM, "pw")}, clock or Clock())


def test_a_right_digest_answer_is_accepted_once_per_nonce_count():
    auth = _auth()
    ch = auth.challenge()
    assert auth.check("REGISTER", URI, _answer(ch), ("10.0.0.5", 5060)) == (Verdict.OK, "201")
    # The same nonce count again is a replay.
    assert auth.check("REGISTER", URI, _answer(ch), ("10.0.0.5", 5060))[0] == Verdict.FAILED
    assert auth.check("REGISTER", URI, _answer(ch, nc=2), ("10.0.0.5", 5060))[0] == Verdict.OK


def test_wrong_password_unknown_user_and_other_uri_fail():
    auth = _auth()
    src = ("10.0.0.5", 5060)
    assert auth.check("REGISTER", URI, _answer(auth.challenge(), "bad"), src)[0] == Verdict.FAILED
    assert auth.check("REGISTER", URI, _answer(auth.challenge(), user="299"), src)[0] == Verdict.FAILED
    assert auth.check("REGISTER", URI, _answer(auth.challenge(), uri="sip:other"), src)[0] == Verdict.FAILED
    assert auth.check("INVITE", URI, _answer(auth.challenge()), src)[0] == Verdict.FAILED


def test_an_expired_nonce_gets_a_fresh_challenge_not_a_failure():
    clock = Clock()
    auth = _auth(clock)
    ch = auth.challenge()
    clock.t += 301
    assert auth.check("REGISTER", URI, _answer(ch), ("10.0.0.5", 5060))[0] == Verdict.CHALLENGE
    assert "stale=true" in auth.challenge(stale=True)


def test_failures_block_only_their_own_address():
    clock = Clock()
    auth = _auth(clock)
    for _ in range(FailureLimiter.BURST):
        auth.check("REGISTER", URI, _answer(auth.challenge(), "bad"), ("10.0.0.66", 5060))
    assert auth.check("REGISTER", URI, _answer(auth.challenge()), ("10.0.0.66", 5060))[0] == Verdict.THROTTLED
    # A right credential from another address is never refused.
    assert auth.check("REGISTER", URI, _answer(auth.challenge()), ("10.0.0.7", 5060))[0] == Verdict.OK
    clock.t += FailureLimiter.REFILL_SECONDS * 2
    assert auth.check("REGISTER", URI, _answer(auth.challenge()), ("10.0.0.66", 5060))[0] == Verdict.OK


class Ext:
    mailboxes = ("100",)


@pytest.mark.parametrize("dialled, route", [
    ("*56100", ("login", "100")), ("*56", ("login", None)), ("*98", ("login", None)),
    ("*97", ("login", "100")), ("101", ("message", "101")), ("*56999", None), ("5551234", None),
    ("", None), ("*9", None),
])
def test_dial_plan(dialled, route):
    assert dial_plan(dialled, Ext(), {"100": 1, "101": 1}) == route


OFFER = (b"v=0\r\no=x 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
         b"m=audio 4000 RTP/AVP 9 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\nDIR\r\n")


def test_sdp_answer_picks_g711_and_telephone_events_and_mirrors_hold():
    media = negotiate(parse_offer(OFFER.replace(b"DIR", b"a=sendrecv")))
    assert (media.codec, media.payload, media.dtmf_payload, media.direction) == ("PCMA", 8, 101, "sendrecv")
    held = negotiate(parse_offer(OFFER.replace(b"DIR", b"a=sendonly")))
    assert held.direction == "recvonly"
    assert negotiate(parse_offer(OFFER.replace(b"9 8 0 101", b"9 18"))) is None


def test_our_offer_to_a_delayed_offer_and_the_answers_we_take():
    offer = parse_offer(SessionDescription("10.0.0.5", 4000).offer())
    assert (offer.host, offer.port, offer.payloads, offer.direction) == ("10.0.0.5", 4000, [0, 8, 101], "sendrecv")
    assert offer.names == {0: "PCMU", 8: "PCMA", 101: "TELEPHONE-EVENT"}

    def answer(m, extra=""):
        return parse_offer(f"v=0\r\nc=IN IP4 10.0.0.9\r\nm=audio 5000 RTP/AVP {m}\r\n{extra}".encode())
    media = negotiate_answer(answer("8 101", "a=rtpmap:101 telephone-event/8000\r\n"))
    assert (media.host, media.port, media.codec, media.dtmf_payload) == ("10.0.0.9", 5000, "PCMA", 101)
    assert negotiate_answer(answer("0")).dtmf_payload is None
    # Not what we offered: another codec, or our codec under a payload type we did not offer.
    assert negotiate_answer(answer("3")) is None
    assert negotiate_answer(answer("96", "a=rtpmap:96 PCMU/8000\r\n")) is None


def _config(extra: str, lines: str = "") -> str:
    return (f'[device]\nid = "t"\n{lines}\n[[box]]\nnumber = "100"\npin_hash = "{hash_pin("1234")}"\n'
            f'[sip]\nlisten = "127.0.0.1:5070"\nrealm = "{REALM}"\n{extra}')


EXT = '[[extension]]\nnumber = "201"\nname = "Alice"\nha1 = "' + ha1("201", REALM, "pw") + '"\nmailboxes = ["100"]\n'


def test_a_sip_only_configuration_is_valid():
    cfg = parse_config(tomllib.loads(_config(EXT)))
    assert cfg.lines == () and cfg.sip.port == 5070 and cfg.extensions["201"].mailboxes == ("100",)


@pytest.mark.parametrize("text, message", [
    (EXT.replace('"201"', '"100"'), "is a box number"),
    (EXT.replace('["100"]', '["999"]'), 'no [[box]] with number "999"'),
    (EXT.replace('ha1 = "', 'ha1 = "x'), "32 lowercase hex digits"),
    (EXT + EXT, "already used"),
    (EXT + "pin = 1\n", "unknown key 'pin'"),
])
def test_bad_extension_tables_are_one_line_errors(text, message):
    with pytest.raises(ConfigError, match="config: ") as e:
        parse_config(tomllib.loads(_config(text)))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_no_line_and_no_sip_is_still_an_error():
    with pytest.raises(ConfigError, match=r"at least one \[\[line\]\]"):
        parse_config(tomllib.loads(f'[[box]]\nnumber = "100"\npin_hash = "{hash_pin("1234")}"\n'))


def test_sip_password_prints_the_ha1_of_the_realm(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(_config(""))
    res = run_linebox("sip-password", "201", "--config", path, input=b"s3cret\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().strip() == md5(f"201:{REALM}:s3cret")
    bad = run_linebox("sip-password", "2x", "--config", path, input=b"s3cret\n")
    assert bad.returncode == 2 and bad.stderr.decode().startswith("linebox: error: ")


def test_only_an_8khz_telephone_event_is_taken():
    offer = (b"v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 4000 RTP/AVP 96 0 99 101\r\na=rtpmap:96 opus/48000/2\r\n"
             b"a=rtpmap:99 telephone-event/48000\r\na=rtpmap:101 telephone-event/8000\r\n")
    media = negotiate(parse_offer(offer))
    assert (media.codec, media.dtmf_payload) == ("PCMU", 101)


def test_route_sets_loose_and_strict_routers_and_the_next_hop():
    from linebox.sip.message import SipParseError
    from linebox.sip.route import next_hop, request_target, route_set
    from linebox.sip.transport import Peer
    phone = "sip:201@10.0.0.7:5062"
    peer = Peer("UDP", ("10.0.0.2", 5060))
    rs = route_set(['<sip:10.0.0.2;lr>, <sip:p2.example;lr>', '<sip:10.0.0.3:5080;lr>'])
    assert rs == ("<sip:10.0.0.2;lr>", "<sip:p2.example;lr>", "<sip:10.0.0.3:5080;lr>")
    assert request_target(rs, phone) == (phone, list(rs))
    assert next_hop(rs, peer) == Peer("UDP", ("10.0.0.2", 5060))
    assert next_hop(("<sip:10.0.0.9:5070;lr>",), peer) == Peer("UDP", ("10.0.0.9", 5070))
    # A strict router (no lr): its URI is the Request-URI, the phone's Contact goes last.
    assert request_target(("<sip:10.0.0.2>", "<sip:10.0.0.3;lr>"), phone) == (
        "sip:10.0.0.2", ["<sip:10.0.0.3;lr>", f"<{phone}>"])
    # A name, or another transport: where the dialog's requests came from.
    assert next_hop(("<sip:proxy.example;lr>",), peer) == peer
    assert next_hop(("<sip:10.0.0.9;lr;transport=tcp>",), peer) == peer
    assert request_target((), phone) == (phone, [])
    for bad in (["sip:10.0.0.2;lr"], ["<mailto:x@y>"], [", ".join(["<sip:10.0.0.2;lr>"] * 9)]):
        with pytest.raises(SipParseError):
            route_set(bad)
