"""SIPp (Debian's sip-tester) against Linebox: twenty calls at once leave messages, a
REGISTER flood with bad credentials is throttled, and malformed requests get a 400 or
silence while the server keeps serving."""

import json
import logging
import math
import socket
import struct
import subprocess
import time

import pytest

from linebox.dsp import g711
from linebox.wavfile import read_wav
from simkit import speech_wav
from sipkit import PASSWORDS, SipDaemon, free_port, write_config

CALLS = 20

# The scenarios, built from one request template: Via, From, To, Call-ID, CSeq (RFC 3261
# §8.1.1), Contact, more headers, Max-Forwards, then an SDP offer or no body.
SERVICE_URI = "sip:[service]@[remote_ip]:[remote_port]"
SERVICE = f"<{SERVICE_URI}>"
CALLER = '"Load" <sip:201@[remote_ip]>;tag=[call_number]'
PHONE = "<sip:201@[remote_ip]>"
SDP = """v=0
o=sipp 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=sendrecv"""


def _send(request: str, cseq: str, frm: str, to: str, *, branch: str = "[branch]",
          contact: bool = False, headers: tuple[str, ...] = (), sdp: bool = False,
          retrans: bool = False) -> str:
    """One SIPp ``<send>`` of a request (``retrans``: resent every 500 ms until answered)."""
    lines = [f"{request} SIP/2.0",
             f"Via: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch};rport",
             f"From: {frm}", f"To: {to}", "Call-ID: [call_id]", f"CSeq: {cseq}"]
    if contact:
        lines.append("Contact: <sip:201@[local_ip]:[local_port]>")
    lines += [*headers, "Max-Forwards: 70"]
    lines += (["Content-Type: application/sdp", "Content-Length: [len]", "", SDP] if sdp
              else ["Content-Length: 0"])
    attr = ' retrans="500"' if retrans else ""
    return f"  <send{attr}><![CDATA[\n" + "\n".join(lines) + "\n  ]]></send>\n"


def _scenario(name: str, *parts: str) -> str:
    return (f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">\n'
            + "".join(parts) + "</scenario>\n")


# The caller: INVITE, answer the digest challenge, then talk (an RFC 3550 stream of a
# mu-law file, looped) through the greeting and the beep and into the recording, and
# hang up after TALK_MS.
UAC = _scenario(
    "leave a message",
    _send(f"INVITE {SERVICE_URI}", "1 INVITE", CALLER, SERVICE, contact=True, sdp=True,
          retrans=True),
    '  <recv response="100" optional="true"/>\n  <recv response="401" auth="true"/>\n',
    _send(f"ACK {SERVICE_URI}", "1 ACK", CALLER, SERVICE + "[peer_tag_param]",
          branch="[branch-3]"),
    _send(f"INVITE {SERVICE_URI}", "2 INVITE", CALLER, SERVICE, contact=True, sdp=True,
          headers=("[authentication username=201 password=PASSWORD]",), retrans=True),
    '  <recv response="100" optional="true"/>\n  <recv response="200" rtd="true" rrs="true"/>\n',
    _send("ACK [next_url]", "2 ACK", CALLER, SERVICE + "[peer_tag_param]"),
    '  <nop><action><exec rtp_stream="SPEECH_FILE,-1,0"/></action></nop>\n'
    '  <pause milliseconds="TALK_MS"/>\n',
    _send("BYE [next_url]", "3 BYE", CALLER, SERVICE + "[peer_tag_param]", retrans=True),
    '  <recv response="200"/>\n')

# The same caller with a delayed offer (RFC 3261 §13.2.1): INVITEs without SDP, Linebox
# offers in its 200, the answer comes in the ACK (here A-law, the second codec offered;
# ACK_BODY, or nothing at all for the test of a missing answer).
DELAYED_UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="delayed offer">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "Load" <sip:201@[remote_ip]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:201@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3];rport
From: "Load" <sip:201@[remote_ip]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0
  ]]></send>
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "Load" <sip:201@[remote_ip]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 2 INVITE
Contact: <sip:201@[local_ip]:[local_port]>
[authentication username=201 password=PASSWORD]
EXTRA_HEADERS
Max-Forwards: 70
Content-Length: 0
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="200" rtd="true" rrs="true">
    <action>
      <ereg regexp="m=audio [0-9]+ RTP/AVP 0 8 101" search_in="body" check_it="true" assign_to="offer"/>
      RESPONSE_CHECKS
    </action>
  </recv>
  <Reference variables="offer"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "Load" <sip:201@[remote_ip]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
