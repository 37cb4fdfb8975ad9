"""[sip] mode = "trunk": Linebox as a gateway behind a real PBX (Debian's Kamailio as
registrar and proxy, tests/kamailiokit.py), and the pieces of it that need no PBX (the
client side of digest, the registration's answers, who may call in)."""

import logging
import socket
import time
from array import array

import pytest

import kamailiokit
from kamailiokit import Kamailio
from linebox.config import ConfigError, parse_config
from linebox.gateway import trunk as trunk_mod
from linebox.sip.auth import DigestAuth, Verdict
from sipkit import SipDaemon, free_port

GATEWAY, GATEWAY_PASSWORD = "linebox-a", "gw-secret-1"
PHONE, PHONE_PASSWORD = "201", "phone-secret"

needs_kamailio = pytest.mark.skipif(not kamailiokit.available(), reason="kamailio is not installed")


def trunk_config(tmp, port: int, pbx_port: int, password: str = GATEWAY_PASSWORD, user: str = GATEWAY,
                 device: str = "office", extra: str = "", lines: str = "",
                 inbound: str | None = "") -> "Path":  # noqa: F821
    data = tmp / f"data-{device}"
    cfg = tmp / f"linebox-{device}.toml"
    cfg.write_text(f"""
[device]
id = "{device}"
data_dir = "{data}"

{lines}

[[box]]
number = "100"
name = "Main office"
pin_required = false

[sip]
listen = "127.0.0.1:{port}"
mode = "trunk"
registrar = "sip:127.0.0.1:{pbx_port}"
username = "{user}"
password = "{password}"
{_inbound_line(inbound, pbx_port)}
expires = 60
{extra}
""")
    return cfg


def _inbound_line(inbound: str | None, pbx_port: int) -> str:
    """[sip] inbound_uri: the phone by default, ``inbound`` if given, none for None."""
    if inbound is None:
        return ""
    return f'inbound_uri = "{inbound or f"sip:{PHONE}@127.0.0.1:{pbx_port}"}"'


USERS = {GATEWAY: GATEWAY_PASSWORD, PHONE: PHONE_PASSWORD, "linebox-b": "gw-secret-2"}


@pytest.fixture
def pbx(tmp_path):
    k = Kamailio(tmp_path, USERS, gateway=GATEWAY)
    yield k
    k.stop()


@pytest.fixture(params=["udp", "tcp"])
def any_pbx(request, tmp_path):
    """Kamailio, and the [sip] transport Linebox reaches it by (TCP: it listens on both)."""
    k = Kamailio(tmp_path, USERS, gateway=GATEWAY, tcp=request.param == "tcp")
    yield k, request.param
    k.stop()


@pytest.fixture
def daemons():
    made = []
    yield made
    for d in made:
        d.stop()


# ================================================================ against Kamailio
@needs_kamailio
def test_linebox_registers_at_kamailio_and_its_location_shows_the_contact(tmp_path, pbx, daemons):
    port = free_port()
    d = SipDaemon(trunk_config(tmp_path, port, pbx.port))
    daemons.append(d)
    ev = d.events.wait("trunk_state", state="registered", timeout=15)
    assert ev["registrar"] == f"sip:127.0.0.1:{pbx.port}"
    contacts = pbx.wait_contacts(GATEWAY)
    assert contacts == [f"sip:{GATEWAY}@127.0.0.1:{port}"], pbx.log()[-2000:]
    pbx.wait_log(f"registered {GATEWAY} from 127.0.0.1:{port}")
    assert d.daemon.sip.trunk.registration.granted == 60
    # Stopping un-registers: the location is empty again.
    d.stop()
    daemons.remove(d)
    deadline = time.monotonic() + 5
    while pbx.contacts(GATEWAY) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pbx.contacts(GATEWAY) == []


@needs_kamailio
def test_a_wrong_password_is_refused_by_kamailio_and_logged(tmp_path, pbx, daemons, caplog):
    caplog.set_level(logging.INFO)
    d = SipDaemon(trunk_config(tmp_path, free_port(), pbx.port, password="not-the-password"))
    daemons.append(d)
    ev = d.events.wait("trunk_state", state="failed", timeout=15)
    assert "refused the credentials" in ev["reason"] and GATEWAY in ev["reason"]
    pbx.wait_log(f"authentication failed for {GATEWAY} from 127.0.0.1")
    assert pbx.contacts(GATEWAY) == []
    assert any("registration at" in r.getMessage() and "failed" in r.getMessage()
               for r in caplog.records if r.name.endswith("trunk"))
    assert not d.events.of("trunk_state", state="registered")


