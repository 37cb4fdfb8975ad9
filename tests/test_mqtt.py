"""MQTT reporting against a real mosquitto started by each test on a free port: status
and will, retained states, durable ordered events across broker and process restarts,
commands (through the command table, against a real Appliance), the hostile payloads
and retained commands of the adversarial run, a dead reporter restarted by the daemon,
Home Assistant discovery, TLS with a password."""

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from linebox.app import Appliance
from linebox.config import DeviceConfig, MqttConfig, parse_config
from linebox.events import Bus
from linebox.report.mqtt import MqttReporter
from linebox.report.outbox import Outbox
from linebox.run import Daemon

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
BASE = "linebox/office"
WAIT = 15.0                  # seconds any awaited condition may take (reconnects back off)
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")


# ---------------------------------------------------------------- a private broker

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout=WAIT, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Broker:
    """mosquitto on 127.0.0.1:<free port>, started and stopped by the test."""

    def __init__(self, folder: Path, extra: str = "", persistent: bool = False):
        self.port = free_port()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "user root" if _root() else ""]
        lines += [f"persistence true\npersistence_location {folder}/" if persistent
                  else "persistence false"]
        if "allow_anonymous" not in extra:
            lines.append("allow_anonymous true")
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join([*lines, extra]) + "\n")
        self.proc = None

    def start(self):
        self.log = open(self.folder / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("mosquitto did not start: "
                                         + (self.folder / "mosquitto.log").read_text()) from None
                time.sleep(0.02)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
        self.log.close()


def _root() -> bool:
    import os
    return os.geteuid() == 0


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


class Watcher:
    """A plain MQTT client that records everything under linebox/ and homeassistant/."""

    def __init__(self, port, tls_ca=None, auth=None, client_id=None, topics=("linebox/#",
                 "homeassistant/#")):
        self.messages: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.topics = topics
        self.subscribed = threading.Event()
        clean = client_id is None
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or "",
                                  clean_session=clean)
        if tls_ca:
            self.client.tls_set(ca_certs=str(tls_ca))
        if auth:
            self.client.username_pw_set(*auth)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in self.topics])
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(WAIT)

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))

    def of(self, topic):
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def last(self, topic):
        got = self.of(topic)
        return got[-1] if got else None

    def events(self):
        return [json.loads(p) for p in self.of(f"{BASE}/event")]

    def clear(self):
        with self.lock:
            self.messages.clear()

    def publish(self, topic, payload, retain=False):
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def watcher(broker):
    w = Watcher(broker.port)
    yield w
    w.close()


# ---------------------------------------------------------------- the appliance side

class FakeState:
    def __init__(self):
        self.lines = {1: "idle", 2: "ringing"}
        self.boxes = {"100": {"new": 2, "saved": 1, "total": 3, "full": False, "name": "Main office"},
                      "101": {"new": 0, "saved": 0, "total": 0, "full": False, "name": "Sales"}}
        self.settings = {1: {"answering": True, "rings": 4}, 2: {"answering": False, "rings": 6}}

    def line_states(self):
        return dict(self.lines)

    def box_counts(self):
        return {k: dict(v) for k, v in self.boxes.items()}

    def line_settings(self):
        return {k: dict(v) for k, v in self.settings.items()}


class FakeCommands:
    """Records the commands that reach the dispatcher; answers ok."""

    def __init__(self):
        self.calls = []

    def __call__(self, action, args):
        self.calls.append((action, args))
        return {"ok": True, "error": None, "action": action, "request_id": None}


class Rig:
    """A reporter with its bus, outbox, fake state and target."""

    def __init__(self, port, folder, **mqtt):
        self.bus = Bus()
        self.state = FakeState()
        self.target = FakeCommands()
        self.outbox = Outbox(folder)
        extensions = mqtt.pop("extensions", ())
        cfg = MqttConfig(host="127.0.0.1", port=port, **mqtt)
        self.reporter = MqttReporter(cfg, DeviceConfig(id="office", name="Office line box",
                                                       timezone="Europe/Berlin"),
                                     self.bus, self.outbox, self.state, self.target,
                                     clock=lambda: 1_700_000_000.0, extensions=extensions)

    def __enter__(self):
        self.reporter.start()
        return self

    def __exit__(self, *exc):
        self.reporter.stop()

    def wait_connected(self):
        wait_until(lambda: self.reporter.connected, what="the reporter to connect")


def strip(events):
    """Events without their id and time (checked on their own)."""
    return [{k: v for k, v in e.items() if k not in ("id", "time")} for e in events]


