"""MQTT reporting against a real mosquitto started by each test on a free port: status
and will, retained states, durable ordered events across broker and process restarts,
commands, Home Assistant discovery, TLS with a password."""

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

from linebox.config import DeviceConfig, MqttConfig
from linebox.errors import LineboxError
from linebox.events import Bus
from linebox.report.mqtt import MqttReporter
from linebox.report.outbox import Outbox

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


class FakeTarget:
    """Records calls; behaves like the Appliance for the settings it changes."""

    def __init__(self, state):
        self.state = state
        self.calls = []

    def mark_heard(self, box=None, message=None):
        self.calls.append(("mark_heard", box, message))

    def delete(self, message):
        self.calls.append(("delete", message))
        if message == "000099":
            raise LineboxError("no message 000099")

    def undelete(self, box):
        self.calls.append(("undelete", box))

    def set_answering(self, line, on):
        self.calls.append(("set_answering", line, on))
        self.state.settings[line]["answering"] = on

    def set_rings(self, line, rings):
        self.calls.append(("set_rings", line, rings))
        self.state.settings[line]["rings"] = rings

    def led_test(self, pattern):
        self.calls.append(("led_test", pattern))

    def reload(self):
        self.calls.append(("reload",))


class Rig:
    """A reporter with its bus, outbox, fake state and target."""

    def __init__(self, port, folder, **mqtt):
        self.bus = Bus()
        self.state = FakeState()
        self.target = FakeTarget(self.state)
        self.outbox = Outbox(folder)
        cfg = MqttConfig(host="127.0.0.1", port=port, **mqtt)
        self.reporter = MqttReporter(cfg, DeviceConfig(id="office", name="Office line box",
                                                       timezone="Europe/Berlin"),
                                     self.bus, self.outbox, self.state, self.target,
                                     clock=lambda: 1_700_000_000.0)

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
    {"event": "answer", "line": 1, "after_rings": 2},
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
        late = Watcher(broker.port, topics=(f"{BASE}/line/#", f"{BASE}/box/#"))
        wait_until(lambda: late.last(f"{BASE}/box/101/state") is not None, what="retained box")
        assert json.loads(late.last(f"{BASE}/box/100/state")) == {
            "new": 2, "saved": 1, "total": 3, "full": False, "name": "Main office"}
        assert late.last(f"{BASE}/line/1/state") == "idle"
        assert late.last(f"{BASE}/line/2/state") == "ringing"
        assert late.last(f"{BASE}/line/1/answering") == "ON"
        assert late.last(f"{BASE}/line/2/answering") == "OFF"
        assert late.last(f"{BASE}/line/2/rings") == "6"
        assert all(retained for _, _, retained in late.messages)
        late.close()


def test_bus_events_update_the_retained_states(broker, watcher, tmp_path):
    with Rig(broker.port, tmp_path / "outbox") as rig:
        rig.wait_connected()
        wait_until(lambda: watcher.last(f"{BASE}/line/1/state") == "idle", what="first state")
        rig.bus.publish({"event": "_line_state", "line": 1, "state": "ringing"})
        rig.bus.publish({"event": "_line_state", "line": 1, "state": "answered"})
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

def send_command(rig, watcher, action, payload):
    """Publish a command and return the one answer, running the loop's command step."""
    watcher.clear()
    watcher.publish(f"{BASE}/cmd/{action}", payload)
    result = f"{BASE}/cmd/result"
    deadline = time.monotonic() + WAIT
    while not watcher.of(result):
        rig.reporter.process_commands()
        assert time.monotonic() < deadline, "no answer on cmd/result"
        time.sleep(0.01)
    rig.reporter.process_commands()
    (answer,) = watcher.of(result)
    return json.loads(answer)


@pytest.fixture
def rig(broker, tmp_path):
    with Rig(broker.port, tmp_path / "outbox") as rig:
        rig.wait_connected()
        yield rig


VALID = [
    ("mark_heard", '{"box": "100"}', ("mark_heard", "100", None), None),
    ("mark_heard", '{"message": "000012", "request_id": "r1"}', ("mark_heard", None, "000012"), "r1"),
    ("mark_heard", "101", ("mark_heard", "101", None), None),
    ("delete", '{"message": "000012", "request_id": 5}', ("delete", "000012"), 5),
    ("delete", "000012", ("delete", "000012"), None),
    ("undelete", '{"box": "101"}', ("undelete", "101"), None),
    ("answering", '{"line": 1, "on": false}', ("set_answering", 1, False), None),
    ("rings", '{"line": 2, "rings": 20}', ("set_rings", 2, 20), None),
    ("led_test", '{"pattern": "blink"}', ("led_test", "blink"), None),
    ("led_test", '{"pattern": null}', ("led_test", None), None),
    ("reload", "", ("reload",), None),
]


@pytest.mark.parametrize("action,payload,call,request_id", VALID,
                         ids=[f"{a}:{p}" for a, p, _, _ in VALID])
def test_a_valid_command_calls_the_target_and_answers_ok(rig, watcher, action, payload, call,
                                                         request_id):
    answer = send_command(rig, watcher, action, payload)
    assert answer == {"ok": True, "error": None, "action": action, "request_id": request_id}
    assert rig.target.calls == [call]


