"""Calls out through a line with real SIP clients: Debian's baresip dials 95551234, the
simulated exchange hears 5551234 and its callee answers, tones pass both ways (700 Hz
from the phone's aufile to the callee, 1 kHz from the callee to the phone's sndfile
recording) and the callee's busy-tone hang-up sends the phone a BYE; a busy callee gives
the phone 486; SIPp calling while both lines are busy gets 486.

The daemon is `linebox run`'s, in this process; its lines are the simulated exchange's,
paced at wall-clock speed as a sound card would pace them."""

import logging
import subprocess
import threading
import time
import tomllib
from array import array
from pathlib import Path

import pytest

from linebox import FRAME, RATE
from linebox.dsp import gen
from linebox.hw.fxo import tone_level_dbm0
from linebox.hw.line import Line, Tick
from linebox.sim.exchange import SimExchange
from linebox.sim.scenario import parse_scenario
from linebox.sip.auth import ha1
from linebox.wavfile import read_wav, write_wav
from sipkit import PASSWORDS, REALM, Baresip, Events, free_port

FRAME_SECONDS = FRAME / RATE
REAL_PHONE_RERUNS = pytest.mark.flaky(reruns=2, reruns_delay=2)


class PacedLine(Line):
    """A simulated exchange line at real time. Only line ``clock_line`` moves the
    exchange's clock (once a frame), so two lines do not run it twice as fast."""

    def __init__(self, exchange: SimExchange, line_id: int, lock: threading.Lock, clock_line: int = 1):
        super().__init__(line_id)
        self.exchange = exchange
        self.inner = exchange.line(line_id)
        self.lock = lock
        self.moves_clock = line_id == clock_line
        self._deadline: float | None = None

    def tick(self, out=None) -> Tick:
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now
        if self._deadline > now:
            time.sleep(self._deadline - now)
        with self.lock:
            tick = self.inner.tick(out)
            if self.moves_clock:
                self.exchange.advance()
        self._deadline += FRAME_SECONDS
        return tick

    def set_hook(self, off_hook: bool) -> None:
        self.off_hook = off_hook
        with self.lock:
            self.inner.set_hook(off_hook)


def write_config(tmp: Path, port: int, lines=(1, 2), ext_extra: str = "") -> Path:
    line_tables = "".join(f'[[line]]\nid = {i}\ndriver = "sim"\nroute = "100"\n\n' for i in lines)
    cfg = tmp / "linebox.toml"
    cfg.write_text(f"""
[device]
id = "office"
data_dir = "{tmp / 'data'}"

{line_tables}
[[box]]
number = "100"
pin_required = false

[sip]
listen = "127.0.0.1:{port}"
realm = "{REALM}"

[gateway]
outbound_prefix = "9"

[[extension]]
number = "201"
name = "Alice"
ha1 = "{ha1('201', REALM, PASSWORDS['201'])}"
lines = [{", ".join(map(str, lines))}]
{ext_extra}
""")
    return cfg


SCENARIO = """
[[callee]]
number = "5551234"
answer_after_rings = 1
steps = [ {{ silence = 0.5 }}, {{ say = "{tone}" }}, {{ silence = 1.0 }}, {{ hangup = "busy" }} ]

[[callee]]
number = "5550000"
result = "busy"

[[callee]]
number = "5559999"
result = "no_answer"
"""


class Gateway:
    def __init__(self, tmp: Path, monkeypatch, scenario: str, lines=(1, 2), ext_extra="") -> None:
        import linebox.run as run
        from linebox.config import load_config

        self.config = load_config(write_config(tmp, free_port(), lines, ext_extra))
        self.daemon = run.Daemon(self.config)
        self.events = Events(self.daemon.app.bus)
        self.exchange = SimExchange(parse_scenario(tomllib.loads(scenario), tmp),
                                    dict.fromkeys(lines, "us"), self.daemon.app.bus)
        lock = threading.Lock()
        self.lines = {i: PacedLine(self.exchange, i, lock) for i in lines}
        monkeypatch.setattr(run, "make_line", lambda cfg, pins: self.lines[cfg.id])
        self.daemon.start()
        self.port = self.daemon.sip.port

    def stop(self) -> None:
        self.daemon.stop()