CALL_STORY = [
    {"event": "ring", "line": 1, "n": 1},
    {"event": "callerid", "line": 1, "number": "5551234567", "name": "JOHN DOE",
     "number_absent": None, "name_absent": None},
    {"event": "ring", "line": 1, "n": 2},
    {"event": "answer", "line": 1, "after_rings": 2, "caller_number": "5551234567",
     "caller_name": "JOHN DOE", "caller_number_absent": None, "caller_name_absent": None},
    {"event": "message_saved", "box": "100", "id": "000007", "seconds": 8.4, "line": 1,
     "caller_number": "5551234567", "caller_name": "JOHN DOE", "recovered": False},
    {"event": "onhook", "line": 1},
    {"event": "ring", "line": 2, "n": 1},
    {"event": "missed_call", "line": 2, "rings": 5, "caller_number": None, "caller_name": None},
    {"event": "login", "line": 1, "box": "100", "ok": False},
    {"event": "message_state", "id": "000007", "box": "100", "state": "heard"},
    {"event": "message_state", "id": "000007", "box": "100", "state": "trash"},
    {"event": "message_state", "id": "000007", "box": "100", "state": "deleted"},
    {"event": "message_retracted", "id": "000008", "box": "101"},
    {"event": "line_fault", "line": 2, "reason": "no loop current"},
]
CALL_STORY_REPORTS = [
    {"type": "call", "line": 1, "caller_number": "5551234567", "caller_name": "JOHN DOE",
     "rings": 2},
    {"type": "message_saved", "box": "100", "message": "000007", "line": 1,
     "caller_number": "5551234567", "caller_name": "JOHN DOE", "seconds": 8.4},
    {"type": "missed_call", "line": 2, "caller_number": None, "caller_name": None, "rings": 5},
    {"type": "login_failed", "line": 1, "box": "100", "reason": "wrong_pin"},
    {"type": "message_heard", "box": "100", "message": "000007"},
    {"type": "message_deleted", "box": "100", "message": "000007"},
    {"type": "message_retracted", "box": "101", "message": "000008"},
    {"type": "line_fault", "line": 2, "reason": "no loop current"},
]


def numbered(n0, n1):
    return [{"event": "missed_call", "line": 1, "rings": n, "caller_number": None,
             "caller_name": None} for n in range(n0, n1)]


def rings_of(events):
    return [e["rings"] for e in events]


def first_occurrences(events):
    seen, out = set(), []
    for e in events:
        if e["id"] not in seen:
            seen.add(e["id"])
            out.append(e)
    return out


# ---------------------------------------------------------------- status and states

def test_status_is_online_on_connect_and_offline_after_a_clean_stop(broker, watcher, tmp_path):
    with Rig(broker.port, tmp_path / "outbox") as rig:
        wait_until(lambda: watcher.last(f"{BASE}/status") == "online", what="online")
        rig.wait_connected()
    wait_until(lambda: watcher.last(f"{BASE}/status") == "offline", what="offline")
    late = Watcher(broker.port, topics=(f"{BASE}/status",))
    wait_until(lambda: late.of(f"{BASE}/status") == ["offline"], what="retained offline")
    late.close()


WILL_SCRIPT = """
import sys, time
from pathlib import Path
from linebox.config import DeviceConfig, MqttConfig
from linebox.events import Bus
from linebox.report.mqtt import MqttReporter
from linebox.report.outbox import Outbox

class State:
    def line_states(self): return {1: "idle"}
    def box_counts(self): return {}
    def line_settings(self): return {}

r = MqttReporter(MqttConfig(host="127.0.0.1", port=int(sys.argv[1])), DeviceConfig(id="office"),
                 Bus(), Outbox(Path(sys.argv[2])), State(), None)
r.start()
while not r.connected:
    time.sleep(0.01)
print("connected", flush=True)
time.sleep(120)
"""


