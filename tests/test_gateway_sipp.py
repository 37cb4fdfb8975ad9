"""Blind transfer (REFER, RFC 3515) of a gateway call, with SIPp as the phone: SIPp
registers as 201, the analog call on line 1 rings it, it answers, then REFERs the call
to box 101; Linebox answers 202, reports the transfer in NOTIFY sipfrag, hangs up the
phone's leg, and the caller leaves a message in box 101."""

import shutil
import subprocess

import pytest

from gatewaykit import GatewayDaemon, gateway_config
from simkit import tone_wav
from sipkit import PASSWORDS, free_port

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="needs SIPp (sip-tester)")

REGISTER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register">
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: <sip:201@[remote_ip]>;tag=[call_number]
To: <sip:201@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:201@[local_ip]:[local_port]>
Expires: 600
Max-Forwards: 70
Content-Length: 0
  ]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: <sip:201@[remote_ip]>;tag=[call_number]
To: <sip:201@[remote_ip]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:201@[local_ip]:[local_port]>
[authentication username=201 password=PASSWORD]
Expires: 600
Max-Forwards: 70
Content-Length: 0
  ]]></send>
  <recv response="200"/>
</scenario>
"""

# The phone: rings, answers, and after a second REFERs the call to TARGET.
TRANSFER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answer then blind transfer">
  <recv request="INVITE">
    <action><ereg regexp=".*" search_in="hdr" header="From:" assign_to="from"/></action>
  </recv>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:201@[local_ip]:[local_port]>
Content-Length: 0
  ]]></send>
  <pause milliseconds="4500"/>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:201@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8
a=rtpmap:8 PCMA/8000
a=sendrecv
  ]]></send>
  <recv request="ACK"/>
  <pause milliseconds="1000"/>
  <send retrans="500"><![CDATA[
REFER sip:linebox@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: <sip:201@[local_ip]>;tag=[pid]SIPpTag01[call_number]
To: [$from]
Call-ID: [call_id]
CSeq: 1 REFER
Contact: <sip:201@[local_ip]:[local_port]>
Refer-To: <sip:TARGET@[remote_ip]>
Referred-By: <sip:201@[remote_ip]>
Max-Forwards: 70
Content-Length: 0
  ]]></send>
  <recv response="EXPECT"/>
  NOTIFIES
</scenario>
"""

NOTIFIES = """
  <recv request="NOTIFY"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
  ]]></send>
  <recv request="NOTIFY"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
  ]]></send>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
  ]]></send>
"""


def _sipp(tmp_path, port, linebox_port, name, scenario, *args, timeout=60):
    path = tmp_path / f"{name}.xml"
    path.write_text(scenario)
    cmd = ["sipp", f"127.0.0.1:{linebox_port}", "-sf", str(path), "-i", "127.0.0.1", "-p", str(port),
           "-mi", "127.0.0.1", "-mp", str(free_port()), "-nostdin", "-trace_err", "-trace_msg",
           "-timeout", f"{timeout - 10}s", "-timeout_error", *args]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _run(tmp_path, monkeypatch, target, expect, notifies, steps=None):
    voice = tone_wav(tmp_path, 500, 3.0, "v.wav")
    steps = steps or f'[ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]'
    scenario = f"""
[[call]]
line = 1
at = 2.0
caller = {{ number = "5551234567" }}
steps = {steps}
"""
    phone_port = free_port()
    gw = GatewayDaemon(gateway_config(tmp_path, free_port(), ring=("201",), ring_rings=6),
                       scenario, monkeypatch, tmp_path)
    try:
        reg = _sipp(tmp_path, phone_port, gw.port, "register",
                    REGISTER.replace("PASSWORD", PASSWORDS["201"]), "-m", "1")
        out = reg.communicate(timeout=30)[0]
        assert reg.returncode == 0, out[-2000:]
        gw.events.wait("extension_state", extension="201", state="registered")
        uas = _sipp(tmp_path, phone_port, gw.port, "transfer",
                    TRANSFER.replace("TARGET", target).replace("EXPECT", expect)
                    .replace("NOTIFIES", notifies), "-m", "1")
        out = uas.communicate(timeout=60)[0]
    except BaseException:
        gw.stop()
        raise
    return gw, uas.returncode, out