def test_answering_and_rings_commands_update_their_retained_states(rig, watcher):
    send_command(rig, watcher, "answering", '{"line": 1, "on": false}')
    wait_until(lambda: watcher.last(f"{BASE}/line/1/answering") == "OFF", what="OFF")
    send_command(rig, watcher, "rings", '{"line": 1, "rings": 2}')
    wait_until(lambda: watcher.last(f"{BASE}/line/1/rings") == "2", what="rings 2")


def test_a_command_the_target_refuses_answers_its_reason(rig, watcher):
    answer = send_command(rig, watcher, "delete", '{"message": "000099"}')
    assert answer == {"ok": False, "error": "no message 000099", "action": "delete",
                      "request_id": None}


INVALID = [
    ("mark_heard", '{"box": ', "bad JSON: Expecting value at character 7", None),
    ("mark_heard", '{"box": "999", "request_id": 7}', "no box '999'", 7),
    ("mark_heard", '{"box": 100}', 'box must be a string like "100"', None),
    ("mark_heard", '{"box": "100", "message": "000001"}', 'give either "box" or "message"', None),
    ("mark_heard", "[1, 2]", 'payload must be a JSON object like {"box": "100"}', None),
    ("delete", '{"msg": "000001"}', "unknown key 'msg' (expected message)", None),
    ("delete", '{"message": 12}', 'message must be a message id string like "000012"', None),
    ("undelete", "{}", """missing 'box' (like {"box": "100"})""", None),
    ("rings", '{"line": 1, "rings": 0}', "rings must be an integer from 1 to 20", None),
    ("rings", '{"line": 1, "rings": 21}', "rings must be an integer from 1 to 20", None),
    ("rings", '{"line": 1, "rings": "3"}', "rings must be an integer from 1 to 20", None),
    ("answering", '{"line": "1", "on": true}', "line must be an integer", None),
    ("answering", '{"line": 9, "on": true}', "no line 9", None),
    ("answering", '{"line": 1, "on": "yes"}', "on must be true or false", None),
    ("answering", "ON", 'payload must be a JSON object like {"line": 1, "on": true}', None),
    ("led_test", '{"pattern": "disco"}', "pattern must be one of off, on, blink, fast or null", None),
    ("mark_heard", '{"box": "100", "request_id": [1]}', "request_id must be a string or an integer", None),
    ("frobnicate", "{}", "unknown action 'frobnicate' (known: mark_heard, delete, undelete, "
                         "answering, rings, led_test, reload)", None),
]


@pytest.mark.parametrize("action,payload,error,request_id", INVALID,
                         ids=[f"{a}:{p}" for a, p, _, _ in INVALID])
def test_an_invalid_command_answers_its_reason_and_calls_nothing(rig, watcher, action, payload,
                                                                 error, request_id):
    answer = send_command(rig, watcher, action, payload)
    assert answer == {"ok": False, "error": error, "action": action, "request_id": request_id}
    assert rig.target.calls == []


# ---------------------------------------------------------------- Home Assistant

def test_discovery_is_published_and_republished_when_home_assistant_comes_online(rig, watcher):
    topic = "homeassistant/device/office/config"
    wait_until(lambda: watcher.of(topic), what="discovery")
    doc = json.loads(watcher.last(topic))
    assert doc["dev"]["ids"] == ["linebox_office"] and doc["dev"]["name"] == "Office line box"
    assert doc["o"]["name"] == "linebox"
    assert doc["availability_topic"] == f"{BASE}/status"
    assert sorted(doc["cmps"]) == sorted(
        [f"box_{b}_{k}" for b in ("100", "101") for k in ("new", "saved", "waiting", "mark_heard")]
        + [f"line_{n}_{k}" for n in (1, 2) for k in ("state", "answering", "rings")] + ["events"])
    assert doc["cmps"]["box_100_new"] == {
        "p": "sensor", "name": "Main office new messages",
        "unique_id": "linebox_office_box_100_new",
        "default_entity_id": "sensor.linebox_office_box_100_new",
        "state_topic": f"{BASE}/box/100/state", "value_template": "{{ value_json.new }}",
        "state_class": "measurement", "icon": "mdi:voicemail"}
    button = doc["cmps"]["box_101_mark_heard"]
    assert (button["p"], button["command_topic"], json.loads(button["payload_press"])) == (
        "button", f"{BASE}/cmd/mark_heard", {"box": "101"})
    switch = doc["cmps"]["line_2_answering"]
    assert json.loads(switch["payload_off"]) == {"line": 2, "on": False}
    assert doc["cmps"]["events"]["event_types"] == [
        "call", "missed_call", "message_saved", "message_heard", "message_deleted",
        "message_retracted", "login_failed", "line_fault"]
    assert doc["cmps"]["line_1_state"]["options"] == [
        "idle", "ringing", "answered", "recording", "playing", "fault"]

    watcher.clear()
    watcher.publish("homeassistant/status", "online")
    wait_until(lambda: watcher.of(topic), what="discovery again")
    assert json.loads(watcher.last(topic)) == doc


def test_the_button_payload_of_discovery_is_a_valid_command(rig, watcher):
    wait_until(lambda: watcher.of("homeassistant/device/office/config"), what="discovery")
    doc = json.loads(watcher.last("homeassistant/device/office/config"))
    press = doc["cmps"]["box_100_mark_heard"]["payload_press"]
    assert send_command(rig, watcher, "mark_heard", press)["ok"] is True
    on = doc["cmps"]["line_1_answering"]["payload_on"]
    assert send_command(rig, watcher, "answering", on)["ok"] is True
    assert rig.target.calls == [("mark_heard", "100", None), ("set_answering", 1, True)]


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