def test_the_will_sets_offline_when_the_process_is_killed(broker, watcher, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WILL_SCRIPT, str(broker.port),
                             str(tmp_path / "outbox")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "connected"
        wait_until(lambda: watcher.last(f"{BASE}/status") == "online", what="online")
        proc.kill()
        proc.wait(10)
        wait_until(lambda: watcher.last(f"{BASE}/status") == "offline", what="the will")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert watcher.of(f"{BASE}/status") == ["online", "offline"]


def test_retained_states_come_from_the_state_source_on_connect(broker, tmp_path):
    with Rig(broker.port, tmp_path / "outbox") as rig:
        rig.wait_connected()
        assert rig.reporter.flush(WAIT)               # every state handed to paho
        late = Watcher(broker.port, topics=(f"{BASE}/line/#", f"{BASE}/box/#"))
        wait_until(lambda: late.last(f"{BASE}/box/101/state") is not None
                   and late.last(f"{BASE}/line/2/rings") is not None, what="the states")
        assert json.loads(late.last(f"{BASE}/box/100/state")) == {
            "new": 2, "saved": 1, "total": 3, "full": False, "name": "Main office"}
        assert late.last(f"{BASE}/line/1/state") == "idle"
        assert late.last(f"{BASE}/line/2/state") == "ringing"
        assert late.last(f"{BASE}/line/1/answering") == "ON"
        assert late.last(f"{BASE}/line/2/answering") == "OFF"
        assert late.last(f"{BASE}/line/2/rings") == "6"
        late.close()
    # Once the reporter is gone, a newcomer still gets them all: they were retained.
    later = Watcher(broker.port, topics=(f"{BASE}/line/#", f"{BASE}/box/#"))
    wait_until(lambda: later.last(f"{BASE}/line/2/rings") == "6", what="retained states")
    assert later.last(f"{BASE}/box/100/state") is not None
    assert all(retained for _, _, retained in later.messages)
    later.close()


def test_bus_events_update_the_retained_states(broker, watcher, tmp_path):
    with Rig(broker.port, tmp_path / "outbox") as rig:
        rig.wait_connected()
        wait_until(lambda: watcher.last(f"{BASE}/line/1/state") == "idle", what="first state")
        rig.bus.publish({"event": "line_state", "line": 1, "state": "ringing"})
        rig.bus.publish({"event": "line_state", "line": 1, "state": "answered"})
        rig.bus.publish({"event": "box_changed", "box": "101", "counts": {
            "new": 1, "saved": 0, "total": 1, "full": False, "name": "Sales"}})
        wait_until(lambda: watcher.last(f"{BASE}/line/1/state") == "answered", what="answered")
        wait_until(lambda: watcher.last(f"{BASE}/box/101/state") is not None
                   and json.loads(watcher.last(f"{BASE}/box/101/state"))["new"] == 1)
        assert json.loads(watcher.last(f"{BASE}/box/101/state")) == {
            "new": 1, "saved": 0, "total": 1, "full": False, "name": "Sales"}
        assert rig.outbox.pending() == []           # states are not events


# ---------------------------------------------------------------- events

def test_events_arrive_in_order_with_the_contract_fields(broker, watcher, tmp_path):
    with Rig(broker.port, tmp_path / "outbox") as rig:
        for ev in CALL_STORY:
            rig.bus.publish(ev)
        assert rig.reporter.flush(WAIT)
        wait_until(lambda: len(watcher.events()) >= len(CALL_STORY_REPORTS), what="events")
    events = watcher.events()
    assert strip(events) == CALL_STORY_REPORTS
    assert len({e["id"] for e in events}) == len(events)
    assert all(ISO.match(e["time"]) for e in events)
    assert events[0]["time"] == "2023-11-14T23:13:20.000+01:00"       # Europe/Berlin
    assert list((tmp_path / "outbox").iterdir()) == []                # all acknowledged


def test_events_made_while_the_broker_is_down_arrive_after_it_returns_in_order(tmp_path):
    broker = Broker(tmp_path / "broker", persistent=True).start()
    # A persistent session: the broker keeps what the reporter sends before this
    # watcher is back, so the test sees everything that was delivered.
    watcher = Watcher(broker.port, client_id="watcher", topics=(f"{BASE}/event",))
    try:
        with Rig(broker.port, tmp_path / "outbox") as rig:
            for ev in numbered(1, 4):
                rig.bus.publish(ev)
            assert rig.reporter.flush(WAIT)
            broker.stop()
            wait_until(lambda: not rig.reporter.connected, what="the reporter to notice")
            for ev in numbered(4, 9):
                rig.bus.publish(ev)
            assert rig.reporter.flush(0.2) is False
            assert rings_of(rig.outbox.pending()) == [4, 5, 6, 7, 8]
            broker.start()
            for ev in numbered(9, 11):               # newer, most likely before it reconnects
                rig.bus.publish(ev)
            rig.wait_connected()
            for ev in numbered(11, 13):              # newer still, after it reconnected
                rig.bus.publish(ev)
            assert rig.reporter.flush(WAIT)
            wait_until(lambda: len(first_occurrences(watcher.events())) >= 12, what="12 events")
        events = first_occurrences(watcher.events())
        assert rings_of(events) == list(range(1, 13))
        # The broker may hand the watcher's session 1-3 again after its restart (QoS 1
        # towards the watcher); everything made after the broker stopped came once.
        received = rings_of(watcher.events())
        assert [n for n in received if n >= 4] == list(range(4, 13))
    finally:
        watcher.close()
        broker.stop()


def test_events_left_by_a_previous_process_are_delivered_first(tmp_path):
    broker = Broker(tmp_path / "broker")            # not running yet
    with Rig(broker.port, tmp_path / "outbox") as old:
        for ev in numbered(1, 4):
            old.bus.publish(ev)
        assert old.reporter.flush(0.1) is False
    assert len(list((tmp_path / "outbox").iterdir())) == 3
    broker.start()
    watcher = Watcher(broker.port, topics=(f"{BASE}/event",))
    try:
        with Rig(broker.port, tmp_path / "outbox") as new:
            for ev in numbered(4, 6):
                new.bus.publish(ev)
            assert new.reporter.flush(WAIT)
            wait_until(lambda: len(watcher.events()) >= 5, what="5 events")
        assert rings_of(watcher.events()) == [1, 2, 3, 4, 5]
    finally:
        watcher.close()
        broker.stop()


def test_flush_reports_false_while_no_broker_acknowledged(tmp_path):
    with Rig(free_port(), tmp_path / "outbox") as rig:
        rig.bus.publish(numbered(1, 2)[0])
        t0 = time.monotonic()
        assert rig.reporter.flush(0.3) is False
        assert time.monotonic() - t0 >= 0.3
        assert rings_of(rig.outbox.pending()) == [1]


# ---------------------------------------------------------------- commands

APP_CONFIG = """
[device]
id = "office"
name = "Office line box"
data_dir = "{data}"
timezone = "Europe/Berlin"
[[line]]
id = 1
driver = "sim"
rings = 4
toll_saver_rings = 2
route = "100"
[[line]]
id = 2
driver = "sim"
rings = 6
answer = false
route = "101"
[[box]]
number = "100"
name = "Main office"
pin_required = false
[[box]]
number = "101"
name = "Sales"
pin_required = false
[mqtt]
host = "127.0.0.1"
port = {port}
{mqtt_extra}
"""


def app_config(tmp_path, port, mqtt_extra=""):
    import tomllib
    path = tmp_path / "linebox.toml"
    path.write_text(APP_CONFIG.format(data=tmp_path / "data", port=port, mqtt_extra=mqtt_extra))
    return parse_config(tomllib.loads(path.read_text()), str(path))


def leave_message(app, box="100", number="5551234567", name="JOHN DOE", line=1) -> str:
    """A 3-second message, saved through the store as a call would."""
    from array import array
    pending = app.store.start_recording(box, line, number, name)
    pending.write(array("h", [800, -800] * 12000))
    return pending.finish()["id"]


class AppRig:
    """A real Appliance (store, lamps, settings) reporting to the broker, as `linebox run`
    wires it."""

    def __init__(self, tmp_path, port, mqtt_extra=""):
        self.app = Appliance(app_config(tmp_path, port, mqtt_extra), Bus())
        self.app.start_reporting()
        self.app.open()
        self.app.run_reporting()
        self.reporter = self.app.reporter
        wait_until(lambda: self.reporter.connected, what="the reporter to connect")

    def leave(self, **kw) -> str:
        return leave_message(self.app, **kw)

    def state_of(self, message):
        return self.app.store.get(message)["state"]

    def close(self):
        self.app.close()


def send_command(rig, watcher, action, payload, retain=False):
    """Publish a command and return the one answer, running the loop's command step."""
    watcher.clear()
    watcher.publish(f"{BASE}/cmd/{action}", payload, retain=retain)
    result = f"{BASE}/cmd/result"
    deadline = time.monotonic() + WAIT
    while not watcher.of(result):
        rig.reporter.process_commands()
        assert time.monotonic() < deadline, "no answer on cmd/result"
        time.sleep(0.01)
    rig.reporter.process_commands()
    (answer,) = watcher.of(result)
    return json.loads(answer)


def no_answer(rig, watcher, seconds=0.5):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rig.reporter.process_commands()
        time.sleep(0.01)
    return watcher.of(f"{BASE}/cmd/result") == []


@pytest.fixture
def app_rig(broker, tmp_path):
    rig = AppRig(tmp_path, broker.port)
    yield rig
    rig.close()


@pytest.fixture
def rig(broker, tmp_path):
    with Rig(broker.port, tmp_path / "outbox") as rig:
        rig.wait_connected()
        yield rig


def test_mqtt_commands_go_through_the_command_table(app_rig, watcher):
    new, saved = app_rig.leave(), app_rig.leave()
    app_rig.app.store.set_state(saved, "saved")
    assert send_command(app_rig, watcher, "mark_heard", '{"box": "100", "request_id": "r1"}') == {
        "ok": True, "error": None, "action": "mark_heard", "request_id": "r1", "result": 1}
    assert (app_rig.state_of(new), app_rig.state_of(saved)) == ("heard", "saved")
    assert send_command(app_rig, watcher, "delete", new)["result"] == new
    assert app_rig.state_of(new) == "trash"
    assert send_command(app_rig, watcher, "undelete", json.dumps({"message": new}))["ok"]
    assert app_rig.state_of(new) == "heard"
    listed = send_command(app_rig, watcher, "list", "100")["result"]
    assert [m["id"] for m in listed] == [new, saved]
    assert listed[0]["caller_number"] == "5551234567"


def test_refusals_are_answered_in_plain_words_with_the_request_id(app_rig, watcher):
    assert send_command(app_rig, watcher, "delete", '{"message": "000099", "request_id": 5}') == {
        "ok": False, "error": "no message 000099", "action": "delete", "request_id": 5}
    assert send_command(app_rig, watcher, "delete", '{"message": "٠٠٠٠٠١"}')["error"] == \
        'message must be a message id string like "000012"'
    assert send_command(app_rig, watcher, "frobnicate", "{}")["error"].startswith(
        "unknown action 'frobnicate' (known: mark_heard, delete, undelete, save, purge, list, unlock")


def test_answering_and_rings_update_their_retained_states_and_survive_a_restart(
        broker, watcher, tmp_path):
    rig = AppRig(tmp_path, broker.port)
    try:
        send_command(rig, watcher, "answering", '{"line": 1, "on": false}')
        wait_until(lambda: watcher.last(f"{BASE}/line/1/answering") == "OFF", what="OFF")
        send_command(rig, watcher, "rings", '{"line": 1, "rings": 5}')
        wait_until(lambda: watcher.last(f"{BASE}/line/1/rings") == "5", what="rings 5")
        assert send_command(rig, watcher, "rings", '{"line": 1, "rings": 2}')["error"] == \
            "rings must be more than line 1's toll_saver_rings (2)"
        assert send_command(rig, watcher, "reload", "")["ok"] is True
    finally:
        rig.close()
    again = AppRig(tmp_path, broker.port)
    try:
        late = Watcher(broker.port, topics=(f"{BASE}/line/#",))
        wait_until(lambda: late.last(f"{BASE}/line/1/rings") == "5", what="rings after restart")
        assert late.last(f"{BASE}/line/1/answering") == "OFF"
        assert again.app.rings_needed(again.app.config.line(1)) == 5
        late.close()
    finally:
        again.close()


HOSTILE = [
    ("delete", "[" * 1000, "bad JSON: nested too deeply"),
    ("delete", '{"message": ' + "9" * 4301 + "}", "payload too large (4314 bytes; at most 4096)"),
    ("delete", '{"message": ' + "9" * 4000 + "}", "a number in the payload is too long"),
    ("mark_heard", "{" * 3000, "bad JSON: Expecting property name enclosed in double quotes "
                               "at character 1"),
    ("rings", '{"line": 1, "rings": 1e999}', "rings must be an integer from 1 to 20"),
    ("answering", "x" * 100_000, "payload too large (100000 bytes; at most 4096)"),
]


@pytest.mark.parametrize("action,payload,error", HOSTILE, ids=[p[:20] for _, p, _ in HOSTILE])
def test_one_bad_message_never_stops_reporting(app_rig, watcher, action, payload, error):
    assert send_command(app_rig, watcher, action, payload)["error"] == error
    assert app_rig.reporter.dead() is None
    # Still reporting: a command is answered, an event is delivered.
    m = app_rig.leave()
    wait_until(lambda: any(e.get("message") == m for e in watcher.events()), what="the event")
    assert send_command(app_rig, watcher, "mark_heard", json.dumps({"message": m}))["result"] == 1


def test_a_command_that_makes_the_callback_raise_does_not_kill_the_network_thread(
        app_rig, watcher, monkeypatch, caplog):
    def boom(action, payload):
        raise RecursionError("as deep as the adversary likes")
    monkeypatch.setattr("linebox.report.mqtt.parse_payload", boom)
    watcher.publish(f"{BASE}/cmd/delete", "000001")
    wait_until(lambda: "_on_message failed: RecursionError" in caplog.text, what="the log")
    monkeypatch.undo()
    assert app_rig.reporter.dead() is None
    assert send_command(app_rig, watcher, "list", "100")["ok"] is True


def test_retained_commands_are_ignored(broker, watcher, tmp_path):
    rig = AppRig(tmp_path, broker.port)
    try:
        m = rig.leave()
        watcher.clear()
        watcher.publish(f"{BASE}/cmd/delete", m, retain=True)
        assert no_answer(rig, watcher)
        assert rig.state_of(m) == "new"
    finally:
        rig.close()
    # The broker hands the retained command to every new subscriber: the next start.
    again = AppRig(tmp_path, broker.port)
    try:
        watcher.clear()
        assert no_answer(again, watcher)
        assert again.state_of(m) == "new"
    finally:
        watcher.publish(f"{BASE}/cmd/delete", "", retain=True)     # clear it
        again.close()


def test_commands_can_be_turned_off(broker, watcher, tmp_path):
    rig = AppRig(tmp_path, broker.port, mqtt_extra="commands = false")
    try:
        m = rig.leave()
        wait_until(lambda: watcher.of("homeassistant/device/office/config"), what="discovery")
        watcher.clear()
        watcher.publish(f"{BASE}/cmd/delete", m)
        assert no_answer(rig, watcher)
        assert rig.state_of(m) == "new"
        doc = json.loads(_discovery(watcher, broker))
        assert not [k for k, c in doc["cmps"].items() if c["p"] in ("button", "switch", "number")]
    finally:
        rig.close()


def _discovery(watcher, broker):
    late = Watcher(broker.port, topics=("homeassistant/#",))
    wait_until(lambda: late.of("homeassistant/device/office/config"), what="retained discovery")
    doc = late.last("homeassistant/device/office/config")
    late.close()
    return doc


def test_a_dead_reporter_is_a_fault_in_the_status_and_is_restarted(broker, watcher, tmp_path,
                                                                    monkeypatch):
    daemon = Daemon(app_config(tmp_path, broker.port))
    app = daemon.app
    app.start_reporting()
    app.open()
    app.run_reporting()
    try:
        reporter = app.reporter
        wait_until(lambda: reporter.connected, what="connected")
        assert reporter.dead() is None and daemon.healthy()
        reporter.client.loop_stop()           # paho's network thread gone, as a crash leaves it
        assert reporter.dead() == "the network thread ended"
        # A restart that keeps failing: unhealthy (no watchdog) after the grace period.
        calls = []

        def failing():
            calls.append(1)
            raise OSError("no route to host")
        monkeypatch.setattr(reporter, "restart", failing)
        monkeypatch.setattr("linebox.run.REPORTER_GRACE", 0.0)
        daemon.housekeeping()
        assert "fault: MQTT reporter stopped" in daemon.summary()
        assert not daemon.healthy()
        daemon.housekeeping()                 # not tried again at once (no log flood)
        assert calls == [1]
        monkeypatch.undo()
        daemon._next_reporter_try = 0.0       # the retry interval has passed
        daemon.housekeeping()                 # restarted for real this time
        assert reporter.dead() is None and daemon.healthy()
        assert "MQTT reporter restarted 1x" in daemon.summary()
        wait_until(lambda: reporter.connected, what="connected again")
        watcher.clear()
        m = leave_message(app)
        wait_until(lambda: any(e.get("message") == m for e in watcher.events()), what="event")
        assert send_command(app, watcher, "mark_heard", json.dumps({"message": m}))["result"] == 1
    finally:
        app.close()


# ---------------------------------------------------------------- Home Assistant

def test_discovery_is_published_and_republished_when_home_assistant_comes_online(rig, watcher):
    topic = "homeassistant/device/office/config"
    wait_until(lambda: watcher.of(topic), what="discovery")
    doc = json.loads(watcher.last(topic))
    assert doc["dev"]["ids"] == ["linebox_office"] and doc["dev"]["name"] == "Office line box"
    assert doc["o"]["name"] == "linebox"
    assert doc["availability_topic"] == f"{BASE}/status"
    assert sorted(doc["cmps"]) == sorted(
        [f"box_{b}_{k}" for b in ("100", "101")
         for k in ("new", "saved", "waiting", "full", "last_message", "mark_heard")]
        + [f"line_{n}_{k}" for n in (1, 2)
           for k in ("state", "caller", "missed_calls", "fault", "answering", "rings")]
        + ["events"])
    assert doc["cmps"]["box_100_new"] == {
        "p": "sensor", "name": "Main office new messages",
        "unique_id": "linebox_office_box_100_new",
        "default_entity_id": "sensor.linebox_office_box_100_new",
        "object_id": "linebox_office_box_100_new",
        "state_topic": f"{BASE}/box/100/state", "value_template": "{{ value_json.new }}",
        "state_class": "measurement", "icon": "mdi:voicemail"}
    assert doc["cmps"]["box_100_saved"]["name"] == "Main office old messages (heard or saved)"
    button = doc["cmps"]["box_101_mark_heard"]
    assert (button["p"], button["command_topic"], json.loads(button["payload_press"])) == (
        "button", f"{BASE}/cmd/mark_heard", {"box": "101"})
    switch = doc["cmps"]["line_2_answering"]
    assert json.loads(switch["payload_off"]) == {"line": 2, "on": False}
    assert switch["entity_category"] == "config"
    assert doc["cmps"]["line_2_rings"]["entity_category"] == "config"
    assert doc["cmps"]["box_100_full"]["device_class"] == "problem"
    assert doc["cmps"]["line_1_fault"]["device_class"] == "problem"
    assert doc["cmps"]["line_1_missed_calls"]["state_class"] == "total_increasing"
    assert doc["cmps"]["events"]["event_types"] == [
        "call", "missed_call", "message_saved", "message_heard", "message_deleted",
        "message_retracted", "login_failed", "line_fault", "box_locked"]
    assert doc["cmps"]["line_1_state"]["options"] == [
        "idle", "ringing", "answered", "recording", "playing", "fault"]
    assert all(c["object_id"] == c["unique_id"] for c in doc["cmps"].values())

    watcher.clear()
    watcher.publish("homeassistant/status", "online")
    wait_until(lambda: watcher.of(topic), what="discovery again")
    assert json.loads(watcher.last(topic)) == doc


def test_the_button_payload_of_discovery_is_a_valid_command(app_rig, watcher):
    topic = "homeassistant/device/office/config"
    wait_until(lambda: watcher.of(topic), what="discovery")
    doc = json.loads(watcher.last(topic))
    m = app_rig.leave()
    press = doc["cmps"]["box_100_mark_heard"]["payload_press"]
    assert send_command(app_rig, watcher, "mark_heard", press)["result"] == 1
    off = doc["cmps"]["line_1_answering"]["payload_off"]
    assert send_command(app_rig, watcher, "answering", off)["ok"] is True
    rings = doc["cmps"]["line_1_rings"]["command_template"].replace("{{ value | int }}", "7")
    assert send_command(app_rig, watcher, "rings", rings)["ok"] is True
    assert app_rig.state_of(m) == "heard"
    assert app_rig.app.line_settings()[1] == {"answering": False, "rings": 7, "min_rings": 3}


def test_the_caller_is_shown_while_the_line_still_rings(rig, watcher):
    topic = f"{BASE}/line/1/caller"
    wait_until(lambda: watcher.last(topic) is not None, what="the caller topic")
    assert json.loads(watcher.last(topic))["display"] == "none"
    rig.bus.publish({"event": "ring", "line": 1, "n": 1})
    wait_until(lambda: json.loads(watcher.last(topic))["display"] == "unknown", what="ringing")
    rig.bus.publish({"event": "callerid", "line": 1, "number": "5551234567", "name": "JOHN DOE",
                     "number_absent": None, "name_absent": None})
    wait_until(lambda: json.loads(watcher.last(topic))["display"] == "5551234567 JOHN DOE",
               what="the caller, before any answer")
    shown = json.loads(watcher.last(topic))
    assert shown["number"] == "5551234567" and ISO.match(shown["time"])
    rig.bus.publish({"event": "line_state", "line": 1, "state": "answered"})
    rig.bus.publish({"event": "line_state", "line": 1, "state": "idle"})
    wait_until(lambda: json.loads(watcher.last(topic))["display"] == "none", what="cleared")
    rig.bus.publish({"event": "ring", "line": 2, "n": 1})
    rig.bus.publish({"event": "callerid", "line": 2, "number": None, "name": None,
                     "number_absent": "P", "name_absent": "P"})
    wait_until(lambda: watcher.last(f"{BASE}/line/2/caller") is not None
               and json.loads(watcher.last(f"{BASE}/line/2/caller"))["display"] == "private")


def test_missed_calls_are_counted_across_restarts(broker, watcher, tmp_path):
    for expected in ("2", "4"):
        with Rig(broker.port, tmp_path / "outbox") as rig:
            rig.wait_connected()
            for ev in numbered(1, 3):
                rig.bus.publish(ev)
            wait_until(lambda n=expected: watcher.last(f"{BASE}/line/1/missed_calls") == n,
                       what=f"{expected} missed calls")
            assert rig.reporter.flush(WAIT)


def test_each_box_shows_its_last_message(app_rig, watcher):
    topic = f"{BASE}/box/100/last_message"
    wait_until(lambda: watcher.last(topic) is not None, what="last message")
    assert json.loads(watcher.last(topic))["message"] is None
    first = app_rig.leave()
    second = app_rig.leave(number="5559876543", name="JANE ROE", line=2)
    wait_until(lambda: json.loads(watcher.last(topic))["message"] == second, what="the newest")
    shown = json.loads(watcher.last(topic))
    assert shown == {"message": second, "caller_number": "5559876543", "caller_name": "JANE ROE",
                     "received": shown["received"], "seconds": 3.0, "line": 2, "transcript": None}
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", shown["received"])
    send_command(app_rig, watcher, "delete", second)
    wait_until(lambda: json.loads(watcher.last(topic))["message"] == first, what="the one before")
    app_rig.app.store.set_transcript(first, "please call me back", "test")
    wait_until(lambda: json.loads(watcher.last(topic))["transcript"] == "please call me back",
               what="the transcript as an attribute")


def test_an_extension_registration_is_a_retained_state_and_a_sensor(broker, watcher, tmp_path):
    with Rig(broker.port, tmp_path / "outbox", extensions=["201", "bad/one"]) as rig:
        rig.wait_connected()
        rig.bus.publish({"event": "extension_state", "extension": "201", "state": "registered"})
        rig.bus.publish({"event": "extension_state", "extension": "+/#", "state": "registered"})
        wait_until(lambda: watcher.last(f"{BASE}/extension/201/state") == "registered")
        doc = json.loads(_discovery(watcher, broker))
        ext = [k for k in doc["cmps"] if k.startswith("extension_")]
        assert ext == ["extension_201_registered"]
        sensor = doc["cmps"][ext[0]]
        assert sensor["p"] == "binary_sensor" and sensor["device_class"] == "connectivity"
        assert sensor["state_topic"] == f"{BASE}/extension/201/state"
        # Home Assistant renders value_template with Jinja, the payload as ``value``.
        jinja2 = pytest.importorskip("jinja2")
        template = jinja2.Environment().from_string(sensor["value_template"])
        assert template.render(value="registered") == "ON"
        assert template.render(value="unregistered") == "OFF"
        assert template.render(value="") == "OFF"
    assert not [t for t, _, _ in watcher.messages if "+" in t or "#" in t]


def test_the_device_names_its_portal_when_one_is_configured():
    from linebox.report.discovery import discovery_payload
    dev = DeviceConfig(id="office", name="Office")
    doc = discovery_payload(dev, BASE, {"100": "Main"}, [1],
                            configuration_url="http://linebox.local:8080/")
    assert doc["dev"]["cu"] == "http://linebox.local:8080/"
    assert "cu" not in discovery_payload(dev, BASE, {}, [1])["dev"]
    assert doc["dev"].get("hw")                     # the board model, or the machine type


# ---------------------------------------------------------------- TLS and a password

@pytest.fixture
def tls_broker(tmp_path):
    if not shutil.which("openssl") or not shutil.which("mosquitto_passwd"):
        pytest.skip("openssl and mosquitto_passwd are needed for the TLS test")
    d = tmp_path / "tls"
    d.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", d / "key.pem", "-out", d / "cert.pem", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    subprocess.run(["mosquitto_passwd", "-b", "-c", d / "passwd", "box", "s3cret-word"],
                   check=True, capture_output=True)
    b = Broker(d, extra=f"certfile {d}/cert.pem\nkeyfile {d}/key.pem\n"
                        f"password_file {d}/passwd\nallow_anonymous false").start()
    yield b, d / "cert.pem"
    b.stop()