# ================================================================ without a PBX
def test_digest_answer_matches_rfc_2617_example():
    # RFC 2617 §3.5: Mufasa / "Circle Of Life", GET /dir/index.html.
    challenge = {"realm": "testrealm@host.com", "qop": "auth,auth-int",
                 "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093", "opaque": "5ccc069c403ebaf9f0171e9517f40e41"}
    value = trunk_mod.digest_authorization(challenge, trunk_mod.Credentials("Mufasa", "Circle Of Life"),
                                           "GET", "/dir/index.html", nc=1, cnonce="0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in value
    assert "qop=auth" in value and "nc=00000001" in value and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in value


def test_digest_answer_is_accepted_by_a_verifier_and_a_wrong_password_is_not():
    clock = [0.0]
    server = DigestAuth("pbx.test", {"gw": trunk_mod.md5("gw:pbx.test:right")}, lambda: clock[0])
    challenge = trunk_mod.parse_challenge(server.challenge())
    good = trunk_mod.digest_authorization(challenge, trunk_mod.Credentials("gw", "right"), "REGISTER", "sip:pbx")
    assert server.check("REGISTER", "sip:pbx", good, ("10.0.0.1", 5060)) == (Verdict.OK, "gw")
    ha1 = trunk_mod.Credentials("gw", ha1=trunk_mod.md5("gw:pbx.test:right"))
    again = trunk_mod.digest_authorization(challenge, ha1, "REGISTER", "sip:pbx", nc=2)
    assert server.check("REGISTER", "sip:pbx", again, ("10.0.0.1", 5060))[0] == Verdict.OK
    bad = trunk_mod.digest_authorization(challenge, trunk_mod.Credentials("gw", "wrong"), "REGISTER",
                                         "sip:pbx", nc=3)
    assert server.check("REGISTER", "sip:pbx", bad, ("10.0.0.1", 5060))[0] == Verdict.FAILED


def test_digest_without_qop_and_refusals_of_what_is_not_supported():
    creds = trunk_mod.Credentials("u", "p")
    plain = trunk_mod.digest_authorization({"realm": "r", "nonce": "n"}, creds, "INVITE", "sip:x")
    h1, h2 = trunk_mod.md5("u:r:p"), trunk_mod.md5("INVITE:sip:x")
    assert f'response="{trunk_mod.md5(f"{h1}:n:{h2}")}"' in plain and "qop" not in plain
    with pytest.raises(ValueError, match="SHA-256"):
        trunk_mod.digest_authorization({"realm": "r", "nonce": "n", "algorithm": "SHA-256"}, creds, "INVITE", "sip:x")
    with pytest.raises(ValueError, match="auth-int"):
        trunk_mod.digest_authorization({"realm": "r", "nonce": "n", "qop": "auth-int"}, creds, "INVITE", "sip:x")


class FakeService:
    """What the trunk uses of the SIP service: a socket (sent datagrams kept), timers on a
    clock the test moves, the bus."""

    def __init__(self) -> None:
        import types
        self.now = 0.0
        self.sent: list[bytes] = []
        self.timers: list = []
        self.events: list[dict] = []
        self.cfg = types.SimpleNamespace(host="127.0.0.1")
        self.port = 5062

    def clock(self) -> float:
        return self.now

    def send(self, peer, data: bytes) -> None:
        self.sent.append(data)

    def _at(self, delay: float, fn) -> None:
        self.timers.append((self.now + delay, fn))

    def publish(self, ev: dict) -> None:
        self.events.append(ev)

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            due = sorted((t for t in self.timers if t[0] <= end), key=lambda t: t[0])
            if not due:
                break
            t, fn = due[0]
            self.timers.remove(due[0])
            self.now = max(self.now, t)
            fn()
        self.now = end


def _trunk_cfg(**over):
    from linebox.config import TrunkConfig
    base = dict(registrar="sip:127.0.0.1:5999", proxy="sip:127.0.0.1:5999", username="gw", password="pw",
                ha1=None, inbound_uri="sip:201@127.0.0.1:5999", expires=300)
    base.update(over)
    return TrunkConfig(**base)


def _answer(request: bytes, status: str, extra: str = "") -> "trunk_mod.Message":
    from linebox.sip import message as sipmsg
    req = sipmsg.parse(request)
    head = [f"SIP/2.0 {status}"] + [f"{k}: {v}" for k, v in req.headers
                                   if k in ("via", "from", "to", "call-id", "cseq")]
    text = "\r\n".join(head) + "\r\n" + extra + "Content-Length: 0\r\n\r\n"
    return sipmsg.parse(text.encode())


def _registration(**over):
    svc = FakeService()
    txns = trunk_mod.Transactions(svc)
    reg = trunk_mod.Registration(svc, _trunk_cfg(**over), txns)
    return svc, txns, reg


def test_registration_answers_the_challenge_refreshes_before_expiry_and_backs_off():
    svc, txns, reg = _registration()
    reg.start()
    assert reg.state == "registering" and len(svc.sent) == 1
    first = svc.sent[-1]
    assert b"Authorization" not in first and b"Expires: 300" in first
    txns.response(_answer(first, "401 Unauthorized",
                          'WWW-Authenticate: Digest realm="pbx", nonce="abc", qop="auth"\r\n'))
    second = svc.sent[-1]
    assert b'Authorization: Digest username="gw", realm="pbx", nonce="abc"' in second
    txns.response(_answer(second, "200 OK", f"Contact: {reg.contact()};expires=200\r\n"))
    assert reg.state == "registered" and reg.granted == 200
    assert svc.events[-1] == {"event": "trunk_state", "state": "registered",
                              "registrar": "sip:127.0.0.1:5999", "reason": "200 s"}
    n = len(svc.sent)
    svc.advance(139)
    assert len(svc.sent) == n                       # refreshed a minute before the end
    svc.advance(2)
    refresh = svc.sent[-1]
    assert b"REGISTER" in refresh and b"nc=00000002" in refresh   # the known challenge answered again
    # The PBX stops answering: the refresh times out (64*T1), still registered until
    # the binding runs out, then failed; retries back off.
    svc.advance(40)
    assert reg.state == "registered"
    svc.advance(40)
    assert reg.state == "failed" and "no answer" in reg.reason
    times = []
    for _ in range(4):
        before = svc.now
        sent = len(svc.sent)
        while len(svc.sent) == sent:
            svc.advance(1)
        times.append(svc.now - before)
        svc.advance(33)                              # that attempt times out too
    assert times[0] < times[-1]                     # the backoff grows


def test_registration_refused_twice_stops_answering_and_waits():
    svc, txns, reg = _registration()
    reg.start()
    for _ in range(3):
        txns.response(_answer(svc.sent[-1], "401 Unauthorized",
                              'WWW-Authenticate: Digest realm="pbx", nonce="same", qop="auth"\r\n'))
    assert reg.state == "failed" and "refused the credentials of 'gw'" in reg.reason
    n = len(svc.sent)
    svc.advance(59)
    assert len(svc.sent) == n                       # a wrong password waits a minute at least
    svc.advance(2)
    assert len(svc.sent) > n


def test_registration_takes_min_expires_and_retry_after():
    svc, txns, reg = _registration(expires=60)
    reg.start()
    txns.response(_answer(svc.sent[-1], "423 Interval Too Brief", "Min-Expires: 600\r\n"))
    assert b"Expires: 600" in svc.sent[-1]
    txns.response(_answer(svc.sent[-1], "503 Service Unavailable", "Retry-After: 120\r\n"))
    assert reg.state == "failed"
    n = len(svc.sent)
    svc.advance(119)
    assert len(svc.sent) == n
    svc.advance(2)
    assert len(svc.sent) > n


def test_only_the_pbx_may_send_calls():
    from linebox.sip.transport import Peer
    gate = trunk_mod.TrunkGate(_trunk_cfg(proxy="sip:localhost:5999", pbx_addresses=("10.1.2.3",)))
    assert gate.allows(Peer("UDP", ("127.0.0.1", 5999)))
    assert gate.allows(Peer("UDP", ("10.1.2.3", 5060)))
    assert not gate.allows(Peer("UDP", ("127.0.0.2", 5999)))


BASE = {"box": [{"number": "100", "pin_required": False}]}


def _sip(**keys):
    return parse_config({**BASE, "sip": {"listen": "127.0.0.1:5070", **keys}})


def test_trunk_config_keys_and_their_errors():
    cfg = _sip(mode="trunk", registrar="sip:pbx.example.com", username="gw", password="x",
               inbound_uri="sip:201@pbx.example.com")
    t = cfg.sip.trunk
    assert (t.registrar, t.proxy, t.expires, t.ha1) == ("sip:pbx.example.com", "sip:pbx.example.com", 300, None)
    for keys, message in [
        (dict(registrar="sip:pbx", username="gw", password="x"), "key 'inbound_uri': missing"),
        (dict(registrar="pbx.example.com", username="gw", password="x", inbound_uri="sip:201@pbx"),
         "key 'registrar': must be a SIP URI"),
        (dict(registrar="sip:pbx", username="gw", inbound_uri="sip:201@pbx"), "exactly one of password or ha1"),
        (dict(registrar="sip:pbx", username="gw", password="x", ha1="0" * 32, inbound_uri="sip:201@pbx"),
         "exactly one of password or ha1"),
        (dict(registrar="sip:pbx", username="gw", password="x", inbound_uri="sip:pbx"),
         "key 'inbound_uri': must be a SIP URI like \"sip:201@"),
        (dict(registrar="sip:pbx:99999", username="gw", password="x", inbound_uri="sip:201@pbx"), "port"),
        (dict(registrar="sip:pbx", username="gw", password="x", inbound_uri="sip:201@pbx", expires=5),
         "key 'expires'"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            _sip(mode="trunk", **keys)
    with pytest.raises(ConfigError, match="key 'registrar': only with mode = \"trunk\""):
        _sip(registrar="sip:pbx")
    from linebox.config import summary
    assert summary(cfg) == "0 lines, 1 box, sip trunk (gw at sip:pbx.example.com)"
    trunk = dict(mode="trunk", registrar="sip:pbx", username="gw", password="x", inbound_uri="sip:201@pbx")
    with pytest.raises(ConfigError, match=r"\[\[extension\]\]: not in \[sip\] mode = \"trunk\""):
        parse_config({**BASE, "sip": {"listen": "127.0.0.1:5070", **trunk},
                      "extension": [{"number": "201", "ha1": "0" * 32}]})
    with pytest.raises(ConfigError, match=r"\[\[line\]\] #1 key 'ring': not in \[sip\] mode = \"trunk\""):
        parse_config({**BASE, "sip": {"listen": "127.0.0.1:5070", **trunk},
                      "line": [{"id": 1, "driver": "sim", "route": "100", "ring": ["201"]}]})


# ================================================================ calls through Kamailio
SIM_LINE = '[[line]]\nid = 1\ndriver = "sim"\nroute = "100"\nrings = 8\nring_rings = 6\n'


class SimWithTrunk:
    """`linebox sim --realtime` in this process with the SIP service of `linebox run`
    beside it (trunk mode), sharing the appliance lock as the daemon does."""

    def __init__(self, tmp, cfg_path, scenario_text: str) -> None:
        import io
        import threading

        from linebox.config import load_config
        from linebox.sim import runner
        from linebox.sim.exchange import SimLine
        from linebox.sim.scenario import load_scenario
        from linebox.sip.server import SipService
        from sipkit import Events

        scen = tmp / "scenario.toml"
        scen.write_text(scenario_text)
        self.config = load_config(cfg_path)
        self.out = io.StringIO()
        self.app, self.exchange, self.transcript = runner.build(self.config, load_scenario(scen), self.out)
        self.events = Events(self.app.bus)
        self.lock = threading.RLock()
        self.sip = SipService(self.config, self.app, self.lock)
        self.sip.start()
        self.played = array("h")              # what the firmware played on line 1
        line = self.app.runners[0].line
        original = line.tick

        def tick(frame=None):
            self.played.extend(frame if frame is not None else bytes(2 * 160))
            return original(frame)
        line.tick = tick
        assert isinstance(line, SimLine)
        self.runner = runner
        self.thread = None
        self.error = None

    def run(self, forever: bool = False) -> None:
        """The scenario at real time, in a thread; ``forever``: the lines go on being
        stepped after it (calls from the PBX come when they come) until `stop`."""
        import threading

        self._halt = threading.Event()

        def go():
            try:
                if not forever:
                    self.runner.run(self.app, self.exchange, self.transcript, lock=self.lock, realtime=True)
                    return
                t0 = time.monotonic()
                while not self._halt.is_set():
                    ahead = self.exchange.now - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                    with self.lock:
                        for r in self.app.runners:
                            r.step()
                        self.exchange.advance()
            except BaseException as e:  # noqa: BLE001 - reported by join()
                self.error = e
        self.thread = threading.Thread(target=go, daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the scenario did not end"
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self.thread is not None:
            self._halt.set()
            self.thread.join(10)
        self.sip.stop()
        with self.lock:
            for r in self.app.runners:
                if r.flow is not None:
                    r.hang_up()              # as linebox run stops: no flow left to finalize later
        self.app.stop()


def tone_file(tmp, freq: float, seconds: float, name: str):
    from linebox.dsp import gen
    from linebox.wavfile import write_wav
    path = tmp / name
    write_wav(path, gen.tone([freq], seconds, -10.0))
    return path


def tone_db(samples, freq: float) -> float:
    """The strongest ``freq`` level (dBm0) over half-second windows."""
    from linebox.hw.fxo import tone_level_dbm0
    return max((tone_level_dbm0(samples[i:i + 4000], freq) for i in range(0, len(samples) - 4000, 4000)),
               default=-999.0)


@pytest.fixture
def baresips():
    made = []
    yield made
    for p in made:
        p.close()


@needs_kamailio
@pytest.mark.flaky(reruns=2, reruns_delay=2)
def test_an_analog_call_rings_a_phone_behind_kamailio_and_audio_passes_both_ways(tmp_path, pbx, baresips):
    from linebox.wavfile import read_wav
    from sipkit import Baresip

    phone = Baresip(tmp_path, PHONE, PHONE_PASSWORD, pbx.port, tone_file(tmp_path, 700, 60, "p700.wav"),
                    answer=True)
    baresips.append(phone)
    phone.wait_log("200 OK")
    assert pbx.wait_contacts(PHONE)
    k1 = tone_file(tmp_path, 1000, 4.0, "k1.wav")
    port = free_port()
    sim = SimWithTrunk(tmp_path, trunk_config(tmp_path, port, pbx.port, lines=SIM_LINE), f"""
[[call]]
line = 1
at = 1.0
caller = {{ number = "5551234567", name = "JOHN DOE" }}
give_up_after_rings = 12
steps = [ {{ wait = "answer" }}, {{ silence = 1.0 }}, {{ say = "{k1}" }}, {{ silence = 1.0 }}, {{ hangup = "busy" }} ]
""")
    try:
        sim.events.wait("trunk_state", state="registered", timeout=15)
        sim.run()
        try:
            sim.events.wait("bridged", timeout=30, pump=phone.pump)
        except AssertionError:
            raise AssertionError(f"{sim.error!r} {sim.out.getvalue()[-3000:]} {pbx.log()[-3000:]}") from None
        est = phone.wait_event("CALL_ESTABLISHED", 5)
        sim.events.wait("caller_hangup", timeout=20, pump=phone.pump)
        hung = time.monotonic()
        phone.wait_event("CALL_CLOSED", 10)
        bye_after = time.monotonic() - hung
        sim.join(30)
    finally:
        sim.stop()
    # The PBX saw the caller ID as the From (kamailio logs the From user it routed).
    assert "call from 5551234567 to registered 201" in pbx.log(), pbx.log()[-3000:]
    assert "JOHN DOE" in json_dump(est)
    assert bye_after < 3.5 + 1.0, bye_after       # the line's 3.5 s, and baresip's event delivery
    phone.close()
    baresips.remove(phone)
    (rec,) = phone.recordings()
    heard = read_wav(rec)
    assert tone_db(heard, 1000) > -30, "the caller's 1 kHz never reached the phone"
    assert tone_db(sim.played, 700) > -30, "the phone's 700 Hz never reached the line"
    answer = sim.events.of("answer")
    assert answer and answer[0]["caller_number"] == "5551234567"


def json_dump(ev) -> str:
    import json
    return json.dumps(ev)


CALLEES = """
[[callee]]
number = "5551234"
result = "answer"
answer_after_rings = 1
steps = [ {{ silence = 1.0 }}, {{ say = "{k1}" }}, {{ silence = 30.0 }} ]

[[callee]]
number = "5550000"
result = "busy"

[[callee]]
number = "5559999"
result = "no_answer"
"""


@needs_kamailio
@pytest.mark.flaky(reruns=2, reruns_delay=2)
def test_a_phone_behind_kamailio_calls_out_through_the_sim_line(tmp_path, pbx, baresips):
    from linebox.wavfile import read_wav
    from sipkit import Baresip

    k1 = tone_file(tmp_path, 1000, 4.0, "k1.wav")
    port = free_port()
    sim = SimWithTrunk(tmp_path, trunk_config(tmp_path, port, pbx.port, lines=SIM_LINE), CALLEES.format(k1=k1))
    phone = Baresip(tmp_path, PHONE, PHONE_PASSWORD, pbx.port, tone_file(tmp_path, 700, 60, "p700.wav"))
    baresips.append(phone)
    try:
        phone.wait_log("200 OK")
        sim.events.wait("trunk_state", state="registered", timeout=15)
        sim.run(forever=True)
        phone.command("dial", f"sip:5551234@127.0.0.1:{pbx.port}")
        dialled = sim.events.wait("dialled", timeout=20, pump=phone.pump)
        assert dialled["number"] == "5551234" and dialled["result"] == "answer"
        sim.events.wait("callee_answer", timeout=20, pump=phone.pump)
        phone.wait_event("CALL_ESTABLISHED", 20)
        phone.pump(6.0)                              # the callee's 1 kHz, the phone's 700 Hz
        phone.command("hangup")
        end = sim.events.wait("outbound_end", timeout=10, pump=phone.pump)
        sim.events.wait("onhook", timeout=10, pump=phone.pump)
        # A busy number: the phone gets the line's busy as its final answer.
        n = len(phone.events)
        phone.command("dial", f"sip:5550000@127.0.0.1:{pbx.port}")
        closed = phone.wait_event("CALL_CLOSED", 30, after=n)
        busy_end = sim.events.wait("outbound_end", timeout=10, pump=phone.pump, after=1)
        sim.events.wait("onhook", timeout=10, pump=phone.pump, after=1)
        # Nobody answers; the phone gives up during the ringback: CANCEL through Kamailio,
        # the line goes on-hook.
        n = len(phone.events)
        phone.command("dial", f"sip:5559999@127.0.0.1:{pbx.port}")
        sim.events.wait("dialled", number="5559999", timeout=20, pump=phone.pump)
        phone.pump(3.0)
        phone.command("hangup")
        cancel_end = sim.events.wait("outbound_end", timeout=10, pump=phone.pump, after=2)
        sim.events.wait("onhook", timeout=10, pump=phone.pump, after=2)
    finally:
        sim.stop()
    assert "through the gateway at sip:5551234@127.0.0.1:" in pbx.log()
    assert end["extension"] == GATEWAY and end["result"].startswith("phone_")
    assert busy_end["result"] == "busy"
    assert cancel_end["result"] == "cancelled", cancel_end
    assert "486" in json_dump(closed), closed
    (record,) = [r for r in sim.exchange.callee_records if r.number == "5551234"]
    assert tone_db(record.audio, 700) > -30, "the phone's 700 Hz never reached the callee"
    phone.close()
    baresips.remove(phone)
    recs = phone.recordings()
    heard = array("h")
    for r in recs:
        heard.extend(read_wav(r))
    assert tone_db(heard, 1000) > -30, "the callee's 1 kHz never reached the phone"


def test_a_call_from_anyone_but_the_pbx_is_refused_with_403(tmp_path, daemons, caplog):
    caplog.set_level(logging.INFO)
    port, pbx_port = free_port(), free_port()
    d = SipDaemon(trunk_config(tmp_path, port, pbx_port))
    daemons.append(d)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.2", 0))
        s.settimeout(5)
        src = s.getsockname()[1]
        s.sendto((f"INVITE sip:5551234@127.0.0.1:{port} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP 127.0.0.2:{src};branch=z9hG4bKintruder1;rport\r\n"
                  "Max-Forwards: 70\r\nFrom: <sip:x@127.0.0.2>;tag=i1\r\n"
                  f"To: <sip:5551234@127.0.0.1>\r\nCall-ID: intruder-1\r\nCSeq: 1 INVITE\r\n"
                  f"Contact: <sip:x@127.0.0.2:{src}>\r\nContent-Length: 0\r\n\r\n").encode(),
                 ("127.0.0.1", port))
        answer = s.recv(4096).decode()
    assert answer.startswith("SIP/2.0 403 Forbidden\r\n"), answer
    assert any("call refused from 127.0.0.2:" in r.getMessage() and "not the PBX" in r.getMessage()
               for r in caplog.records)
    assert not d.events.of("outbound_start")


@needs_kamailio
def test_two_lineboxes_register_to_one_pbx_and_report_to_one_broker_under_their_own_ids(tmp_path, pbx, daemons):
    from test_mqtt import Broker, Watcher, wait_until
    broker = Broker(tmp_path / "broker").start()
    watcher = Watcher(broker.port)
    mqtt = f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
    try:
        ports = {}
        for device, user, password in (("office-a", GATEWAY, GATEWAY_PASSWORD), ("office-b", "linebox-b", "gw-secret-2")):
            ports[device] = free_port()
            cfg = trunk_config(tmp_path, ports[device], pbx.port, password=password, user=user, device=device)
            cfg.write_text(cfg.read_text() + mqtt)
            daemons.append(SipDaemon(cfg))
        for device in ports:
            wait_until(lambda d=device: watcher.last(f"linebox/{d}/trunk/state") == "registered",
                       what=f"{device} registered")
            wait_until(lambda d=device: watcher.last(f"linebox/{d}/box/100/state") is not None,
                       what=f"{device}'s box")
        assert pbx.wait_contacts(GATEWAY) == [f"sip:{GATEWAY}@127.0.0.1:{ports['office-a']}"]
        assert pbx.wait_contacts("linebox-b") == [f"sip:linebox-b@127.0.0.1:{ports['office-b']}"]
        # Each keeps its own data folder, boxes and MQTT identity.
        a, b = (d.daemon.app for d in daemons)
        assert a.config.device.data_dir != b.config.device.data_dir
        assert {t.split("/")[1] for t, _, _ in watcher.messages if t.startswith("linebox/")} == {"office-a",
                                                                                              "office-b"}
    finally:
        for d in list(daemons):
            d.stop()
            daemons.remove(d)
        watcher.close()
        broker.stop()


def _pbx_calls():
    svc = FakeService()
    txns = trunk_mod.Transactions(svc)
    return svc, txns, trunk_mod.PbxCalls(svc, _trunk_cfg(), txns)


def _invite(calls, **kw):
    got = {"answer": [], "fail": [], "progress": []}
    kw = {"from_user": "5551234567", "from_name": 'JOHN "J" DOE', **kw}
    inv = trunk_mod.PbxInvite(uri="sip:201@127.0.0.1:5999", sdp=b"v=0\r\n",
                              on_answer=lambda i, r: got["answer"].append(r),
                              on_fail=lambda i, st, why: got["fail"].append(st),
                              on_progress=lambda i, r: got["progress"].append(r.status), **kw)
    calls.invite(inv)
    return inv, got


def test_the_invite_to_the_pbx_answers_407_once_and_acks_every_final():
    svc, txns, calls = _pbx_calls()
    inv, got = _invite(calls)
    first = svc.sent[-1]
    assert first.startswith(b"INVITE sip:201@127.0.0.1:5999 SIP/2.0\r\n")
    assert b'From: "JOHN J DOE" <sip:5551234567@127.0.0.1>;tag=' in first
    txns.response(_answer(first, "407 Proxy Authentication Required",
                          'Proxy-Authenticate: Digest realm="pbx", nonce="n1", qop="auth"\r\n'))
    ack, second = svc.sent[-2], svc.sent[-1]
    assert ack.startswith(b"ACK sip:201@127.0.0.1:5999 SIP/2.0")          # the 407's ACK, same branch
    assert first.split(b"Via: ")[1].split(b"\r\n")[0] == ack.split(b"Via: ")[1].split(b"\r\n")[0]
    assert b'Proxy-Authorization: Digest username="gw", realm="pbx", nonce="n1", uri="sip:201@127.0.0.1:5999"' \
        in second
    assert b"CSeq: " + str(inv.cseq).encode() + b" INVITE" in second
    ok = _answer(second, "200 OK", "Record-Route: <sip:127.0.0.1:5999;lr>\r\n"
                 "Contact: <sip:201@127.0.0.1:6001>\r\nContent-Type: application/sdp\r\n")
    ok.to.params  # noqa: B018 - parses
    txns.response(ok)
    assert got["answer"] and inv.state == "answered"
    ack2 = svc.sent[-1]
    assert ack2.startswith(b"ACK sip:201@127.0.0.1:6001 SIP/2.0") and b"Route: <sip:127.0.0.1:5999;lr>" in ack2
    n = len(svc.sent)
    txns.response(ok)                         # the 200 again (our ACK was lost): ACKed again, once answered
    assert len(svc.sent) == n + 1 and svc.sent[-1].startswith(b"ACK ") and len(got["answer"]) == 1
    svc.advance(40)
    assert not txns.response(ok)              # after 64*T1 the transaction is gone


def test_the_invite_to_the_pbx_fails_on_a_second_challenge_and_cancels_after_a_provisional():
    svc, txns, calls = _pbx_calls()
    inv, got = _invite(calls)
    for _ in range(3):
        txns.response(_answer(svc.sent[-1] if svc.sent[-1].startswith(b"INVITE") else svc.sent[-2],
                              "407 Proxy Authentication Required",
                              'Proxy-Authenticate: Digest realm="pbx", nonce="n1"\r\n'))
    assert got["fail"] == [407] and inv.state == "failed"

    svc, txns, calls = _pbx_calls()
    inv, got = _invite(calls)
    calls.cancel(inv)                         # nothing came yet: the CANCEL waits
    assert not any(d.startswith(b"CANCEL") for d in svc.sent)
    txns.response(_answer(svc.sent[-1], "180 Ringing", ""))
    cancel = svc.sent[-1]
    assert cancel.startswith(b"CANCEL sip:201@127.0.0.1:5999 SIP/2.0") and b" CANCEL\r\n" in cancel
    txns.response(_answer(svc.sent[-2], "487 Request Terminated", ""))
    assert got["fail"] == [487] and inv.state == "cancelled"
    assert svc.sent[-1].startswith(b"ACK ")


@needs_kamailio
@pytest.mark.flaky(reruns=2, reruns_delay=2)
def test_the_pbx_sending_a_box_number_leaves_a_message_there(tmp_path, any_pbx, daemons, baresips):
    from sipkit import Baresip
    pbx, transport = any_pbx
    port = free_port()
    d = SipDaemon(trunk_config(tmp_path, port, pbx.port, extra=f'transport = "{transport}"'))
    daemons.append(d)
    phone = Baresip(tmp_path, PHONE, PHONE_PASSWORD, pbx.port, tone_file(tmp_path, 700, 60, "p700.wav"))
    baresips.append(phone)
    phone.wait_log("200 OK")
    d.events.wait("trunk_state", state="registered", timeout=15)
    phone.command("dial", f"sip:100@127.0.0.1:{pbx.port}")
    d.events.wait("record_start", box="100", timeout=30, pump=phone.pump)
    phone.pump(3.0)
    phone.command("hangup")
    saved = d.events.wait("message_saved", box="100", timeout=15, pump=phone.pump)
    msg = d.store.get(saved["id"])
    assert msg["caller_number"] == PHONE and msg["line"] is None
    assert saved["seconds"] >= 1.5
    # The PBX sent the call to the contact Linebox registered, over that transport.
    params = ";transport=tcp" if transport == "tcp" else ""
    assert f"through the gateway at sip:100@127.0.0.1:{port}{params}\n" in pbx.log(), pbx.log()[-2000:]


@needs_kamailio
def test_hwcheck_asks_the_pbx_for_the_bindings_with_the_credentials(tmp_path, pbx, daemons):
    import io

    from linebox.config import load_config
    from linebox.hw.check import Report, run_checks
    good = load_config(trunk_config(tmp_path, free_port(), pbx.port))
    report = run_checks(good, None, Report(io.StringIO()))
    assert ("OK", "PBX (sip trunk)", f"sip:127.0.0.1:{pbx.port} accepts '{GATEWAY}'; 0 contact(s) registered now") \
        in report.results
    d = SipDaemon(trunk_config(tmp_path, free_port(), pbx.port, device="running"))
    daemons.append(d)
    d.events.wait("trunk_state", state="registered", timeout=15)
    report = run_checks(good, None, Report(io.StringIO()))
    assert any(r[2].endswith("1 contact(s) registered now") for r in report.results), report.results
    assert pbx.contacts(GATEWAY)                 # the query changed nothing
    bad = load_config(trunk_config(tmp_path, free_port(), pbx.port, password="wrong", device="bad"))
    report = run_checks(bad, None, Report(io.StringIO()))
    assert ("FAIL", "PBX (sip trunk)", f"the PBX refused the credentials of '{GATEWAY}' (403)") in report.results
    nobody = load_config(trunk_config(tmp_path, free_port(), free_port(), device="nobody"))
    report = run_checks(nobody, None, Report(io.StringIO()))
    assert report.failed and "no answer from 127.0.0.1:" in report.results[-1][2]


@needs_kamailio
@pytest.mark.flaky(reruns=2, reruns_delay=2)
def test_the_phone_behind_kamailio_hangs_up_and_the_line_goes_on_hook(tmp_path, any_pbx, baresips):
    from sipkit import Baresip

    pbx, transport = any_pbx
    phone = Baresip(tmp_path, PHONE, PHONE_PASSWORD, pbx.port, tone_file(tmp_path, 700, 60, "p700.wav"),
                    answer=True)
    baresips.append(phone)
    phone.wait_log("200 OK")
    sim = SimWithTrunk(tmp_path, trunk_config(tmp_path, free_port(), pbx.port, lines=SIM_LINE,
                                              extra=f'transport = "{transport}"'), """
[[call]]
line = 1
at = 1.0
caller = { number = "5551234567" }
give_up_after_rings = 12
steps = [ { wait = "answer" }, { silence = 30.0 }, { hangup = "busy" } ]
""")
    try:
        sim.events.wait("trunk_state", state="registered", timeout=15)
        sim.run()
        sim.events.wait("bridged", timeout=30, pump=phone.pump)
        phone.wait_event("CALL_ESTABLISHED", 5)
        phone.pump(1.0)
        phone.command("hangup")
        t = time.monotonic()
        sim.events.wait("onhook", timeout=10, pump=phone.pump)
        took = time.monotonic() - t
        sim.join(60)
    finally:
        sim.stop()
    assert took < 2.0, took                     # the PBX's BYE puts the line on-hook at once
    assert not sim.events.of("message_saved")   # the voicemail route never answered


def _invite_from_pbx(port: int, number: str, n: int) -> str:
    """An INVITE to ``number`` from 127.0.0.1 (the configured PBX's address), answered."""
    sdp = ("v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        src = s.getsockname()[1]
        s.sendto((f"INVITE sip:{number}@127.0.0.1:{port} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP 127.0.0.1:{src};branch=z9hG4bKpbx{n};rport\r\n"
                  "Max-Forwards: 70\r\nFrom: \"Alice\" <sip:201@127.0.0.1>;tag=p1\r\n"
                  f"To: <sip:{number}@127.0.0.1>\r\nCall-ID: pbx-{n}\r\nCSeq: 1 INVITE\r\n"
                  f"Contact: <sip:201@127.0.0.1:{src}>\r\nContent-Type: application/sdp\r\n"
                  f"Content-Length: {len(sdp)}\r\n\r\n{sdp}").encode(), ("127.0.0.1", port))
        while True:
            answer = s.recv(4096).decode()
            if not answer.startswith("SIP/2.0 100 "):
                return answer


def test_the_pbx_may_dial_only_what_sip_dial_allows_and_on_sip_lines(tmp_path):
    port = free_port()
    lines = SIM_LINE + '\n[[line]]\nid = 2\ndriver = "sim"\nroute = "100"\n'
    cfg = trunk_config(tmp_path, port, free_port(), lines=lines, extra='lines = [2]\ndial = ["555XXXX"]')
    sim = SimWithTrunk(tmp_path, cfg, '[[callee]]\nnumber = "5551234"\nresult = "busy"\n')
    try:
        sim.run(forever=True)
        assert _invite_from_pbx(port, "9001234", 1).startswith("SIP/2.0 403 Forbidden\r\n")
        assert not sim.events.of("outbound_start")
        answer = _invite_from_pbx(port, "5551234", 2)          # allowed: out on line 2, busy there
        assert answer.startswith("SIP/2.0 183 Session Progress\r\n"), answer
        start = sim.events.wait("outbound_start", timeout=10)
        assert start["line"] == 2 and start["number"] == "5551234"
        sim.events.wait("onhook", line=2, timeout=15)
        # An emergency number is no pattern of dial, and goes out all the same.
        assert _invite_from_pbx(port, "911", 3).startswith("SIP/2.0 183 Session Progress\r\n")
        assert sim.events.wait("outbound_start", number="911", timeout=10)["line"] == 2
    finally:
        sim.stop()
    with pytest.raises(ConfigError, match=r"\[sip\] key 'lines': no \[\[line\]\] with id 7"):
        parse_config({**BASE, "sip": {"listen": "127.0.0.1:5070", "mode": "trunk", "registrar": "sip:pbx",
                                      "username": "gw", "password": "x", "inbound_uri": "sip:201@pbx",
                                      "lines": [7]}})
    with pytest.raises(ConfigError, match=r"\[sip\] key 'dial'"):
        _sip(mode="trunk", registrar="sip:pbx", username="gw", password="x", inbound_uri="sip:201@pbx",
             dial=["5??"])


# ================================================================ issue 12 (trunk12): per-line URI, identity, the wait
def test_a_line_may_ring_its_own_inbound_uri_and_config_check_says_what_is_missing():
    trunk = dict(mode="trunk", registrar="sip:pbx", username="gw", password="x")
    line = {"driver": "sim", "route": "100"}
    cfg = parse_config({**BASE, "sip": {"listen": "127.0.0.1:5070", **trunk, "inbound_uri": "sip:600@pbx"},
                        "line": [{**line, "id": 1, "inbound_uri": "sip:601@pbx:5080"}, {**line, "id": 2}]})
    assert [c.inbound_uri for c in cfg.lines] == ["sip:601@pbx:5080", None]
    assert cfg.sip.trunk.inbound_uri == "sip:600@pbx"
    # Every line has its own: [sip] needs none.
    cfg = parse_config({**BASE, "sip": {"listen": "127.0.0.1:5070", **trunk},
                        "line": [{**line, "id": 1, "inbound_uri": "sip:601@pbx"}]})
    assert cfg.sip.trunk.inbound_uri is None
    for sip_keys, lines, message in [
        (trunk, [{**line, "id": 1, "inbound_uri": "sip:601@pbx"}, {**line, "id": 2}],
         r"\[sip\] key 'inbound_uri': missing \(line 2 has no inbound_uri of its own\)"),
        (trunk, [{**line, "id": 1}, {**line, "id": 3}],
         r"\[sip\] key 'inbound_uri': missing \(lines 1, 3 have no inbound_uri of their own\)"),
        ({**trunk, "inbound_uri": "sip:600@pbx"}, [{**line, "id": 1, "inbound_uri": "sip:pbx"}],
         r"\[\[line\]\] #1 key 'inbound_uri': must be a SIP URI like \"sip:201@"),
        ({**trunk, "inbound_uri": "sip:600@pbx"}, [{**line, "id": 1, "inbound_uri": "sip:6@pbx:70000"}],
         r"\[\[line\]\] #1 key 'inbound_uri': port must be 1 to 65535"),
        ({}, [{**line, "id": 1, "inbound_uri": "sip:601@pbx"}],
         r"\[\[line\]\] #1 key 'inbound_uri': only with \[sip\] mode = \"trunk\""),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_config({**BASE, "sip": {"listen": "127.0.0.1:5070", **sip_keys}, "line": lines})
    with pytest.raises(ConfigError, match=r"\[\[line\]\] #1 key 'inbound_uri': only with \[sip\] mode"):
        parse_config({**BASE, "line": [{**line, "id": 1, "inbound_uri": "sip:601@pbx"}]})


def test_the_invite_asserts_the_caller_or_asks_for_privacy_and_the_challenged_one_too():
    svc, txns, calls = _pbx_calls()
    inv, got = _invite(calls, asserted=True, asserted_name="JOHN DOE")
    first = svc.sent[-1]
    assert b'From: "JOHN J DOE" <sip:5551234567@127.0.0.1>;tag=' in first
    assert b'\r\nP-Asserted-Identity: "JOHN DOE" <sip:5551234567@127.0.0.1>\r\n' in first
    assert b"Privacy" not in first
    txns.response(_answer(first, "407 Proxy Authentication Required",
                          'Proxy-Authenticate: Digest realm="pbx", nonce="n1"\r\n'))
    again = svc.sent[-1]
    assert again.startswith(b"INVITE ") and b"Proxy-Authorization" in again
    assert b'\r\nP-Asserted-Identity: "JOHN DOE" <sip:5551234567@127.0.0.1>\r\n' in again
    # A number without a name asserts the number alone; '#' is escaped (RFC 3261 §25.1).
    svc, txns, calls = _pbx_calls()
    _invite(calls, from_user="5551234#", from_name="Line 1", asserted=True)
    assert b"\r\nP-Asserted-Identity: <sip:5551234%23@127.0.0.1>\r\n" in svc.sent[-1]
    assert b'From: "Line 1" <sip:5551234%23@127.0.0.1>;tag=' in svc.sent[-1]
    # Withheld: the anonymous From of RFC 3323 and Privacy: id, nothing asserted.
    svc, txns, calls = _pbx_calls()
    _invite(calls, from_user="anonymous", from_name="Anonymous", anonymous=True)
    first = svc.sent[-1]
    assert b'From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag=' in first
    assert b"\r\nPrivacy: id\r\n" in first and b"P-Asserted-Identity" not in first
    txns.response(_answer(first, "407 Proxy Authentication Required",
                          'Proxy-Authenticate: Digest realm="pbx", nonce="n1"\r\n'))
    assert b"\r\nPrivacy: id\r\n" in svc.sent[-1] and b"Proxy-Authorization" in svc.sent[-1]
    # The line's From ("Line 1" <sip:line1@...>) when no caller ID came asserts nothing.
    svc, txns, calls = _pbx_calls()
    _invite(calls, from_user="line1", from_name="Line 1")
    assert b"P-Asserted-Identity" not in svc.sent[-1] and b"Privacy" not in svc.sent[-1]


def test_caller_identity_for_each_kind_of_caller_id():
    from linebox.caller import CallerId
    from linebox.gateway.phones import Phones
    show = Phones.caller_display.__get__(trunk_mod.TrunkPhones(None))
    ident = trunk_mod.caller_identity
    assert ident(1, CallerId(number="5551234567", name="JOHN DOE"), show) == {
        "from_user": "5551234567", "from_name": "JOHN DOE", "asserted": True, "asserted_name": "JOHN DOE",
        "anonymous": False}
    assert ident(1, CallerId(number="5551234567", name_absent="P"), show) == {
        "from_user": "5551234567", "from_name": "Line 1", "asserted": True, "asserted_name": None,
        "anonymous": False}
    assert ident(2, CallerId(number_absent="P", name_absent="P"), show)["anonymous"] is True
    for cid in (None, CallerId(number_absent="O", name_absent="O")):
        assert ident(2, cid, show) == {"from_user": "line2", "from_name": "Line 2", "asserted": False,
                                       "anonymous": False}


class _Runner:
    """A line's runner as TrunkPhones sees it: its id, plan and clock (seconds of audio)."""

    def __init__(self, line_id: int, plan: str) -> None:
        import types
        self.id, self.plan, self.t = line_id, plan, 0.0
        self.line = types.SimpleNamespace(full_duplex=True)


def _trunk_phones(*runners, line_uris=None):
    import types
    svc = FakeService()
    svc.call_soon = lambda fn: fn()
    svc.app = types.SimpleNamespace(runners=list(runners))
    svc.config = types.SimpleNamespace(lines=tuple(
        types.SimpleNamespace(id=r.id, inbound_uri=(line_uris or {}).get(r.id)) for r in runners))
    invites = []
    trunk = types.SimpleNamespace(service=svc, cfg=_trunk_cfg(inbound_uri="sip:600@127.0.0.1:5999"),
                                  registration=types.SimpleNamespace(state="registered"),
                                  pbx=types.SimpleNamespace(invite=invites.append, cancel=lambda inv: None))
    return svc, trunk_mod.TrunkPhones(trunk), invites


def test_the_invite_waits_for_caller_id_on_the_line_clock_not_on_a_uk_line_nor_once_it_came():
    from linebox.caller import CallerId
    us, uk, us2 = _Runner(1, "us"), _Runner(2, "uk"), _Runner(3, "us")
    svc, phones, invites = _trunk_phones(us, uk, us2, line_uris={1: "sip:601@127.0.0.1:5999"})
    made = []
    ring = phones.ring
    phones.ring = lambda *a: made.append(ring(*a)) or made[-1]
    try:
        us.t = 10.0
        waiting = phones.ring(1, (), None)
        svc.advance(30.0)                 # the SIP thread's clock runs, the line's stands still
        assert invites == [] and not waiting.sent
        us.t = 14.4
        svc.advance(0.2)
        assert invites == []
        us.t = 14.5                       # 4.5 s of the line's audio after the first ring
        svc.advance(0.2)
        (inv,) = invites
        assert inv.uri == "sip:601@127.0.0.1:5999"      # the line's own inbound_uri
        assert (inv.from_user, inv.from_name, inv.asserted) == ("line1", "Line 1", False)
        # Caller ID between the rings: the INVITE goes at once, with it.
        attempt = phones.ring(3, (), None)
        us2.t = 1.0
        svc.advance(1.0)
        assert len(invites) == 1
        attempt.callerid(CallerId(number="5551234567", name="JOHN DOE"))
        assert invites[-1].from_user == "5551234567" and invites[-1].uri == "sip:600@127.0.0.1:5999"
        assert invites[-1].asserted and invites[-1].asserted_name == "JOHN DOE"
        svc.advance(10.0)
        us2.t = 20.0
        svc.advance(1.0)
        assert len(invites) == 2          # no second INVITE when the wait runs out
        # A UK line: caller ID comes before the first ring or not at all: half a second's
        # grace for the decoder, not 4.5 s; with the caller ID at the first ring, no wait.
        uk.t = 3.0
        phones.ring(2, (), None)
        uk.t = 3.4
        svc.advance(0.2)
        assert len(invites) == 2
        uk.t = 3.5
        svc.advance(0.2)
        assert invites[-1].from_user == "line2" and len(invites) == 3
        phones.ring(2, (), CallerId(number="01632960123", name="BT CALLER"))
        assert invites[-1].from_user == "01632960123" and len(invites) == 4
        invites.pop()
        # A withheld number that came before (or at) the first ring: at once, anonymous.
        phones.ring(3, (), CallerId(number_absent="P", name_absent="P"))
        assert len(invites) == 4 and invites[-1].anonymous
        # The line gave up on the PBX (the caller hung up) before the wait ran out: nothing.
        us.t = 0.0
        gone = phones.ring(1, (), None)
        gone.cancel("caller_gone")
        us.t = 10.0
        svc.advance(1.0)
        assert len(invites) == 4
    finally:
        for a in made:
            if a.sock is not None:
                a.sock.close()


# A queue server behind the PBX, as SIPp: takes each INVITE, rings, and is busy (the line
# then goes on to its voicemail route as without a PBX); -trace_msg keeps what it got.
BUSY_UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="busy queue">
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]q[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:queue@[local_ip]:[local_port]>
Content-Length: 0
  ]]></send>
  <pause milliseconds="300"/>
  <send><![CDATA[
SIP/2.0 486 Busy Here
[last_Via:]
[last_From:]
[last_To:];tag=[pid]q[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
  ]]></send>
  <recv request="ACK"/>
</scenario>
"""


def _received_invites(log_text: str) -> dict[str, dict[str, str]]:
    """The INVITEs in a SIPp -trace_msg log, by Request-URI user: their headers."""
    found = {}
    for block in log_text.split("INVITE sip:")[1:]:
        user = block.split("@", 1)[0]
        head = block.split("\n\n", 1)[0].replace("\r", "")
        headers = {"vias": [line.split(":", 1)[1].strip() for line in head.split("\n")
                            if line.lower().startswith(("via:", "v:"))]}
        for line in head.split("\n")[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers.setdefault(name.strip().lower(), value.strip())
        found[user] = headers
    return found


@needs_kamailio
@pytest.mark.skipif(__import__("shutil").which("sipp") is None, reason="needs SIPp (sip-tester)")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_each_line_rings_its_own_uri_and_the_pbx_side_gets_the_asserted_or_withheld_caller(tmp_path, transport):
    import subprocess
    uas_port, port = free_port(), free_port()
    k = Kamailio(tmp_path, {GATEWAY: GATEWAY_PASSWORD}, gateway=GATEWAY,
                 routes={"300": uas_port, "301": uas_port, "302": uas_port}, tcp=transport == "tcp")
    uas = tmp_path / "uas.xml"
    uas.write_text(BUSY_UAS)
    messages = tmp_path / "uas-messages.log"
    sipp = subprocess.Popen(["sipp", "-sf", str(uas), "-i", "127.0.0.1", "-p", str(uas_port), "-m", "3",
                             "-nostdin", "-trace_msg", "-message_file", str(messages), "-trace_err",
                             "-timeout", "60s", "-timeout_error"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"sip:{{}}@127.0.0.1:{k.port}"
    lines = "\n".join(f'[[line]]\nid = {n}\ndriver = "sim"\nroute = "100"\nplan = "{plan}"\nrings = 8\n{own}'
                      for n, plan, own in ((1, "us", f'inbound_uri = "{base.format(301)}"\n'), (2, "us", ""),
                                           (3, "uk", f'inbound_uri = "{base.format(302)}"\n')))
    calls = "\n".join(f"[[call]]\nline = {n}\nat = 1.0\n{caller}give_up_after_rings = 3\n"
                      'steps = [ { wait = "answer" } ]\n'
                      for n, caller in ((1, 'caller = { number = "5551234567", name = "JOHN DOE" }\n'),
                                        (2, ""), (3, 'caller = { number_absent = "P", name_absent = "P" }\n')))
    sim = SimWithTrunk(tmp_path, trunk_config(tmp_path, port, k.port, lines=lines, inbound=base.format(300),
                                              extra='transport = "tcp"' if transport == "tcp" else ""), calls)
    try:
        sim.events.wait("trunk_state", state="registered", timeout=15)
        contacts = k.wait_contacts(GATEWAY)
        sim.run()
        sim.join(60)
        out = sipp.communicate(timeout=30)[0]
    finally:
        sim.stop()
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait()
        k.stop()
    assert sipp.returncode == 0, out[-2000:] + k.log()[-3000:]
    got = _received_invites(messages.read_text())
    # In the order the waits make (every call starts at 1.0 s): the UK line's at its first
    # ring, line 1's when its caller ID was decoded, line 2's 4.5 s after its first ring.
    assert list(got) == ["302", "301", "300"], got.keys()
    # Registered, and called, over the transport configured: Linebox's Via is the second.
    params = ";transport=tcp" if transport == "tcp" else ""
    assert contacts == [f"sip:{GATEWAY}@127.0.0.1:{port}{params}"], contacts
    assert f"registered {GATEWAY} from 127.0.0.1:" in k.log() and f"over {transport}" in k.log()
    for invite in got.values():
        assert invite["vias"][1].split(";")[0] == f"SIP/2.0/{transport.upper()} 127.0.0.1:{port}", invite
    domain = "127.0.0.1"
    # Line 1 (US, caller ID between the rings): its own URI, the caller asserted.
    assert got["301"]["from"].startswith(f'"JOHN DOE" <sip:5551234567@{domain}>;tag=')
    assert got["301"]["p-asserted-identity"] == f'"JOHN DOE" <sip:5551234567@{domain}>'
    assert "privacy" not in got["301"]
    # Line 2 (no caller ID: it waited, then went as the line): [sip] inbound_uri, nothing asserted.
    assert got["300"]["from"].startswith(f'"Line 2" <sip:line2@{domain}>;tag=')
    assert "p-asserted-identity" not in got["300"] and "privacy" not in got["300"]
    # Line 3 (UK, the number withheld before the first ring): anonymous, Privacy: id.
    assert got["302"]["from"].startswith('"Anonymous" <sip:anonymous@anonymous.invalid>;tag=')
    assert got["302"]["privacy"] == "id" and "p-asserted-identity" not in got["302"]
    log = k.log()
    assert f"call from 5551234567 to routed 301 at sip:127.0.0.1:{uas_port}: PAI sip:5551234567@{domain}" in log
    assert "call from anonymous to routed 302" in log and "Privacy id" in log
    # Every line went on as without the PBX once it was busy: the callers gave up.
    assert sorted(e["line"] for e in sim.events.of("missed_call")) == [1, 2, 3]


@needs_kamailio
def test_hwcheck_asks_the_pbx_over_tcp_when_that_is_the_transport(tmp_path):
    import io

    from linebox.config import load_config
    from linebox.hw.check import Report, run_checks
    k = Kamailio(tmp_path, USERS, gateway=GATEWAY, tcp=True)
    try:
        cfg = load_config(trunk_config(tmp_path, free_port(), k.port, extra='transport = "tcp"'))
        report = run_checks(cfg, None, Report(io.StringIO()))
        assert ("OK", "PBX (sip trunk)", f"sip:127.0.0.1:{k.port} accepts '{GATEWAY}'; 0 contact(s) registered now") \
            in report.results
        k.wait_log(f"registered {GATEWAY} from 127.0.0.1:")
        asked = [ln for ln in k.log().splitlines() if f"registered {GATEWAY} from 127.0.0.1:" in ln]
        assert asked and all(ln.endswith(" over tcp") for ln in asked), asked
    finally:
        k.stop()
    nobody = free_port(socket.SOCK_STREAM)
    cfg = load_config(trunk_config(tmp_path, free_port(), nobody, extra='transport = "tcp"', device="tcp-nobody"))
    report = run_checks(cfg, None, Report(io.StringIO()))
    assert report.failed and f"cannot reach 127.0.0.1:{nobody} over TCP" in report.results[-1][2], report.results


def test_transport_key_and_no_retransmission_over_tcp():
    keys = dict(mode="trunk", registrar="sip:pbx", username="gw", password="x", inbound_uri="sip:201@pbx")
    assert _sip(**keys).sip.trunk.transport == "udp"
    assert _sip(**keys, transport="tcp").sip.trunk.transport == "tcp"
    with pytest.raises(ConfigError, match=r"\[sip\] key 'transport': must be one of udp, tcp"):
        _sip(**keys, transport="tls")
    with pytest.raises(ConfigError, match=r"\[sip\] key 'transport': only with mode = \"trunk\""):
        _sip(transport="tcp")
    from linebox.sip.transport import Peer
    svc = FakeService()
    txns = trunk_mod.Transactions(svc)
    answers = []
    for transport in ("UDP", "TCP"):
        txns.send(Peer(transport, ("127.0.0.1", 5999)), "REGISTER", "REGISTER sip:pbx SIP/2.0",
                  [("Via", f"SIP/2.0/{transport} 127.0.0.1:5062;branch=z9hG4bK{transport}")], b"",
                  f"z9hG4bK{transport}", answers.append)
    svc.advance(31.0)
    udp = [d for d in svc.sent if b"/UDP " in d]
    tcp = [d for d in svc.sent if b"/TCP " in d]
    assert len(udp) > 5 and len(tcp) == 1          # Timer E resends over UDP only (RFC 3261 §17.1.2.2)
    assert answers == []
    svc.advance(2.0)
    assert answers == [None, None]                 # Timer F (64*T1) ends both