ACK_BODY
  ]]></send>
AFTER_ACK
</scenario>
"""
ANSWER_IN_ACK = """Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8
a=rtpmap:8 PCMA/8000
a=sendrecv"""
TALK_THEN_BYE = """  <nop><action><exec rtp_stream="SPEECH_FILE,-1,8"/></action></nop>
  <pause milliseconds="TALK_MS"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "Load" <sip:201@[remote_ip]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 3 BYE
Max-Forwards: 70
Content-Length: 0
  ]]></send>
  <recv response="200"/>"""
AWAIT_BYE = """  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
  ]]></send>"""


def _delayed(headers: str = "", checks: str = "") -> str:
    return (DELAYED_UAC.replace("EXTRA_HEADERS\n", headers + "\n" if headers else "")
            .replace("RESPONSE_CHECKS", checks))


def _alaw_wav(path, samples) -> None:
    """An A-law WAV (format 6) for SIPp's rtp_stream with payload type 8."""
    data = g711.alaw_encode(samples)
    fmt = struct.pack("<HHIIHH", 6, 1, 8000, 8000, 1, 8)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
                     + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)


def test_a_delayed_offer_is_answered_with_ours_and_the_answer_in_the_ack_starts_the_call(
        tmp_path, server, speech_files, caplog):
    caplog.set_level(logging.INFO, logger="linebox")
    voice = read_wav(speech_wav(tmp_path, speech_files[3], 3.0))
    _alaw_wav(tmp_path / "speech.wav", voice)
    scenario = (_delayed().replace("ACK_BODY", ANSWER_IN_ACK).replace("AFTER_ACK", TALK_THEN_BYE)
                .replace("PASSWORD", PASSWORDS["201"]).replace("SPEECH_FILE", str(tmp_path / "speech.wav"))
                .replace("TALK_MS", "14000"))
    res = _sipp(tmp_path, server, scenario, "-s", "101", "-m", "1", "-auth_uri",
                f"101@127.0.0.1:{server.port}", timeout=60)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    server.events.wait("message_saved", box="101")       # saved once the BYE is heard
    (msg,) = server.store.messages("101")
    assert msg["caller_number"] == "201" and 2.0 <= msg["seconds"] <= 12.0, msg
    assert "answer in the ACK, PCMA sendrecv" in caplog.text
    # What was recorded is the A-law speech SIPp sent (with a click where SIPp loops
    # over its WAV header), decoded as A-law: as loud as the speech (mu-law decoding of
    # those bytes would make it about four times louder).
    def rms(x):
        return math.sqrt(sum(v * v for v in x) / len(x))
    heard = read_wav(msg["file"])
    assert 0.5 * rms(voice) < rms(heard) < 2.0 * rms(voice)
    assert rms(g711.ulaw_decode(g711.alaw_encode(voice))) > 3.0 * rms(voice)


def test_an_ack_without_the_answer_to_our_offer_ends_the_call_with_a_bye(tmp_path, server):
    scenario = (_delayed().replace("ACK_BODY", "Content-Length: 0").replace("AFTER_ACK", AWAIT_BYE)
                .replace("PASSWORD", PASSWORDS["201"]))
    res = _sipp(tmp_path, server, scenario, "-s", "101", "-m", "1", "-auth_uri",
                f"101@127.0.0.1:{server.port}", timeout=40)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert not server.daemon.sip.calls
    assert not server.store.messages("101")