def test_tls_with_a_ca_file_and_a_password(tls_broker, tmp_path, caplog):
    b, ca = tls_broker
    watcher = Watcher(b.port, tls_ca=ca, auth=("box", "s3cret-word"))
    try:
        with Rig(b.port, tmp_path / "outbox", tls=True, ca_file=ca, username="box",
                 password="s3cret-word") as rig:
            rig.bus.publish(numbered(1, 2)[0])
            assert rig.reporter.flush(WAIT)
            wait_until(lambda: watcher.events(), what="the event over TLS")
            assert watcher.last(f"{BASE}/status") == "online"
        with Rig(b.port, tmp_path / "outbox2", tls=True, ca_file=ca, username="box",
                 password="wrong-word"):
            wait_until(lambda: "refused the connection: Not authorized" in caplog.text,
                       what="the refusal in the log")
    finally:
        watcher.close()
    assert "s3cret-word" not in caplog.text and "wrong-word" not in caplog.text


# ---------------------------------------------------------------- the documented ACL

def _doc_block(first_line: str) -> str:
    text = (Path(__file__).resolve().parent.parent / "docs" / "mqtt-security.md").read_text()
    for block in re.findall(r"^```\w*\n(.*?)^```", text, re.S | re.M):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"no block starting {first_line!r} in docs/mqtt-security.md")


