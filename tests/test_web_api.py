"""The portal's JSON API (CONTRACT §8) against a real waitress server on a loopback port,
over an appliance whose messages were left by simulated calls through the real firmware."""

import http.cookiejar
import io
import json
import threading
import time
import tomllib
import urllib.error
import urllib.request
import wave

import pytest

from linebox.config import WebConfig, parse_config
from linebox.sim.runner import build, run
from linebox.sim.scenario import load_scenario
from linebox.web.auth import hash_password, store_admin_hash
from linebox.web.server import WebServer
from simkit import PIN, Sim, of, speech_wav

ADMIN_PASSWORD = "correct horse battery"
CALLS = """
[[call]]
line = 1
at = 1.0
caller = {{ number = "5551234567", name = "JOHN DOE" }}
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]

[[call]]
line = 2
at = 1.0
caller = {{ number = "5550001111", name = "ANN OTHER" }}
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]

[[call]]
line = 1
after = 5
caller = {{ number = "5559876543", name = "JANE ROE" }}
steps = [ {{ wait = "prompt:greeting" }}, {{ hangup = "busy" }} ]
"""


MISSED = '[[call]]\nline = 2\nat = 1\ngive_up_after_rings = 1\nsteps = []\n'


class Client:
    """A browser-like HTTP client: a cookie jar, the CSRF token from login."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.csrf = None

    def request(self, method, path, body=None, csrf=True, headers=None, raw=None):
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if csrf and self.csrf and method not in ("GET", "HEAD"):
            h["X-CSRF-Token"] = self.csrf
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with self.opener.open(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, method, path, body=None, **kw):
        status, headers, blob = self.request(method, path, body, **kw)
        return status, (json.loads(blob) if blob and headers.get("Content-Type", "").startswith("application/json") else blob)

    def login(self, **creds):
        status, out = self.json("POST", "/api/v1/login", creds)
        if status == 200:
            self.csrf = out["csrf"]
        return status, out


class Portal:
    """A simulated appliance after a scenario, served on a free loopback port."""

    def __init__(self, tmp_path, speech_files, scenario=None, separate=True, **sim_kw) -> None:
        sim_kw.setdefault("lines", ((1, "100", "us"), (2, "101", "us")))
        sim_kw.setdefault("boxes", ("100", "101"))
        self.sim = Sim(tmp_path, **sim_kw)
        text = self.sim.config_path.read_text()
        self.sim.config_path.write_text("# the office's configuration, kept by hand\n" + text)
        self.config = parse_config(tomllib.loads(self.sim.config_path.read_text()), str(self.sim.config_path))
        voice = speech_wav(tmp_path, speech_files[0], 3.0)
        path = self.sim.write_scenario(scenario if scenario is not None else CALLS.format(voice=voice))
        self.app, exchange, self.transcript = build(self.config, load_scenario(path), None, True,
                                                    clock_start=time.time())
        run(self.app, exchange, self.transcript)
        store_admin_hash(self.sim.data, hash_password(ADMIN_PASSWORD))
        self.lock = threading.RLock()
        self.server = WebServer(self.app, self.lock, WebConfig(frame_ancestors="'self' http://ha.local:8123"),
                                self.app.calllog, host="127.0.0.1", port=0, separate=separate)
        self.server.start()
        self.base = self.server.url.rstrip("/")
        self.bus_events: list[dict] = []
        self.app.bus.subscribe(self.bus_events.append)

    @property
    def events(self):
        return self.transcript.events

    def client(self) -> Client:
        return Client(self.base)

    def owner(self, box="100") -> Client:
        c = self.client()
        assert c.login(box=box, pin=PIN)[0] == 200
        return c

    def admin(self) -> Client:
        c = self.client()
        assert c.login(user="admin", password=ADMIN_PASSWORD)[0] == 200
        return c

    def message_of(self, box: str) -> dict:
        (m,) = [m for m in self.app.store.messages(box)]
        return m

    def close(self) -> None:
        self.server.stop()
        self.app.close()


@pytest.fixture
def portal(tmp_path, speech_files):
    p = Portal(tmp_path, speech_files)
    yield p
    p.close()


def _wav(rate=44100, channels=2, seconds=1.5) -> bytes:
    import math
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = bytearray()
        for i in range(int(rate * seconds)):
            v = int(8000 * math.sin(2 * math.pi * 440 * i / rate))
            frames += v.to_bytes(2, "little", signed=True) * channels
        w.writeframes(bytes(frames))
    return buf.getvalue()


# ---------------------------------------------------------------- login, sessions

def test_owner_login_gives_a_session_cookie_and_a_csrf_token(portal):
    c = portal.client()
    status, headers, blob = c.request("POST", "/api/v1/login", {"box": "100", "pin": PIN})
    out = json.loads(blob)
    assert status == 200 and out["ok"] is True and len(out["csrf"]) >= 32
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie


@pytest.mark.parametrize("creds, status", [
    ({"box": "100", "pin": "9999"}, 401),
    ({"box": "555", "pin": PIN}, 401),          # not a box: the same answer as a wrong PIN
    ({"box": "100", "pin": ""}, 401),
    ({"box": "1", "pin": PIN}, 400),
    ({"box": 100, "pin": PIN}, 400),
    ({"user": "admin", "password": "wrong password"}, 401),
    ({"user": "root", "password": ADMIN_PASSWORD}, 401),
])
def test_wrong_credentials_are_refused(portal, creds, status):
    got, out = portal.client().login(**creds)
    assert got == status and out["ok"] is False


def test_without_a_session_every_request_but_login_answers_401(portal):
    c = portal.client()
    m = portal.message_of("100")["id"]
    for method, path in [("GET", "/api/v1/boxes"), ("GET", "/api/v1/boxes/100/messages"),
                         ("GET", f"/api/v1/messages/{m}/audio"), ("DELETE", f"/api/v1/messages/{m}"),
                         ("POST", f"/api/v1/messages/{m}/undelete"), ("POST", f"/api/v1/messages/{m}/heard"),
                         ("GET", "/api/v1/calls"), ("GET", "/api/v1/lines"), ("POST", "/api/v1/logout"),
                         ("GET", "/api/v1/events"), ("GET", "/api/v1/settings")]:
        assert c.request(method, path)[0] == 401, (method, path)
    assert portal.message_of("100")["state"] == "new"


def test_logout_ends_the_session_on_the_server(portal):
    c = portal.owner()
    old = [ck for ck in c.jar]
    assert c.json("GET", "/api/v1/boxes")[0] == 200
    assert c.json("POST", "/api/v1/logout")[0] == 200
    replay = portal.client()
    for ck in old:                         # the old cookie, replayed
        replay.jar.set_cookie(ck)
    assert replay.json("GET", "/api/v1/boxes")[0] == 401


def test_idle_sessions_expire(tmp_path, speech_files):
    p = Portal(tmp_path, speech_files, scenario=MISSED, separate=False)     # to reach the sessions
    try:
        c = p.owner()
        sessions = p.server.wsgi.extensions["sessions"]
        sessions.idle = 0.2
        time.sleep(0.3)
        assert c.json("GET", "/api/v1/boxes")[0] == 401
    finally:
        p.close()


def test_the_phone_and_the_web_share_one_lockout_counter(tmp_path, speech_files):
    bad = ('{ wait = "prompt:greeting" }, { dtmf = "*" }, { wait = "prompt:pin" }, { dtmf = "9999#" }, '
           '{ wait = "prompt:pin" }, { dtmf = "9998#" }, { wait = "prompt:pin" }, { dtmf = "9997#" }, '
           '{ wait = "prompt:goodbye" }, { hangup = "busy" }')
    scen = f'[[call]]\nline = 1\nat = 1\ncaller = {{ number = "5550100" }}\nsteps = [ {bad} ]\n'
    p = Portal(tmp_path, speech_files, scenario=scen, separate=False)   # to lift the address limit
    try:
        assert len(of(p.events, "login", ok=False)) == 3          # three wrong PINs by phone
        p.server.wsgi.extensions["logins"].attempts = 1000        # not the per-address limit
        c = p.client()
        answers = [c.login(box="100", pin="1111")[0] for _ in range(7)]
        assert answers == [401] * 7                               # the 10th failure locks, still 401
        assert p.app.store.is_locked("100")
        assert c.login(box="100", pin="1112") == (429, {"ok": False, "error": "locked"})
        assert c.login(box="100", pin=PIN) == (429, {"ok": False, "error": "locked"})
        assert p.owner("101")                                     # another box is not locked
        web_fails = [e for e in p.bus_events if e.get("event") == "login" and e.get("via") == "web"]
        assert len(web_fails) == 7 and web_fails[-1]["reason"] == "locked"
    finally:
        p.close()


def test_logins_are_rate_limited_per_address(portal):
    c = portal.client()
    got = [c.login(box="101", pin="0000")[0] for _ in range(10)]
    assert got == [401] * 10
    assert c.login(box="100", pin=PIN) == (429, {"ok": False, "error": "rate_limited"})


def test_a_box_without_a_pin_is_not_open_to_the_web(tmp_path, speech_files):
    p = Portal(tmp_path, speech_files, scenario=MISSED)
    try:
        from dataclasses import replace
        cfg = p.app.config.boxes["101"]
        p.app.store.boxes["101"] = replace(cfg, pin_hash=None, pin_required=False)
        assert p.client().login(box="101", pin="0000")[0] == 401
        assert p.client().login(box="101", pin="")[0] == 401
    finally:
        p.close()


# ---------------------------------------------------------------- what a session may see

def test_an_owner_sees_only_the_own_box_and_the_admin_sees_all(portal):
    owner = portal.owner("100")
    status, boxes = owner.json("GET", "/api/v1/boxes")
    assert status == 200
    assert boxes == [{"number": "100", "name": "Box 100", "new": 1, "saved": 0, "total": 1, "full": False}]
    _, everything = portal.admin().json("GET", "/api/v1/boxes")
    assert [b["number"] for b in everything] == ["100", "101"]


def test_box_messages_like_linebox_messages(portal):
    status, msgs = portal.owner().json("GET", "/api/v1/boxes/100/messages")
    assert status == 200
    (m,) = msgs
    assert set(m) == {"id", "box", "state", "caller_number", "caller_name", "received", "seconds", "line",
                      "transcript"}
    assert (m["box"], m["state"], m["caller_number"], m["caller_name"], m["line"]) == \
        ("100", "new", "5551234567", "JOHN DOE", 1)
    assert m["received"][-6] in "+-" and 2.0 < m["seconds"] < 4.0


@pytest.mark.parametrize("path, status", [
    ("/api/v1/boxes/101/messages", 403),      # another owner's configured box
    ("/api/v1/boxes/999/messages", 404),      # no such box
    ("/api/v1/boxes/1x/messages", 400),
    ("/api/v1/boxes/..%2F..%2Fetc/messages", 404),   # not even a route
    ("/api/v1/boxes/..%2e/messages", 400),
    ("/api/v1/messages/abc/audio", 400),
    ("/api/v1/messages/999999/audio", 404),
    ("/api/v1/boxes/101/greeting", 403),
])
def test_refusals_for_bad_unknown_and_foreign_ids(portal, path, status):
    assert portal.owner("100").request("GET", path)[0] == status


def test_box_a_cannot_play_delete_or_restore_box_b_messages(portal):
    theirs = portal.message_of("101")["id"]
    c = portal.owner("100")
    assert c.request("GET", f"/api/v1/messages/{theirs}/audio")[0] == 404
    assert c.request("GET", f"/api/v1/messages/{theirs}/audio?download=1")[0] == 404
    assert c.request("DELETE", f"/api/v1/messages/{theirs}")[0] == 404
    assert c.request("POST", f"/api/v1/messages/{theirs}/heard")[0] == 404
    portal.app.store.delete(theirs)
    assert c.request("POST", f"/api/v1/messages/{theirs}/undelete")[0] == 404
    assert c.request("POST", f"/api/v1/messages/{theirs}/purge")[0] == 404
    assert portal.app.store.get(theirs)["state"] == "trash"


# ---------------------------------------------------------------- audio

def test_audio_is_pcm_wav_and_downloads_with_a_good_name(portal):
    m = portal.message_of("100")
    c = portal.owner()
    status, headers, blob = c.request("GET", f"/api/v1/messages/{m['id']}/audio")
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    assert headers["X-Content-Type-Options"] == "nosniff"
    with wave.open(io.BytesIO(blob)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert abs(w.getnframes() / 8000 - m["seconds"]) < 0.01
    assert "Content-Disposition" not in headers
    status, headers, again = c.request("GET", f"/api/v1/messages/{m['id']}/audio?download=1")
    assert status == 200 and again == blob
    day = m["received"][:10]
    hhmm = m["received"][11:13] + m["received"][14:16]
    assert headers["Content-Disposition"] == f"attachment; filename=box100_{day}_{hhmm}_5551234567_JOHN-DOE.wav"


def test_audio_honours_range_requests(portal):
    m = portal.message_of("100")
    status, headers, blob = portal.owner().request("GET", f"/api/v1/messages/{m['id']}/audio",
                                                   headers={"Range": "bytes=0-99"})
    assert status == 206 and len(blob) == 100 and blob[:4] == b"RIFF"


def test_waveform_is_an_svg_picture(portal):
    m = portal.message_of("100")
    status, headers, blob = portal.owner().request("GET", f"/api/v1/messages/{m['id']}/waveform.svg")
    assert status == 200 and headers["Content-Type"].startswith("image/svg+xml")
    assert blob.startswith(b"<svg") and blob.count(b"<rect") == 120


# ---------------------------------------------------------------- changes

def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(portal):
    m = portal.message_of("100")["id"]
    c = portal.owner()
    for method, path in [("DELETE", f"/api/v1/messages/{m}"), ("POST", f"/api/v1/messages/{m}/heard"),
                         ("POST", "/api/v1/logout"), ("PUT", "/api/v1/boxes/100/greeting")]:
        assert c.request(method, path, csrf=False)[0] == 403, path
        assert c.request(method, path, csrf=False, headers={"X-CSRF-Token": "forged"})[0] == 403, path
    other = portal.owner("101")               # a valid token, but of another session
    c2 = portal.owner("100")
    c2.csrf = other.csrf
    assert c2.request("DELETE", f"/api/v1/messages/{m}")[0] == 403
    assert portal.message_of("100")["state"] == "new"
    assert portal.app.store.greeting_path("100") is None
    assert c.json("GET", "/api/v1/boxes")[0] == 200           # still logged in


def test_delete_undelete_heard_and_purge_follow_the_lamp(portal):
    m = portal.message_of("100")["id"]
    c = portal.owner()
    leds = portal.app.leds
    assert leds.patterns["100"] != "off"
    assert c.json("DELETE", f"/api/v1/messages/{m}") == (200, {"ok": True, "state": "trash"})
    assert leds.patterns["100"] == "off"
    assert [e for e in portal.bus_events if e.get("event") == "message_state"][-1]["state"] == "trash"
    _, msgs = c.json("GET", "/api/v1/boxes/100/messages")
    assert [x["state"] for x in msgs] == ["trash"]            # the trash is listed too
    assert c.json("POST", f"/api/v1/messages/{m}/undelete") == (200, {"ok": True, "state": "new"})
    assert leds.patterns["100"] != "off"
    assert c.json("POST", f"/api/v1/messages/{m}/heard") == (200, {"ok": True, "state": "heard"})
    assert c.json("POST", f"/api/v1/messages/{m}/heard")[0] == 409   # a new message only
    assert c.json("POST", f"/api/v1/messages/{m}/undelete")[0] == 409  # not in the trash
    assert c.json("DELETE", f"/api/v1/messages/{m}")[0] == 200
    assert c.json("POST", f"/api/v1/messages/{m}/undelete") == (200, {"ok": True, "state": "heard"})
    assert c.json("POST", f"/api/v1/messages/{m}/purge")[0] == 409
    c.json("DELETE", f"/api/v1/messages/{m}")
    assert c.json("POST", f"/api/v1/messages/{m}/purge") == (200, {"ok": True, "state": "deleted"})
    assert portal.app.store.get(m) is None
    assert c.request("GET", f"/api/v1/messages/{m}/audio")[0] == 404


def test_changes_are_audited_with_who_did_them(portal, caplog):
    import logging
    caplog.set_level(logging.INFO, logger="linebox.web.audit")
    m = portal.message_of("100")["id"]
    portal.admin().json("DELETE", f"/api/v1/messages/{m}")
    (line,) = [r.getMessage() for r in caplog.records if "deleted" in r.getMessage()]
    assert line == f"web: admin (127.0.0.1) deleted message {m} (box 100) to trash"


# ---------------------------------------------------------------- greetings

def test_greeting_upload_at_44k_stereo_is_resampled_and_can_be_cleared(portal):
    c = portal.owner()
    status, headers, _ = c.request("GET", "/api/v1/boxes/100/greeting")
    assert status == 200 and headers["X-Linebox-Greeting"] == "system"
    status, out = c.json("PUT", "/api/v1/boxes/100/greeting", raw=_wav(44100, 2, 1.5),
                         headers={"Content-Type": "audio/wav"})
    assert status == 200 and out == {"ok": True, "seconds": 1.5, "kind": "unavailable"}
    with wave.open(str(portal.app.store.greeting_path("100"))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getnframes()) == (8000, 1, 12000)
    status, headers, blob = c.request("GET", "/api/v1/boxes/100/greeting")
    assert headers["X-Linebox-Greeting"] == "own" and headers["Content-Type"] == "audio/wav"
    assert c.json("DELETE", "/api/v1/boxes/100/greeting") == (200, {"ok": True, "kind": "unavailable"})
    assert portal.app.store.greeting_path("100") is None


@pytest.mark.parametrize("rate", [22050, 11025, 32000])
def test_greetings_at_other_rates_are_resampled(portal, rate):
    status, out = portal.owner().json("PUT", "/api/v1/boxes/100/greeting", raw=_wav(rate, 1, 1.0))
    assert (status, out) == (200, {"ok": True, "seconds": 1.0, "kind": "unavailable"})
    with wave.open(str(portal.app.store.greeting_path("100"))) as w:
        assert (w.getframerate(), w.getnframes()) == (8000, 8000)
        import array
        s = array.array("h", w.readframes(8000))
    # The 440 Hz tone survives at its level (peak near 8000, as written) and pitch.
    assert 7000 < max(s[2000:6000]) < 8800
    crossings = sum(1 for a, b in zip(s[2000:5999], s[2001:6000], strict=True) if a < 0 <= b)
    assert 215 <= crossings <= 225           # 440 Hz over half a second


@pytest.mark.parametrize("blob, needle", [
    (b"", "empty"),
    (b"this is not a wav file at all", "not a WAV file"),
    (_wav(44057, 1, 1.0), "sample rate 44057 Hz"),
    (_wav(8000, 1, 0.2), "half a second"),
])
def test_malformed_greeting_uploads_get_a_clear_error_and_change_nothing(portal, blob, needle):
    c = portal.owner()
    c.json("PUT", "/api/v1/boxes/100/greeting", raw=_wav(8000, 1, 1.0))
    before = portal.app.store.greeting_path("100").read_bytes()
    status, out = c.json("PUT", "/api/v1/boxes/100/greeting", raw=blob)
    assert status == 400 and out["ok"] is False and needle in out["error"]
    assert portal.app.store.greeting_path("100").read_bytes() == before


def test_an_oversized_upload_is_refused_and_changes_nothing(portal):
    c = portal.owner()
    status, out = c.json("PUT", "/api/v1/boxes/100/greeting", raw=b"RIFF" + b"\0" * (17 * 1024 * 1024))
    assert status == 413 and out == {"ok": False, "error": "the upload is larger than 16 MB"}
    assert portal.app.store.greeting_path("100") is None


def test_an_owner_cannot_set_another_box_greeting(portal):
    c = portal.owner("100")
    assert c.json("PUT", "/api/v1/boxes/101/greeting", raw=_wav(8000, 1, 1.0))[0] == 403
    assert portal.app.store.greeting_path("101") is None


# ---------------------------------------------------------------- lines, calls, live

def test_the_call_log_shows_each_session_its_calls(portal):
    status, calls = portal.admin().json("GET", "/api/v1/calls")
    assert status == 200
    assert [(c["line"], c["caller_number"], c["outcome"], c["box"]) for c in calls] == [
        (1, "5559876543", "hung_up", "100"),
        (2, "5550001111", "message", "101"),
        (1, "5551234567", "message", "100"),
    ] or [(c["line"], c["caller_number"], c["outcome"], c["box"]) for c in calls] == [
        (1, "5559876543", "hung_up", "100"),
        (1, "5551234567", "message", "100"),
        (2, "5550001111", "message", "101"),
    ]
    assert all(c["t"][-6] in "+-" for c in calls)
    mine = portal.owner("100").json("GET", "/api/v1/calls")[1]
    assert [c["caller_number"] for c in mine] == ["5559876543", "5551234567"]
    m = [c for c in mine if c["outcome"] == "message"][0]
    assert m["message"] == portal.message_of("100")["id"] and m["seconds"] > 3


def test_lines_show_their_state_to_who_may_see_them(portal):
    _, lines = portal.admin().json("GET", "/api/v1/lines")
    assert [(ln["id"], ln["state"]) for ln in lines] == [(1, "idle"), (2, "idle")]
    _, mine = portal.owner("101").json("GET", "/api/v1/lines")
    assert [ln["id"] for ln in mine] == [2]


def test_events_stream_reports_a_change(portal):
    c = portal.owner()
    m = portal.message_of("100")["id"]
    req = urllib.request.Request(portal.base + "/api/v1/events")
    stream = c.opener.open(req, timeout=10)
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert stream.readline().startswith(b"retry:")
    threading.Timer(0.3, lambda: portal.app.store.delete(m)).start()
    got = b""
    deadline = time.monotonic() + 10
    while b"data:" not in got.partition(b"event: box")[2] and time.monotonic() < deadline:
        got += stream.readline()
    stream.close()
    assert b"event: box" in got and m.encode() in got


def test_security_headers_and_the_insecure_notice(portal):
    status, headers, blob = portal.client().request("GET", "/login")
    assert status == 200
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' http://ha.local:8123" in csp and "script-src 'self'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert b"data-insecure" in blob
    assert portal.client().request("GET", "/")[0] in (302, 200)


# ---------------------------------------------------------------- settings

def test_an_owner_changes_the_own_email_and_language_keeping_comments(portal):
    c = portal.owner("100")
    status, out = c.json("POST", "/api/v1/boxes/100/settings", {"email": "me@example.com", "language": "de"})
    assert status == 200, out
    text = portal.sim.config_path.read_text()
    assert text.startswith("# the office's configuration, kept by hand\n")
    assert 'email = "me@example.com"' in text and 'language = "de"' in text
    assert portal.app.config.boxes["100"].language == "de"        # live, no restart
    assert portal.app.store.boxes["100"].email == ("me@example.com",)
    assert c.json("POST", "/api/v1/boxes/100/settings", {"email": "a@example.com, b@example.com"})[0] == 200
    assert 'email = ["a@example.com", "b@example.com"]' in portal.sim.config_path.read_text()
    assert c.json("GET", "/api/v1/settings")[1]["boxes"][0]["email"] == "a@example.com, b@example.com"
    assert c.json("POST", "/api/v1/boxes/100/settings", {"email": ""})[0] == 200
    assert "email =" not in portal.sim.config_path.read_text()


def test_an_owner_cannot_change_another_box_or_the_lines(portal):
    c = portal.owner("100")
    before = portal.sim.config_path.read_text()
    assert c.json("POST", "/api/v1/boxes/101/settings", {"language": "de"})[0] == 403
    assert c.json("POST", "/api/v1/lines/1/settings", {"rings": 3})[0] == 403
    assert c.json("POST", "/api/v1/boxes/100/settings", {"max_messages": 5})[0] == 403
    assert c.json("POST", "/api/v1/boxes", {"number": "200", "pin": "1234"})[0] == 403
    assert c.json("DELETE", "/api/v1/boxes/100")[0] == 403
    assert portal.sim.config_path.read_text() == before


def test_a_setting_the_config_parser_refuses_changes_nothing(portal):
    a = portal.admin()
    before = portal.sim.config_path.read_text()
    status, out = a.json("POST", "/api/v1/lines/1/settings", {"rings": 0})
    assert status == 400 and "[[line]] #1 key 'rings'" in out["error"]
    status, out = a.json("POST", "/api/v1/boxes/100/settings", {"email_on_new": True})
    assert status == 400 and "email_on_new" in out["error"]
    assert portal.sim.config_path.read_text() == before


def test_the_admin_sets_rings_and_answering_live(portal):
    a = portal.admin()
    assert a.json("POST", "/api/v1/lines/1/settings", {"rings": 5, "answer": False})[0] == 200
    settings = portal.app.settings
    assert settings.rings(1) == 5 and settings.answering(1) is False
    cfg = parse_config(tomllib.loads(portal.sim.config_path.read_text()), "x")
    assert cfg.line(1).rings == 5 and cfg.line(1).answer is False


def test_the_admin_adds_and_removes_a_box(portal):
    a = portal.admin()
    assert a.json("POST", "/api/v1/boxes", {"number": "200", "name": "Sales", "pin": "2468"})[0] == 200
    assert "200" in portal.app.store.boxes
    assert portal.client().login(box="200", pin="2468")[0] == 200
    assert a.json("DELETE", "/api/v1/boxes/200")[0] == 200
    assert "200" not in portal.app.config.boxes
    status, out = a.json("DELETE", "/api/v1/boxes/100")            # line 1 routes there
    assert status == 400 and "route" in out["error"]


def test_an_owner_changes_the_pin_and_other_sessions_end(portal):
    c = portal.owner("100")
    other = portal.owner("100")
    assert c.json("POST", "/api/v1/boxes/100/settings", {"pin": "13579"})[0] == 200
    assert other.json("GET", "/api/v1/boxes")[0] == 401
    assert c.json("GET", "/api/v1/boxes")[0] == 200
    assert portal.client().login(box="100", pin="13579")[0] == 200
    assert portal.client().login(box="100", pin=PIN)[0] == 401
    assert c.json("POST", "/api/v1/boxes/100/settings", {"pin": "12"})[0] == 400


def test_a_transcript_shows_in_the_api_and_on_the_box_page(portal):
    m = portal.message_of("100")["id"]
    portal.app.store.set_transcript(m, "please call me back <soon>", "test")
    c = portal.owner()
    (msg,) = c.json("GET", "/api/v1/boxes/100/messages")[1]
    assert msg["transcript"] == "please call me back <soon>"
    status, _, page = c.request("GET", "/box/100")
    assert status == 200 and b"please call me back &lt;soon&gt;" in page   # escaped


# ---------------------------------------------------------------- greeting kinds

def test_temporary_greeting_and_name_recording_are_kept_where_the_phone_finds_them(portal):
    from linebox.calls.flows import system_greeting
    from linebox.wavfile import read_wav

    c = portal.owner()
    store = portal.app.store
    assert c.request("GET", "/api/v1/boxes/100/greeting?kind=temporary")[0] == 404     # none yet
    assert c.request("GET", "/api/v1/boxes/100/greeting?kind=name")[0] == 404
    before = system_greeting(portal.app.svc, "100")
    status, out = c.json("PUT", "/api/v1/boxes/100/greeting?kind=temporary", raw=_wav(16000, 1, 1.0))
    assert (status, out) == (200, {"ok": True, "seconds": 1.0, "kind": "temporary"})
    status, out = c.json("PUT", "/api/v1/boxes/100/greeting?kind=name", raw=_wav(22050, 2, 0.8))
    assert (status, out) == (200, {"ok": True, "seconds": 0.8, "kind": "name"})
    # Where `linebox greeting --kind` and the phone's mailbox options keep them:
    assert store.greeting_path("100", "temporary").name == "100-temporary.wav"
    assert store.greeting_path("100", "name").name == "100-name.wav"
    assert store.greeting_path("100") is None                    # the own greeting untouched
    status, headers, blob = c.request("GET", "/api/v1/boxes/100/greeting?kind=temporary")
    assert status == 200 and headers["X-Linebox-Greeting"] == "own"
    assert blob == store.greeting_path("100", "temporary").read_bytes()
    # The system greeting now says the recorded name, as it does for one recorded by phone.
    assert system_greeting(portal.app.svc, "100") != before
    assert len(read_wav(store.greeting_path("100", "name"))) == 6400
    # Removing one leaves the other.
    assert c.json("DELETE", "/api/v1/boxes/100/greeting?kind=temporary") == (200, {"ok": True, "kind": "temporary"})
    assert store.greeting_path("100", "temporary") is None and store.greeting_path("100", "name") is not None
    assert c.json("DELETE", "/api/v1/boxes/100/greeting?kind=name")[0] == 200
    assert system_greeting(portal.app.svc, "100") == before


def test_a_call_hears_the_temporary_greeting_set_on_the_web(tmp_path, speech_files):
    p = Portal(tmp_path, speech_files, scenario=MISSED)
    try:
        c = p.owner("100")
        assert c.json("PUT", "/api/v1/boxes/100/greeting?kind=temporary", raw=_wav(8000, 1, 1.0))[0] == 200
        from linebox.calls.flows import greeting
        from linebox.wavfile import read_wav
        played = []

        class Call:
            def play(self, name, samples):
                played.append((name, samples))
                yield from ()
        list(greeting(p.app.svc, Call(), "100"))
        assert played == [("greeting", read_wav(p.app.store.greeting_path("100", "temporary")))]
    finally:
        p.close()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_an_unknown_greeting_kind_is_refused(portal, method):
    c = portal.owner()
    status, out = c.json(method, "/api/v1/boxes/100/greeting?kind=../../etc", raw=_wav(8000, 1, 1.0)
                         if method == "PUT" else None)
    assert status == 400 and "kind" in out["error"]
    folder = portal.sim.data / "greetings"
    assert not folder.exists() or not any(folder.iterdir())


def test_an_owner_cannot_set_another_box_temporary_greeting_or_name(portal):
    c = portal.owner("100")
    for kind in ("temporary", "name"):
        assert c.json("PUT", f"/api/v1/boxes/101/greeting?kind={kind}", raw=_wav(8000, 1, 1.0))[0] == 403
        assert c.json("DELETE", f"/api/v1/boxes/101/greeting?kind={kind}")[0] == 403
        assert portal.app.store.greeting_path("101", kind) is None


# ---------------------------------------------------------------- the administrator's lockout

def test_wrong_admin_passwords_lock_the_admin_login_across_a_restart(tmp_path, speech_files, caplog):
    import logging
    import stat

    caplog.set_level(logging.WARNING, logger="linebox.web.audit")
    p = Portal(tmp_path, speech_files, scenario=MISSED, separate=False)   # to lift the address limit
    try:
        p.server.wsgi.extensions["logins"].attempts = 1000
        c = p.client()
        got = [c.login(user="admin", password=f"guess number {i}")[0] for i in range(10)]
        assert got == [401] * 10                                  # the 10th failure locks, still 401
        assert c.login(user="admin", password=ADMIN_PASSWORD) == (429, {"ok": False, "error": "locked"})
        assert p.owner("100")                                     # the boxes are not locked
        lock_file = p.sim.data / "admin-logins.json"
        assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
        assert any("administrator login locked for 15 min" in r.getMessage() for r in caplog.records)
        # A restart of the portal keeps the lock.
        p.server.stop()
        from linebox.config import WebConfig
        from linebox.web.server import WebServer
        p.server = WebServer(p.app, p.lock, WebConfig(), p.app.calllog, host="127.0.0.1", port=0)
        p.server.start()
        p.base = p.server.url.rstrip("/")
        assert p.client().login(user="admin", password=ADMIN_PASSWORD) == (429, {"ok": False, "error": "locked"})
        # A new password (linebox admin-password) lifts it.
        store_admin_hash(p.sim.data, hash_password("a brand new password"))
        assert not lock_file.exists()
        assert p.client().login(user="admin", password="a brand new password")[0] == 200
    finally:
        p.close()


def test_the_admin_lock_lasts_15_minutes_then_doubles(tmp_path):
    from linebox.web.auth import AdminLockout

    now = [1_000_000.0]
    lock = AdminLockout(tmp_path, clock=lambda: now[0])
    assert [lock.failed("x") for _ in range(10)] == [False] * 9 + [True]
    assert lock.locked_until() == 1_000_000.0 + 900
    now[0] += 899
    assert lock.locked_until() is not None
    now[0] += 2
    assert lock.locked_until() is None
    assert [lock.failed("x") for _ in range(10)][-1] is True
    assert lock.locked_until() == now[0] + 1800                  # the second lock: twice as long
    now[0] += 3600 * 2
    for _ in range(9):                                            # spread over more than an hour:
        lock.failed("x")                                          # failures older than an hour
        now[0] += 500                                             # do not count
    assert lock.locked_until() is None
    lock.ok()
    assert not (tmp_path / "admin-logins.json").exists()


# ---------------------------------------------------------------- sessions across a restart

def test_sessions_survive_a_restart_of_the_portal_and_logout_still_ends_them(portal):
    import stat

    c = portal.owner("100")
    other = portal.owner("100")
    sid = [ck.value for ck in c.jar][0]
    m = portal.message_of("100")["id"]
    portal.server.stop()
    portal.server.start()                        # the same address, a new portal process
    assert c.json("GET", "/api/v1/boxes")[0] == 200
    assert c.json("POST", f"/api/v1/messages/{m}/save") == (200, {"ok": True, "state": "saved"})   # the CSRF token too
    path = portal.sim.data / "sessions.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sid not in path.read_text()           # only a hash of the id is kept
    assert other.json("POST", "/api/v1/logout")[0] == 200
    portal.server.stop()
    portal.server.start()
    assert other.json("GET", "/api/v1/boxes")[0] == 401
    assert c.json("GET", "/api/v1/boxes")[0] == 200


def test_the_idle_timeout_runs_across_a_restart(tmp_path):
    from linebox.web.auth import Sessions

    mono, wall = [100.0], [5_000_000.0]
    path = tmp_path / "sessions.json"
    a = Sessions(idle=60, clock=lambda: mono[0], path=path, wall=lambda: wall[0])
    s = a.create("box 100", "100")
    mono[0] += 30
    wall[0] += 30
    assert a.get(s.id) is not None
    a.flush()
    mono[0], wall[0] = 7.0, wall[0] + 40           # a restart 40 s later (a new monotonic clock)
    b = Sessions(idle=60, clock=lambda: mono[0], path=path, wall=lambda: wall[0])
    got = b.get(s.id)
    assert got is not None and got.csrf == s.csrf and got.box == "100"
    mono[0] += 61
    assert b.get(s.id) is None                    # idle too long
    wall[0] += 10_000
    c = Sessions(idle=60, clock=lambda: mono[0], path=path, wall=lambda: wall[0])
    assert c.get(s.id) is None


@pytest.mark.parametrize("text", ["not json", '{"x": 1}', '{"' + "a" * 64 + '": {"user": "root", "box": null, '
                                  '"csrf": "' + "c" * 40 + '", "seen": 0}}'])
def test_a_damaged_or_forged_sessions_file_lets_nobody_in(tmp_path, text):
    from linebox.web.auth import Sessions

    (tmp_path / "sessions.json").write_text(text)
    s = Sessions(idle=1e12, path=tmp_path / "sessions.json")
    assert s._by_key == {}


# ---------------------------------------------------------------- block list, SIP calls

def test_the_admin_sets_a_line_block_list_live_and_bad_patterns_are_refused(portal):
    a = portal.admin()
    status, out = a.json("POST", "/api/v1/lines/1/settings", {"block": ["5559876543", "1900*"]})
    assert status == 200, out
    assert 'block = ["5559876543", "1900*"]' in portal.sim.config_path.read_text()
    (runner,) = [r for r in portal.app.runners if r.id == 1]
    assert runner.block == ("5559876543", "1900*")                  # the next call follows it
    assert a.json("GET", "/api/v1/settings")[1]["lines"][0]["block"] == ["5559876543", "1900*"]
    before = portal.sim.config_path.read_text()
    status, out = a.json("POST", "/api/v1/lines/1/settings", {"block": ["555-CALL-NOW"]})
    assert status == 400 and "[[line]] #1 key 'block'" in out["error"]
    assert portal.sim.config_path.read_text() == before and runner.block == ("5559876543", "1900*")
    assert portal.owner("100").json("POST", "/api/v1/lines/1/settings", {"block": []})[0] == 403
    assert a.json("POST", "/api/v1/lines/1/settings", {"block": []})[0] == 200
    assert "block" not in portal.sim.config_path.read_text() and runner.block == ()


def test_calls_from_ip_phones_show_in_the_call_log_with_the_extension(portal):
    bus = portal.app.bus
    bus.publish({"event": "sip_call", "caller_number": "201", "caller_name": "Front desk",
                 "dialled": "100", "line": None, "extension": "201"})
    bus.publish({"event": "record_start", "box": "100", "line": None, "extension": "201", "t": 1.0})
    bus.publish({"event": "onhook", "line": None, "extension": "201", "t": 3.0})
    deadline = time.monotonic() + 10
    calls = []
    while time.monotonic() < deadline and not any(c["extension"] for c in calls):
        calls = portal.owner("100").json("GET", "/api/v1/calls")[1]
    (c,) = [c for c in calls if c["extension"]]
    assert (c["extension"], c["line"], c["caller_name"], c["outcome"], c["box"]) == \
        ("201", None, "Front desk", "hung_up", "100")
    assert not [c for c in portal.owner("101").json("GET", "/api/v1/calls")[1] if c["extension"]]
    status, _, page = portal.admin().request("GET", "/")
    assert status == 200 and b"ext 201" in page


# ---------------------------------------------------------------- the channel to the portal's process

def test_the_daemon_checks_every_call_of_the_portal_process(portal, tmp_path):
    """The daemon's end of the channel (web/ipc.py) as a compromised portal process would
    see it: only JSON, only the listed calls, every argument checked against the store."""
    import pickle
    import socket

    from linebox.web import ipc

    ours, theirs = socket.socketpair()
    host = ipc.HostedPortal(portal.server.portal, ours)
    host.start()
    theirs.settimeout(10)

    def ask(rid, name, *args):
        ipc.send_frame(theirs, b"j", json.dumps({"id": rid, "call": name, "args": list(args)}).encode())
        while True:
            kind, payload = ipc.recv_frame(theirs)
            assert kind == b"p"                       # the daemon's answers are its own pickles
            item = pickle.loads(payload)
            if item[0] == "reply" and item[1] == rid:
                return item[2], item[3]

    try:
        ok, value = ask(1, "is_locked", "100")
        assert (ok, value) == (True, False)
        samples = ipc.samples_out([0] * 8000)
        assert ask(2, "set_greeting", "../../../tmp/evil", samples, "unavailable", "x") == (False, (400, "bad box"))
        assert ask(3, "set_greeting", "100", samples, "../x", "x") == (False, (400, "bad kind"))
        assert ask(4, "delete", "1 OR 1", "x") == (False, (400, "bad message"))
        assert ask(5, "set_answering", 1, "yes", "x") == (False, (400, "bad bool"))
        assert ask(6, "set_rings", 99, 3, "x") == (False, (400, "bad line"))
        assert not list(tmp_path.rglob("evil*")) and portal.app.store.greeting_path("100") is None
        m = portal.message_of("100")["id"]
        assert ask(7, "delete", m, "test")[0] is True and portal.app.store.get(m)["state"] == "trash"
        # An unknown call gets nothing; a pickle from the portal's side closes the channel.
        ipc.send_frame(theirs, b"j", json.dumps({"id": 8, "call": "__class__", "args": []}).encode())
        assert ask(9, "is_locked", "100") == (True, False)
        ipc.send_frame(theirs, b"p", pickle.dumps(("reply", 1, True, None)))
        with pytest.raises(ipc.ChannelClosed):
            while True:
                ipc.recv_frame(theirs)
    finally:
        host.close()
        theirs.close()


def test_events_lost_on_the_way_make_the_portal_forget_its_copies(portal, monkeypatch):
    import socket

    from linebox.web import ipc

    monkeypatch.setattr(ipc, "OUTBOX", 2)
    ours, theirs = socket.socketpair()
    host = ipc.HostedPortal(portal.server.portal, ours)
    remote = ipc.RemotePortal(theirs, portal.app.config, portal.sim.data)
    remote.start()
    try:
        remote._snapshot = ([], {})                 # a copy the portal holds
        remote._calls = []
        for _ in range(5):                          # more than the channel holds: some are dropped
            portal.app.bus.publish({"event": "line_state", "line": 1, "state": "idle"})
        assert host._gap
        host.start()
        deadline = time.monotonic() + 10
        while (remote._snapshot is not None or remote._calls is not None) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert remote._snapshot is None and remote._calls is None
        assert [m["id"] for m in remote.messages("100")] == [portal.message_of("100")["id"]]
    finally:
        host.close()
        theirs.close()