@pytest.fixture
def made():
    things = []
    yield things
    for t in reversed(things):
        try:
            t.close() if hasattr(t, "close") else t.stop()
        except Exception:     # noqa: BLE001 - the others still close
            pass


def _wav(tmp: Path, name: str, freq: float, seconds: float) -> Path:
    path = tmp / name
    write_wav(path, gen.tone(freq, seconds, -13.0))
    return path


def _loudest(samples, freq: float, window: int = 4000) -> float:
    return max((tone_level_dbm0(samples[i:i + window], freq)
                for i in range(0, max(1, len(samples) - window), window // 2)), default=-200.0)


@REAL_PHONE_RERUNS
def test_baresip_dials_out_the_callee_answers_tones_pass_and_busy_hangs_up(tmp_path, monkeypatch, made):
    callee_tone = _wav(tmp_path, "callee.wav", 1000.0, 4.0)
    gw = Gateway(tmp_path, monkeypatch, SCENARIO.format(tone=callee_tone.name))
    made.append(gw)
    phone = Baresip(tmp_path, "201", PASSWORDS["201"], gw.port, _wav(tmp_path, "phone.wav", 700.0, 60.0))
    made.append(phone)
    gw.events.wait("extension_state", extension="201", state="registered")
    phone.command("dial", f"sip:95551234@127.0.0.1:{gw.port}")
    dialled = gw.events.wait("dialled", timeout=15, pump=phone.pump)
    assert dialled["number"] == "5551234" and dialled["result"] == "answer"
    assert gw.events.of("outbound_start")[0]["line"] == 1
    gw.events.wait("callee_answer", timeout=15, pump=phone.pump)
    phone.wait_event("CALL_ESTABLISHED", timeout=20)
    # The callee's busy-tone hang-up: Linebox hears it and the phone gets a BYE.
    end = gw.events.wait("outbound_end", timeout=25, pump=phone.pump)
    assert end["result"] == "line_busy"
    phone.wait_event("CALL_CLOSED", timeout=10)
    phone.close()
    made.remove(phone)
    (rec,) = gw.exchange.callee_records
    heard_by_callee = rec.audio
    assert _loudest(heard_by_callee, 700.0) > -25.0, "the phone's 700 Hz did not reach the callee"
    (dec,) = phone.recordings()
    heard_by_phone = read_wav(dec)
    assert _loudest(heard_by_phone, 1000.0) > -25.0, "the callee's 1 kHz did not reach the phone"
    # Early media: the phone heard the ringback (440 + 480 Hz) before the answer.
    assert _loudest(heard_by_phone, 440.0) > -35.0
    with gw.daemon.lock:
        assert all(r.idle for r in gw.daemon.app.runners)


@REAL_PHONE_RERUNS
def test_baresip_sends_keys_down_the_line_and_hanging_up_puts_it_on_hook(tmp_path, monkeypatch, made):
    callee_tone = _wav(tmp_path, "callee.wav", 1000.0, 60.0)
    gw = Gateway(tmp_path, monkeypatch, SCENARIO.format(tone=callee_tone.name), lines=(1,))
    made.append(gw)
    phone = Baresip(tmp_path, "201", PASSWORDS["201"], gw.port, _wav(tmp_path, "phone.wav", 700.0, 60.0))
    made.append(phone)
    gw.events.wait("extension_state", extension="201", state="registered")
    phone.command("dial", f"sip:95551234@127.0.0.1:{gw.port}")
    phone.wait_event("CALL_ESTABLISHED", timeout=25)
    phone.pump(1.0)
    # Keys the phone sends as RFC 4733 events reach the far end as DTMF tones (a menu
    # there: "press 1").
    phone.command("sndcode", "19#")
    phone.pump(2.5)
    phone.command("hangup")                            # a BYE
    end = gw.events.wait("outbound_end", timeout=10, pump=phone.pump)
    assert end["result"] == "phone_bye"
    gw.events.wait("callee_end", timeout=5, pump=phone.pump)
    with gw.daemon.lock:
        assert gw.daemon.app.runners[0].idle and not gw.lines[1].off_hook
    assert not gw.events.of("callee_hangup")           # Linebox hung up, not the callee
    from linebox.dsp.listener import analyze
    (rec,) = gw.exchange.callee_records
    keys = [e["digit"] for e in analyze(rec.audio) if e["type"] == "dtmf"]
    assert keys == ["1", "9", "#"]


@REAL_PHONE_RERUNS
def test_baresip_calling_a_busy_number_gets_486(tmp_path, monkeypatch, made):
    _wav(tmp_path, "callee.wav", 1000.0, 1.0)
    gw = Gateway(tmp_path, monkeypatch, SCENARIO.format(tone="callee.wav"), lines=(1,))
    made.append(gw)
    phone = Baresip(tmp_path, "201", PASSWORDS["201"], gw.port, _wav(tmp_path, "phone.wav", 700.0, 30.0))
    made.append(phone)
    gw.events.wait("extension_state", extension="201", state="registered")
    phone.command("dial", f"sip:95550000@127.0.0.1:{gw.port}")
    gw.events.wait("dialled", timeout=15, pump=phone.pump, number="5550000")
    closed = phone.wait_event("CALL_CLOSED", timeout=20)
    assert "486" in closed.get("param", "") or "486 Busy Here" in phone.log()
    assert gw.events.wait("outbound_end", timeout=5)["result"] == "busy"


@REAL_PHONE_RERUNS
def test_baresip_hanging_up_during_ringback_cancels_and_the_line_goes_on_hook(tmp_path, monkeypatch, made,
                                                                             caplog):
    caplog.set_level(logging.DEBUG, logger="linebox.sip")
    # Ringing outlives the INVITE transaction's 64*T1 (32 s; 3 s here): its CANCEL must
    # still find it.
    import linebox.sip.server as sipserver
    monkeypatch.setattr(sipserver, "TIMER_64T1", 3.0)
    _wav(tmp_path, "callee.wav", 1000.0, 1.0)
    gw = Gateway(tmp_path, monkeypatch, SCENARIO.format(tone="callee.wav"), lines=(1,))
    made.append(gw)
    phone = Baresip(tmp_path, "201", PASSWORDS["201"], gw.port, _wav(tmp_path, "phone.wav", 700.0, 30.0))
    made.append(phone)
    gw.events.wait("extension_state", extension="201", state="registered")
    phone.command("dial", f"sip:95559999@127.0.0.1:{gw.port}")
    gw.events.wait("dialled", timeout=15, pump=phone.pump, number="5559999")
    phone.wait_log("183 Session Progress", timeout=5)
    phone.pump(5.0)                                    # ringing, past 64*T1...
    phone.command("hangup")
    end = gw.events.wait("outbound_end", timeout=10, pump=phone.pump)
    assert end["result"] == "cancelled"
    gw.events.wait("callee_end", timeout=5, pump=phone.pump)
    # The CANCEL got its 200 and the INVITE its 487 (baresip, gone already, logs neither).
    answered = [r.getMessage() for r in caplog.records if r.getMessage().startswith(("CANCEL", "INVITE"))]
    assert any(m.startswith("CANCEL") and m.endswith("200 OK") for m in answered), answered
    assert any(m.startswith("INVITE") and m.endswith("487 Request Terminated") for m in answered), answered
    with gw.daemon.lock:
        assert gw.daemon.app.runners[0].idle and not gw.lines[1].off_hook
    deadline = time.monotonic() + 5
    while gw.daemon.sip.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not gw.daemon.sip.calls


SIPP_486 = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="call out while both lines are busy">
  <send retrans="500"><![CDATA[
INVITE sip:95551234@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "Alice" <sip:201@[remote_ip]>;tag=[call_number]
To: <sip:95551234@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:201@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
  <send><![CDATA[
ACK sip:95551234@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3];rport
From: "Alice" <sip:201@[remote_ip]>;tag=[call_number]
To: <sip:95551234@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0
  ]]></send>
  <send retrans="500"><![CDATA[
INVITE sip:95551234@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "Alice" <sip:201@[remote_ip]>;tag=[call_number]
To: <sip:95551234@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 2 INVITE
Contact: <sip:201@[local_ip]:[local_port]>
[authentication username=201 password=PASSWORD]
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="486"/>
  <send><![CDATA[
ACK sip:95551234@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3];rport
From: "Alice" <sip:201@[remote_ip]>;tag=[call_number]
To: <sip:95551234@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
Content-Length: 0
  ]]></send>
</scenario>
"""


def _sipp_call(tmp_path, gw, number: str, expect: str):
    path = tmp_path / f"call-{number}.xml"
    path.write_text(SIPP_486.replace("PASSWORD", PASSWORDS["201"]).replace("95551234", number)
                    .replace('<recv response="486"/>', f'<recv response="{expect}"/>'))
    port, media = free_port(), free_port()
    return subprocess.run(["sipp", f"127.0.0.1:{gw.port}", "-sf", str(path), "-i", "127.0.0.1",
                           "-p", str(port), "-mi", "127.0.0.1", "-mp", str(media), "-nostdin",
                           "-m", "1", "-auth_uri", f"{number}@127.0.0.1:{gw.port}",
                           "-timeout", "20s", "-timeout_error", "-trace_err"],
                          cwd=tmp_path, capture_output=True, timeout=40, text=True)


def test_sipp_dialling_a_number_outside_the_patterns_gets_403_and_a_warning(tmp_path, monkeypatch,
                                                                            made, caplog):
    _wav(tmp_path, "callee.wav", 1000.0, 1.0)
    gw = Gateway(tmp_path, monkeypatch, SCENARIO.format(tone="callee.wav"), lines=(1,),
                 ext_extra='dial = ["555XXXX"]')
    made.append(gw)
    caplog.set_level(logging.INFO, logger="linebox")
    res = _sipp_call(tmp_path, gw, "900442071234567", "403")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("extension 201 from 127.0.0.1 dialled 900442071234567: 403 Forbidden" in m
               for m in warned), warned
    assert not gw.events.of("outbound_start")


def _hold(call):
    """A line kept off-hook (another call is on it)."""
    while True:
        yield None


def test_sipp_calling_out_while_both_lines_are_busy_gets_486(tmp_path, monkeypatch, made):
    _wav(tmp_path, "callee.wav", 1000.0, 1.0)
    gw = Gateway(tmp_path, monkeypatch, SCENARIO.format(tone="callee.wav"))
    made.append(gw)
    taken = []
    with gw.daemon.lock:
        for r in gw.daemon.app.runners:
            r.seize(_hold, taken.append)
    deadline = time.monotonic() + 5
    while len(taken) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert taken == [True, True]
    path = tmp_path / "busy.xml"
    path.write_text(SIPP_486.replace("PASSWORD", PASSWORDS["201"]))
    port, media = free_port(), free_port()
    res = subprocess.run(["sipp", f"127.0.0.1:{gw.port}", "-sf", str(path), "-i", "127.0.0.1",
                          "-p", str(port), "-mi", "127.0.0.1", "-mp", str(media), "-nostdin",
                          "-m", "1", "-auth_uri", f"95551234@127.0.0.1:{gw.port}",
                          "-timeout", "20s", "-timeout_error", "-trace_err"],
                         cwd=tmp_path, capture_output=True, timeout=40, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert not gw.events.of("outbound_start")
    assert not gw.exchange.callee_records


def test_sound_files_are_what_the_tests_think(tmp_path):
    # The helper's tones are where the assertions look for them.
    path = _wav(tmp_path, "t.wav", 700.0, 1.0)
    samples = read_wav(path)
    assert _loudest(samples, 700.0) > -14.0 and _loudest(samples, 1000.0) < -40.0
    assert isinstance(samples, array)