def test_the_documented_acl_keeps_commands_and_callers_to_their_users(tmp_path):
    if not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto_passwd is needed for the ACL test")
    d = tmp_path / "acl"
    d.mkdir()
    (d / "linebox.acl").write_text(_doc_block("# /etc/mosquitto/linebox.acl"))
    for i, user in enumerate(("linebox", "homeassistant", "dashboard")):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), d / "passwd",
                        user, f"pw-{user}"], check=True, capture_output=True)
    b = Broker(d, extra=f"password_file {d}/passwd\nacl_file {d}/linebox.acl\n"
                        "allow_anonymous false").start()
    ha = Watcher(b.port, auth=("homeassistant", "pw-homeassistant"))
    dash = Watcher(b.port, auth=("dashboard", "pw-dashboard"), topics=("linebox/#",))
    rig = AppRig(tmp_path, b.port, mqtt_extra='username = "linebox"\npassword = "pw-linebox"')
    try:
        m = rig.leave()
        wait_until(lambda: any(e.get("message") == m for e in ha.events()), what="HA's event")
        wait_until(lambda: dash.last(f"{BASE}/box/100/state") is not None, what="dash state")
        # The dashboard may not command, and its publish is dropped by the broker.
        dash.publish(f"{BASE}/cmd/delete", m)
        assert no_answer(rig, ha) and rig.state_of(m) == "new"
        assert send_command(rig, ha, "delete", m)["ok"] is True       # Home Assistant may
        assert rig.state_of(m) == "trash"
        seen = {t for t, _, _ in dash.messages}
        assert f"{BASE}/event" not in seen and f"{BASE}/line/1/caller" not in seen
        assert not any("/cmd/" in t or "last_message" in t for t in seen)
    finally:
        rig.close()
        ha.close()
        dash.close()
        b.stop()