def test_sipp_blind_transfers_an_answered_call_to_a_box_and_the_caller_leaves_a_message(
        tmp_path, monkeypatch):
    gw, rc, out = _run(tmp_path, monkeypatch, "101", "202", NOTIFIES)
    try:
        assert rc == 0, out[-3000:] + "\n".join(p.read_text()[-3000:] for p in tmp_path.glob("*errors.log"))
        saved = gw.events.wait("message_saved", timeout=40)
        assert saved["box"] == "101" and saved["caller_number"] == "5551234567"
    finally:
        gw.stop()
    (t,) = gw.events.of("transfer")
    assert (t["extension"], t["kind"], t["to"]) == ("201", "box", "101")
    assert [e["extension"] for e in gw.events.of("bridged")] == ["201"]
    # The sipfrag NOTIFYs SIPp received (its message trace): Trying, then 200 OK.
    trace = "".join(p.read_text() for p in tmp_path.glob("transfer*_messages.log"))
    assert "Event: refer" in trace and "SIP/2.0 100 Trying" in trace
    assert "Subscription-State: terminated" in trace and "message/sipfrag" in trace


def test_a_refer_to_no_such_number_is_refused_and_the_call_stays(tmp_path, monkeypatch):
    bye = NOTIFIES[NOTIFIES.index('  <recv request="BYE"/>'):]
    gw, rc, out = _run(tmp_path, monkeypatch, "999", "404", bye,
                       steps='[ { wait = "answer" }, { silence = 4.0 }, { hangup = "busy" } ]')
    try:
        # The phone stays bridged until the caller hangs up (busy): then our BYE.
        assert rc == 0, out[-3000:]
        gw.events.wait("onhook", line=1, timeout=20)
    finally:
        gw.stop()
    assert not gw.events.of("transfer") and not gw.events.of("message_saved")


# A phone that answers only after the voicemail route took the call (it never sent a
# provisional response, so it could not be CANCELled): ACKed, then hung up with BYE.
LATE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answers too late">
  <recv request="INVITE"/>
  <pause milliseconds="7000"/>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:201@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=sendrecv
  ]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
  ]]></send>
</scenario>
"""


def test_a_phone_answering_after_the_voicemail_route_took_the_call_gets_a_bye(tmp_path, monkeypatch):
    voice = tone_wav(tmp_path, 500, 3.0, "v.wav")
    scenario = f"""
[[call]]
line = 1
at = 1.0
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]
"""
    phone_port = free_port()
    gw = GatewayDaemon(gateway_config(tmp_path, free_port(), ring=("201",), ring_rings=1),
                       scenario, monkeypatch, tmp_path)
    try:
        reg = _sipp(tmp_path, phone_port, gw.port, "register",
                    REGISTER.replace("PASSWORD", PASSWORDS["201"]), "-m", "1")
        assert reg.wait(timeout=30) == 0
        gw.events.wait("extension_state", extension="201", state="registered")
        uas = _sipp(tmp_path, phone_port, gw.port, "late", LATE, "-m", "1")
        out = uas.communicate(timeout=60)[0]
        assert uas.returncode == 0, out[-3000:]
        saved = gw.events.wait("message_saved", timeout=40)
        assert saved["box"] == "100"
    finally:
        gw.stop()
    assert gw.events.of("ring_group_end", reason="voicemail")
    assert not gw.events.of("bridged")


# A phone that allows UPDATE: the caller ID, decoded after the INVITE went out, follows
# in an UPDATE (RFC 3311) naming the caller (P-Asserted-Identity, From display name).
SHOWS_CALLER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="shows the caller from an UPDATE">
  <recv request="INVITE">
    <action><ereg regexp="Line 1" search_in="hdr" header="From:" check_it="true" assign_to="f"/></action>
  </recv>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:201@[local_ip]:[local_port]>
Allow: INVITE, ACK, BYE, CANCEL, UPDATE
Content-Length: 0
  ]]></send>
  <recv request="UPDATE" timeout="15000">
    <action>
      <ereg regexp="5551234567" search_in="hdr" header="P-Asserted-Identity:" check_it="true" assign_to="p"/>
      <ereg regexp="JOHN DOE" search_in="hdr" header="From:" check_it="true" assign_to="n"/>
    </action>
  </recv>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
  ]]></send>
  <recv request="CANCEL" timeout="30000"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
  ]]></send>
  <send><![CDATA[
SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
CSeq: [cseq] INVITE
Content-Length: 0
  ]]></send>
  <recv request="ACK"/>
  <Reference variables="f,p,n"/>
</scenario>
"""