# After a call set up with an offer in the INVITE (UAC's first part), a re-INVITE
# without SDP: Linebox offers in its 200, the ACK answers A-law, the call goes on.
REINVITE_WITHOUT_SDP = """  <nop><action><exec rtp_stream="SPEECH_FILE,-1,0"/></action></nop>
  <pause milliseconds="3000"/>
  <send retrans="500"><![CDATA[
INVITE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "Load" <sip:201@[remote_ip]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 3 INVITE
Contact: <sip:201@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0
  ]]></send>
  <recv response="200">
    <action>
      <ereg regexp="m=audio [0-9]+ RTP/AVP 0 8 101" search_in="body" check_it="true" assign_to="reoffer"/>
    </action>
  </recv>
  <Reference variables="reoffer"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "Load" <sip:201@[remote_ip]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 3 ACK
Max-Forwards: 70
ANSWER
  ]]></send>
  <pause milliseconds="3000"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "Load" <sip:201@[remote_ip]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 4 BYE
Max-Forwards: 70
Content-Length: 0
  ]]></send>
  <recv response="200"/>
</scenario>
"""


def test_a_reinvite_without_sdp_gets_our_offer_and_the_ack_s_answer_changes_the_codec(
        tmp_path, server, speech_files, caplog):
    caplog.set_level(logging.INFO, logger="linebox")
    _ulaw_wav(tmp_path / "speech.wav", read_wav(speech_wav(tmp_path, speech_files[3], 3.0)))
    head = UAC[:UAC.index('  <nop><action><exec rtp_stream')]
    scenario = ((head + REINVITE_WITHOUT_SDP).replace("ANSWER", ANSWER_IN_ACK)
                .replace("PASSWORD", PASSWORDS["201"]).replace("SPEECH_FILE", str(tmp_path / "speech.wav")))
    res = _sipp(tmp_path, server, scenario, "-s", "101", "-m", "1", "-auth_uri",
                f"101@127.0.0.1:{server.port}", timeout=40)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "answer in the ACK, PCMA sendrecv" in caplog.text
    deadline = time.monotonic() + 5
    while server.daemon.sip.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.daemon.sip.calls


def test_a_proxy_that_record_routes_stays_in_the_path_of_our_requests(tmp_path, server):
    # The proxy: a socket of the test's, named in the INVITE's Record-Route as a loose
    # router (RFC 3261 §16.6 step 4: what a proxy such as kamailio's record_route() adds).
    proxy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    proxy.bind(("127.0.0.1", 0))
    proxy.settimeout(10)
    rr = f"<sip:127.0.0.1:{proxy.getsockname()[1]};lr;ftag=x>"
    scenario = (_delayed(f"Record-Route: {rr}",
                         '<ereg regexp=".sip:127\\.0\\.0\\.1:[0-9]+;lr;ftag=x." '
                         'search_in="hdr" header="Record-Route:" check_it="true" assign_to="rr"/>')
                .replace('<Reference variables="offer"/>', '<Reference variables="offer,rr"/>')
                .replace("ACK_BODY", "Content-Length: 0").replace("AFTER_ACK", "")
                .replace("PASSWORD", PASSWORDS["201"]))
    res = _sipp(tmp_path, server, scenario, "-s", "101", "-m", "1", "-auth_uri",
                f"101@127.0.0.1:{server.port}", timeout=40)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    # No answer in the ACK: Linebox hangs up, and its BYE goes to the proxy, for the phone.
    data, _ = proxy.recvfrom(65535)
    text = data.decode()
    start, _, rest = text.partition("\r\n")
    assert start.startswith("BYE sip:201@127.0.0.1:") and start.endswith(" SIP/2.0"), start
    headers = [line.split(":", 1) for line in rest.split("\r\n\r\n")[0].split("\r\n")]
    assert [v.strip() for k, v in headers if k.lower() == "route"] == [f"<{rr[1:-1]}>"]
    proxy.close()


# A phone with the wrong password, registering over and over.
REGISTER = "REGISTER sip:[remote_ip]:[remote_port]"
BAD_REGISTER = _scenario(
    "register flood",
    _send(REGISTER, "1 REGISTER", f"{PHONE};tag=[call_number]", PHONE, contact=True,
          headers=("Expires: 600",)),
    '  <recv response="401" auth="true" timeout="1000" ontimeout="done"/>\n',
    _send(REGISTER, "2 REGISTER", f"{PHONE};tag=[call_number]", PHONE, contact=True,
          headers=("[authentication username=201 password=wrong-guess]", "Expires: 600")),
    '  <recv response="403" timeout="1000" ontimeout="done"/>\n  <label id="done"/>\n')