# ---------------------------------------------------------------- what must not leak or get lost

def test_digits_that_are_not_a_box_are_never_published(rig, watcher):
    rig.bus.publish({"event": "login", "line": 1, "box": "4321", "ok": False})   # a PIN, early
    rig.bus.publish({"event": "login", "line": 1, "box": "100", "ok": False})
    assert rig.reporter.flush(WAIT)
    wait_until(lambda: len(watcher.events()) >= 2, what="two events")
    assert [e["box"] for e in watcher.events()] == [None, "100"]
    assert "4321" not in json.dumps(watcher.events())


def test_a_message_saved_while_nothing_reported_it_is_reported_at_the_next_start(
        broker, watcher, tmp_path):
    rig = AppRig(tmp_path, broker.port)
    before = rig.leave()                        # reported as it happens
    rig.close()
    # The store committed a message, then the process died before the outbox had it:
    # here the same data folder without a reporter.
    bare = Appliance(app_config(tmp_path, broker.port), Bus())
    bare.open()
    lost = leave_message(bare, number="5550001234")
    bare.close()
    watcher.clear()
    again = AppRig(tmp_path, broker.port)
    try:
        wait_until(lambda: any(e.get("message") == lost for e in watcher.events()),
                   what="the late message_saved")
        (late,) = [e for e in watcher.events() if e["type"] == "message_saved"]
        assert (late["message"], late["caller_number"], late["box"]) == (lost, "5550001234", "100")
        assert before != lost
    finally:
        again.close()