def test_the_caller_id_follows_in_an_update_and_the_voicemail_route_cancels_the_phone(
        tmp_path, monkeypatch):
    voice = tone_wav(tmp_path, 500, 3.0, "v.wav")
    scenario = f"""
[[call]]
line = 1
at = 1.0
caller = {{ number = "5551234567", name = "JOHN DOE" }}
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]
"""
    phone_port = free_port()
    gw = GatewayDaemon(gateway_config(tmp_path, free_port(), ring=("201",), ring_rings=2),
                       scenario, monkeypatch, tmp_path)
    try:
        reg = _sipp(tmp_path, phone_port, gw.port, "register",
                    REGISTER.replace("PASSWORD", PASSWORDS["201"]), "-m", "1")
        assert reg.wait(timeout=30) == 0
        gw.events.wait("extension_state", extension="201", state="registered")
        uas = _sipp(tmp_path, phone_port, gw.port, "update", SHOWS_CALLER, "-m", "1")
        out = uas.communicate(timeout=60)[0]
        assert uas.returncode == 0, out[-3000:] + "\n".join(
            p.read_text()[-3000:] for p in tmp_path.glob("update*errors.log"))
        saved = gw.events.wait("message_saved", timeout=40)
        assert saved["caller_number"] == "5551234567"
    finally:
        gw.stop()


@pytest.mark.skipif(shutil.which("baresip") is None, reason="needs baresip")
@pytest.mark.flaky(reruns=2, reruns_delay=2)
def test_sipp_transfers_the_call_to_a_baresip_extension_which_then_hears_the_caller(
        tmp_path, monkeypatch):
    from linebox.hw.fxo import tone_level_dbm0
    from linebox.wavfile import read_wav
    from sipkit import Baresip

    k1 = tone_wav(tmp_path, 1000, 4.0, "k1.wav")
    mic = tone_wav(tmp_path, 700, 60.0, "h700.wav")
    scenario = f"""
[[call]]
line = 1
at = 2.0
caller = {{ number = "5551234567" }}
steps = [ {{ wait = "answer" }}, {{ silence = 8.0 }}, {{ say = "{k1}" }}, {{ hangup = "busy" }} ]
"""
    phone_port = free_port()
    gw = GatewayDaemon(gateway_config(tmp_path, free_port(), ring=("201",), ring_rings=6),
                       scenario, monkeypatch, tmp_path)
    bob = None
    try:
        bob = Baresip(tmp_path, "202", PASSWORDS["202"], gw.port, mic)
        bob.wait_log("[1 binding]", timeout=15)
        reg = _sipp(tmp_path, phone_port, gw.port, "register",
                    REGISTER.replace("PASSWORD", PASSWORDS["201"]), "-m", "1")
        assert reg.wait(timeout=30) == 0
        uas = _sipp(tmp_path, phone_port, gw.port, "transfer",
                    TRANSFER.replace("TARGET", "202").replace("EXPECT", "202")
                    .replace("NOTIFIES", NOTIFIES), "-m", "1")
        bob.wait_event("CALL_INCOMING", timeout=30)
        bob.command("accept")
        out = uas.communicate(timeout=60)[0]
        assert uas.returncode == 0, out[-3000:]
        gw.events.wait("caller_hangup", timeout=30, pump=bob.pump)
        bob.wait_event("CALL_CLOSED", timeout=10)
    finally:
        gw.stop()
        if bob is not None:
            bob.close()
    (t,) = gw.events.of("transfer")
    assert (t["kind"], t["to"]) == ("extension", "202")
    assert [e["extension"] for e in gw.events.of("bridged")] == ["201", "202"]
    (recording,) = bob.recordings()
    heard = read_wav(recording)
    best = max(tone_level_dbm0(heard[i:i + 4000], 1000) for i in range(0, len(heard) - 4000, 4000))
    assert best > -25, best