def _ulaw_wav(path, samples) -> None:
    """A mu-law WAV (format 7) for SIPp's rtp_stream, which sends its bytes as they are."""
    data = g711.ulaw_encode(samples)
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
                     + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)


@pytest.fixture
def server(tmp_path):
    d = SipDaemon(write_config(tmp_path, free_port()))
    yield d
    d.stop()


def _sipp(tmp_path, server, scenario: str, *args, timeout=120):
    path = tmp_path / "scenario.xml"
    path.write_text(scenario)
    port = free_port()
    media = free_port()
    cmd = ["sipp", f"127.0.0.1:{server.port}", "-sf", str(path), "-i", "127.0.0.1", "-p", str(port),
           "-mi", "127.0.0.1", "-mp", str(media), "-nostdin", "-trace_stat", "-trace_err",
           "-timeout", f"{timeout - 10}s", "-timeout_error", *args]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, timeout=timeout, text=True)


def test_twenty_sipp_calls_at_once_all_leave_their_message(tmp_path, server, speech_files):
    voice = read_wav(speech_wav(tmp_path, speech_files[3], 3.0))
    _ulaw_wav(tmp_path / "speech.wav", voice)
    scenario = (UAC.replace("PASSWORD", PASSWORDS["201"]).replace("SPEECH_FILE", str(tmp_path / "speech.wav"))
                .replace("TALK_MS", "20000"))
    # SIPp would digest its target address; RFC 2617 §3.2.2.5 wants the Request-URI.
    res = _sipp(tmp_path, server, scenario, "-s", "101", "-m", str(CALLS), "-l", str(CALLS),
                "-r", str(CALLS), "-auth_uri", f"101@127.0.0.1:{server.port}", timeout=150)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    deadline = time.monotonic() + 10         # each is saved once its BYE is heard
    while len(server.events.of("message_saved", box="101")) < CALLS and time.monotonic() < deadline:
        time.sleep(0.05)
    saved = server.events.of("message_saved", box="101")
    assert len(saved) == CALLS, [e for e in server.events.all if e["event"] in ("message_discarded", "record_end", "hangup_detected")]
    msgs = server.store.messages("101")
    assert len(msgs) == CALLS and all(m["caller_number"] == "201" for m in msgs)
    # What followed the greeting and the beep, up to the hang-up.
    assert all(2.0 <= m["seconds"] <= 19.0 for m in msgs), [m["seconds"] for m in msgs]
    deadline = time.monotonic() + 5          # the last call threads are finishing
    while server.daemon.sip.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.daemon.sip.calls