def test_the_first_start_on_a_folder_with_messages_does_not_replay_them(broker, watcher, tmp_path):
    bare = Appliance(app_config(tmp_path, broker.port), Bus())
    bare.open()
    leave_message(bare)
    bare.close()
    rig = AppRig(tmp_path, broker.port)
    try:
        assert rig.reporter.flush(WAIT)
        time.sleep(0.3)
        assert [e for e in watcher.events() if e["type"] == "message_saved"] == []
    finally:
        rig.close()


def test_a_pin_lockout_is_an_event_for_the_owner(rig, watcher):
    # As voicemail/logins.py publishes it at a box's first lock.
    rig.bus.publish({"event": "box_locked", "box": "100", "until": "2026-12-02T05:00:00+01:00",
                     "permanent": False, "first": True, "failures": 10, "source": "phone"})
    assert rig.reporter.flush(WAIT)
    wait_until(lambda: watcher.events(), what="the event")
    assert strip(watcher.events()) == [{"type": "box_locked", "box": "100",
                                        "until": "2026-12-02T05:00:00+01:00",
                                        "permanent": False, "failures": 10, "source": "phone"}]


def test_the_rings_number_starts_above_the_toll_saver(app_rig, watcher):
    wait_until(lambda: watcher.of("homeassistant/device/office/config"), what="discovery")
    doc = json.loads(watcher.last("homeassistant/device/office/config"))
    assert (doc["cmps"]["line_1_rings"]["min"], doc["cmps"]["line_2_rings"]["min"]) == (3, 1)


def test_a_message_saved_the_outbox_cannot_take_is_not_counted_as_reported(tmp_path):
    # Not queued, not noted: the store hears it was not taken, keeps it unannounced and
    # announces it again at the next start (tests/test_disk_and_folder.py, the mail twin).
    r = Rig(1, tmp_path / "outbox")                 # never started: no broker needed
    (tmp_path / "outbox").rmdir()
    (tmp_path / "outbox").write_bytes(b"")          # the outbox cannot be written
    saved = {"event": "message_saved", "box": "100", "id": "000007", "seconds": 8.4, "line": 1,
             "caller_number": "5551234567", "caller_name": None, "recovered": False}
    assert r.bus.publish(saved) is False
    assert r.reporter._saved_upto != "000007"
    (tmp_path / "outbox").unlink()
    (tmp_path / "outbox").mkdir()
    assert r.bus.publish(saved) is True
    assert r.reporter._saved_upto == "000007"