def test_a_message_left_by_an_extension_names_it_in_the_mqtt_event(tmp_path, speech_files):
    from test_mqtt import Broker, Watcher, wait_until
    broker = Broker(tmp_path / "broker").start()
    watcher = Watcher(broker.port)
    server = SipDaemon(write_config(tmp_path, free_port(),
                                    extra=f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'))
    try:
        _ulaw_wav(tmp_path / "speech.wav", read_wav(speech_wav(tmp_path, speech_files[3], 3.0)))
        scenario = (UAC.replace("PASSWORD", PASSWORDS["201"])
                    .replace("SPEECH_FILE", str(tmp_path / "speech.wav")).replace("TALK_MS", "14000"))
        res = _sipp(tmp_path, server, scenario, "-s", "101", "-m", "1", "-auth_uri",
                    f"101@127.0.0.1:{server.port}", timeout=60)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
        saved = server.events.wait("message_saved", box="101")   # saved once the BYE is heard
        assert len(server.events.of("message_saved")) == 1
        assert saved["extension"] == "201" and saved["line"] is None
        topic = "linebox/office/event"

        def reported():
            return [json.loads(p) for p in watcher.of(topic) if json.loads(p)["type"] == "message_saved"]
        wait_until(reported, what="message_saved on MQTT")
        (event,) = reported()
        assert {k: event[k] for k in ("box", "message", "line", "caller_number", "caller_name",
                                      "extension")} == {
            "box": "101", "message": saved["id"], "line": None, "caller_number": "201",
            "caller_name": "Alice", "extension": "201"}
        (msg,) = server.store.messages("101")
        assert msg["extension"] == "201"
    finally:
        server.stop()
        watcher.close()
        broker.stop()


def test_a_call_that_breaks_in_the_shared_media_loop_does_not_take_the_others_with_it(
        tmp_path, server, speech_files, caplog, monkeypatch):
    from linebox.sip import server as sipserver
    broken = []
    start = sipserver.SipService._start_call

    def start_one_broken(self, call, *rest):
        start(self, call, *rest)
        if not broken:                      # the first call's engine fails after 2 s
            broken.append(call)
            process, frames = call.runner.process, [0]

            def failing(tick):
                frames[0] += 1
                if frames[0] > 100:
                    raise RuntimeError("a bug in one call")
                process(tick)
            call.runner.process = failing
    monkeypatch.setattr(sipserver.SipService, "_start_call", start_one_broken)
    _ulaw_wav(tmp_path / "speech.wav", read_wav(speech_wav(tmp_path, speech_files[3], 3.0)))
    scenario = (UAC.replace("PASSWORD", PASSWORDS["201"])
                .replace("SPEECH_FILE", str(tmp_path / "speech.wav")).replace("TALK_MS", "14000"))
    res = _sipp(tmp_path, server, scenario, "-s", "101", "-m", "2", "-l", "2", "-r", "2", "-auth_uri",
                f"101@127.0.0.1:{server.port}", timeout=60)
    # The broken call is hung up by Linebox (its BYE comes while SIPp pauses: that call
    # fails in SIPp's eyes); the other is recorded and saved as usual.
    assert "a bug in one call" in caplog.text
    server.events.wait("message_saved", box="101")
    assert len(server.store.messages("101")) == 1, res.stdout[-2000:]
    assert broken[0].bye_sent
    deadline = time.monotonic() + 5
    while server.daemon.sip.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.daemon.sip.calls and not server.daemon.sip._media_calls


def test_register_flood_with_bad_credentials_is_throttled_and_a_good_phone_still_registers(
        tmp_path, server, caplog):
    res = _sipp(tmp_path, server, BAD_REGISTER, "-m", "60", "-r", "30", "-l", "30", timeout=60)
    sip = server.daemon.sip
    assert sip.auth.limiter.blocked("127.0.0.1")
    assert res.returncode != 0                   # most attempts met silence
    # Sixty wrong answers, but only the first burst was even checked (one log line
    # each, with the address); the rest met silence.
    failures = [r for r in caplog.records if "authentication failed for '201' from 127.0.0.1:" in r.getMessage()]
    assert sip.auth.limiter.BURST <= len(failures) <= sip.auth.limiter.BURST + 2
    # A right credential from another address is never refused (contract §9): the
    # server's own limiter is per address, so 127.0.0.2 registers.
    answer = _register_from("127.0.0.2", server.port, "202", PASSWORDS["202"])
    assert answer.startswith("SIP/2.0 200 OK"), answer


def _request(sock, port, text: str) -> str | None:
    sock.sendto(text.encode(), ("127.0.0.1", port))
    try:
        return sock.recv(8192).decode(errors="replace")
    except TimeoutError:
        return None


def _register_from(host: str, port: int, ext: str, password: str) -> str:
    """A REGISTER answering the challenge, sent from ``host`` (a loopback address)."""
    from linebox.sip.auth import ha1, md5, parse_authorization
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        s.settimeout(3)
        me = s.getsockname()[1]
        uri = f"sip:127.0.0.1:{port}"

        def reg(cseq, auth=""):
            return (f"REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{me};branch=z9hG4bK{cseq}x;rport\r\n"
                    f"From: <sip:{ext}@127.0.0.1>;tag=r1\r\nTo: <sip:{ext}@127.0.0.1>\r\nCall-ID: reg-{host}\r\n"
                    f"CSeq: {cseq} REGISTER\r\nContact: <sip:{ext}@{host}:{me}>\r\nExpires: 600\r\n{auth}"
                    "Content-Length: 0\r\n\r\n")
        first = _request(s, port, reg(1))
        challenge = next(line for line in first.split("\r\n") if line.startswith("WWW-Authenticate:"))
        p = parse_authorization(challenge.split(":", 1)[1])
        h1 = ha1(ext, p["realm"], password)
        resp = md5(f"{h1}:{p['nonce']}:00000001:abc:auth:{md5(f'REGISTER:{uri}')}")
        auth = (f'Authorization: Digest username="{ext}", realm="{p["realm"]}", nonce="{p["nonce"]}", '
                f'uri="{uri}", response="{resp}", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"\r\n')
        return _request(s, port, reg(2, auth))


MALFORMED = [
    b"\x00\x01\x02garbage",
    b"INVITE sip:100@127.0.0.1 SIP/2.0\r\n\r\n",
    b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKa\r\n\r\n",
    b"OPTIONS sip:127.0.0.1 SIP/3.0\r\nVia: x\r\n\r\n",
    b"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bKb\r\n"
    b"From: <sip:201@127.0.0.1>;tag=1\r\nTo: <sip:201@127.0.0.1>\r\nCall-ID: m1\r\nCSeq: x REGISTER\r\n\r\n",
    b"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bKc\r\n"
    b"From: <sip:201@127.0.0.1>;tag=1\r\nTo: <sip:201@127.0.0.1>\r\nCall-ID: m2\r\nCSeq: 1 INVITE\r\n\r\n",
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bKd\r\n"
    b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: m3\r\nCSeq: 1 OPTIONS\r\n"
    b"Content-Length: 99999\r\n\r\n",
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n" + b"X-Long: " + b"a" * 5000 + b"\r\n\r\n",
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n" + b"X: y\r\n" * 200 + b"\r\n",
    b"INVITE sip:*56100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bKe\r\n"
    b"From: <sip:201@127.0.0.1>;tag=1\r\nTo: <sip:*56100@127.0.0.1>\r\nCall-ID: m4\r\nCSeq: 1 INVITE\r\n"
    b"Contact: <sip:201@127.0.0.1:PORT>\r\nContent-Type: application/sdp\r\nContent-Length: 9\r\n\r\nv=0\r\nm=xx",
    b"BYE sip:linebox@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bKf\r\n"
    b"From: <sip:201@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>;tag=nope\r\nCall-ID: m5\r\nCSeq: 1 BYE\r\n\r\n",
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKnone\r\n\r\n",
    "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bKg\r\n"
    "From: <sip:é@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1\r\nCall-ID: m6\r\nCSeq: 1 OPTIONS\r\n\r\n".encode(),
    b"\xff\xfe" * 100 + b"\r\n\r\n",
    b"SUBSCRIBE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bKh\r\n"
    b"From: <sip:201@127.0.0.1>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: m7\r\nCSeq: 1 SUBSCRIBE\r\n"
    b"Event: message-summary\r\nExpires: -5\r\n\r\n",
]


def test_malformed_requests_get_400_or_silence_and_the_server_keeps_serving(tmp_path, server, caplog):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.5)
        me = str(s.getsockname()[1]).encode()
        for data in MALFORMED:
            answer = _request(s, server.port, data.replace(b"PORT", me).decode("latin-1"))
            if answer is not None:
                status = int(answer.split(" ", 2)[1])
                assert status in (400, 401, 481, 488), (data[:60], answer[:200])
    # After all that, a real SIPp OPTIONS ping is answered.
    res = _sipp(tmp_path, server, OPTIONS_PING, "-m", "1", timeout=30)
    assert res.returncode == 0, res.stdout[-2000:]
    assert "Traceback" not in caplog.text and "error handling" not in caplog.text


OPTIONS_PING = _scenario(
    "options",
    _send("OPTIONS sip:[remote_ip]:[remote_port]", "1 OPTIONS",
          "<sip:ping@[local_ip]>;tag=[call_number]", "<sip:[remote_ip]:[remote_port]>"),
    '  <recv response="200"/>\n')


def test_random_bytes_and_mutations_never_break_the_server(server):
    """A fuzzed set: random flips, cuts and repeats of a valid REGISTER; then the server
    still answers a good OPTIONS."""
    import random
    rnd = random.Random(11)
    base = (b"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKfz;rport\r\n"
            b"From: <sip:201@127.0.0.1>;tag=1\r\nTo: <sip:201@127.0.0.1>\r\nCall-ID: fz\r\n"
            b"CSeq: 1 REGISTER\r\nContact: <sip:201@127.0.0.1:5999>\r\nContent-Length: 0\r\n\r\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(300):
            data = bytearray(base.replace(b"z9hG4bKfz", f"z9hG4bKfz{i}".encode()))
            for _ in range(rnd.randint(1, 8)):
                op = rnd.random()
                pos = rnd.randrange(len(data))
                if op < 0.5:
                    data[pos] = rnd.randrange(256)
                elif op < 0.75:
                    del data[pos:pos + rnd.randint(1, 20)]
                else:
                    data[pos:pos] = data[pos:pos + rnd.randint(1, 40)] * rnd.randint(1, 5)
            s.sendto(bytes(data[:8000]), ("127.0.0.1", server.port))
        time.sleep(0.5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(3)
        me = s.getsockname()[1]
        answer = _request(s, server.port, (
            f"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKok\r\n"
            "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: ok\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
    assert answer is not None and answer.startswith("SIP/2.0 200 OK")
    assert server.daemon.sip.thread.is_alive()


def test_parser_refuses_what_it_must(server):
    from linebox.sip.message import SipParseError, parse
    ok = (b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK1\r\n"
          b"f: <sip:a@127.0.0.1>;tag=1\r\nt: b <sip:b@127.0.0.1>\r\ni: x\r\nCSeq: 7 OPTIONS\r\n"
          b"X-Folded: one\r\n two\r\nl: 0\r\n\r\n")
    msg = parse(ok)
    assert msg.method == "OPTIONS" and msg.cseq == (7, "OPTIONS") and msg.get("x-folded") == "one two"
    assert msg.to.name == "b" and msg.from_.params["tag"] == "1"
    for bad in MALFORMED[:9]:
        with pytest.raises(SipParseError):
            parse(bad.replace(b"PORT", b"1"))


def test_a_phone_flooding_new_requests_gets_503_itself_and_the_others_are_still_served(tmp_path, server):
    """A phone stuck sending new requests (baresip 1.0.0's mwi module can SUBSCRIBE in a
    tight loop) used to fill the whole transaction table for 32 s, and every other phone
    got 503; now its own share runs out first."""
    from linebox.sip.server import MAX_TRANSACTIONS, MAX_TRANSACTIONS_PER_ADDRESS
    statuses = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(2)
        me = s.getsockname()[1]
        for n in range(MAX_TRANSACTIONS + 20):
            answer = _request(s, server.port,
                              f"OPTIONS sip:127.0.0.1:{server.port} SIP/2.0\r\n"
                              f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bKloop{n}\r\n"
                              f"From: <sip:201@127.0.0.1>;tag=l\r\nTo: <sip:127.0.0.1>\r\n"
                              f"Call-ID: loop-{n}\r\nCSeq: {n + 1} OPTIONS\r\nContent-Length: 0\r\n\r\n")
            statuses.append(int(answer.split(" ", 2)[1]) if answer else None)
    # Another phone (SIPp, its own socket) is answered while the flooder's share is full.
    res = _sipp(tmp_path, server, OPTIONS_PING, "-m", "1", timeout=30)
    assert res.returncode == 0, res.stdout[-2000:]
    assert statuses[:MAX_TRANSACTIONS_PER_ADDRESS] == [200] * MAX_TRANSACTIONS_PER_ADDRESS
    assert set(statuses[MAX_TRANSACTIONS_PER_ADDRESS:]) == {503}
    assert len(server.daemon.sip.server_txns) == MAX_TRANSACTIONS_PER_ADDRESS + 1 < MAX_TRANSACTIONS
