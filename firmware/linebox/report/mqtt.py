"""MQTT reporting (contract §7): retained states, durable events, commands, Home Assistant
discovery.

Topics, under ``<base> = <base_topic>/<device id>``:

- ``<base>/status`` retained: ``online`` on every connect, ``offline`` from the broker's
  will when the appliance vanishes and from ``stop()`` when it shuts down cleanly.
- ``<base>/line/<id>/state`` retained: idle, ringing, answered, recording, playing, fault.
  ``<base>/line/<id>/answering`` (``ON``/``OFF``) and ``<base>/line/<id>/rings`` retained:
  the settings the commands change (for the Home Assistant switch and number).
- ``<base>/box/<number>/state`` retained: JSON ``{"new", "saved", "total", "full", "name"}``.
  All retained states are republished on every (re)connect from the state source.
- ``<base>/event`` QoS 1: one JSON object per event, ``{"id", "time", "type", ...}``.

Events, from bus events:

============================  ====================  =====================================
bus event                     type                  fields
============================  ====================  =====================================
answer                        call                  line, caller_number, caller_name, rings
missed_call                   missed_call           line, caller_number, caller_name, rings
message_saved                 message_saved         box, message, line, caller_number,
                                                    caller_name, seconds (recovered if so)
message_state heard           message_heard         box, message
message_state trash           message_deleted       box, message
message_retracted             message_retracted     box, message
login with ok false           login_failed          line, box, reason
line_fault                    line_fault            line, reason
============================  ====================  =====================================

``message_deleted`` is sent when a message goes to the trash (deleted by phone or by
command; retention of heard messages too): that is when it disappears for its owner.
Purging the trash later (``message_state deleted``) is housekeeping and sends nothing,
so one message never yields two ``message_deleted`` events.

Durability: an event goes to the :class:`~linebox.report.outbox.Outbox` first and is
deleted from it only when the broker acknowledged it (PUBACK). A sender thread publishes
the outbox in order with at most ``window`` events in flight; after a reconnect the
events that were in flight are resent (by paho, in order) and acknowledged before any
newer one is sent; after a restart the outbox is replayed first. Delivery is at least
once: an event in flight when the process dies is sent again, with the same ``id``.

Commands, on ``<base>/cmd/<action>``, answered on ``<base>/cmd/result`` with
``{"ok": bool, "error": str|null, "action": ..., "request_id": ...}`` (``request_id``
echoed when the command had one). A payload is a JSON object, or for the actions that
have a main key, that key's value as plain text (``cmd/delete`` ``000012``):

================  =================================================  ==========
action            JSON payload                                       plain text
================  =================================================  ==========
mark_heard        ``{"box": "100"}`` (every new message) or
                  ``{"message": "000012"}``                          box
delete            ``{"message": "000012"}`` (to the trash)           message
undelete          ``{"box": "100"}`` (the box's last deleted)        box
answering         ``{"line": 1, "on": true}``                        —
rings             ``{"line": 1, "rings": 3}`` (1 to 20)              —
led_test          ``{"pattern": "blink"}`` (off, on, blink, fast;
                  ``null`` ends the test)                            pattern
reload            ``{}`` or empty (re-read the configuration)        —
================  =================================================  ==========

Box numbers and message ids are strings; lines and rings are integers; unknown keys,
unknown boxes or lines and wrong types are refused with ``ok: false`` and a reason, and
nothing is called. Any object may carry ``"request_id"`` (string or integer).

Threads: paho's network thread runs the callbacks; the sender thread publishes; bus
events (``handle``) come from the firmware's loop. Checked commands are queued and run
by :meth:`MqttReporter.process_commands`, which the firmware's loop calls, so the
command target (the Appliance) is only ever touched from that loop. No lock of this
module is held while calling paho (paho calls ``on_publish`` holding its own lock).
"""

import json
import logging
import queue
import ssl
import threading
import time
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as paho

from linebox.config import DeviceConfig, MqttConfig
from linebox.errors import LineboxError
from linebox.events import Bus
from linebox.report.discovery import (
    MAX_RINGS,
    MIN_RINGS,
    STATUS_TOPIC,
    discovery_payload,
    discovery_topic,
)
from linebox.report.outbox import Outbox, OutboxError, iso_time

log = logging.getLogger("linebox.mqtt")

RECONNECT_MIN, RECONNECT_MAX = 1, 60        # seconds, doubling in between (paho)
WINDOW = 10                                  # events in flight at once
LED_PATTERNS = ("off", "on", "blink", "fast")
BOX_FIELDS = ("new", "saved", "total", "full", "name")


class StateSource(Protocol):
    """What the retained topics show; read on every (re)connect and after commands."""

    def line_states(self) -> dict[int, str]: ...            # line id -> idle|ringing|...
    def box_counts(self) -> dict[str, dict]: ...            # box -> store.counts(box)
    def line_settings(self) -> dict[int, dict]: ...         # line id -> {"answering", "rings"}


class CommandTarget(Protocol):
    """What the commands do; called only from process_commands(). A LineboxError,
    KeyError or ValueError raised here is answered as ``ok: false`` with its text."""

    def mark_heard(self, box: str | None = None, message: str | None = None) -> Any: ...
    def delete(self, message: str) -> Any: ...
    def undelete(self, box: str) -> Any: ...
    def set_answering(self, line: int, on: bool) -> Any: ...
    def set_rings(self, line: int, rings: int) -> Any: ...
    def led_test(self, pattern: str | None) -> Any: ...
    def reload(self) -> Any: ...


class CommandError(ValueError):
    """A command payload that cannot be carried out; the text says why."""


@dataclass
class Command:
    action: str
    args: dict
    request_id: str | int | None


# ---------------------------------------------------------------- command checking

# action -> (allowed keys, key a plain-text payload stands for)
ACTIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "mark_heard": (("box", "message"), "box"),
    "delete": (("message",), "message"),
    "undelete": (("box",), "box"),
    "answering": (("line", "on"), None),
    "rings": (("line", "rings"), None),
    "led_test": (("pattern",), "pattern"),
    "reload": ((), None),
}


def parse_command(action: str, payload: bytes, boxes, lines) -> Command:
    """Check one command against the known ``boxes`` (numbers) and ``lines`` (ids).
    Raises CommandError with the reason; the request_id is kept on it when readable."""
    if action not in ACTIONS:
        raise CommandError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
    keys, plain = ACTIONS[action]
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError("payload is not UTF-8 text") from None
    if text[:1] in ("{", "["):
        try:
            args = json.loads(text)
        except json.JSONDecodeError as e:
            raise CommandError(f"bad JSON: {e.msg} at character {e.pos}") from None
        if not isinstance(args, dict):
            raise CommandError(f"payload must be a JSON object like {_example(action)}")
    elif text and plain is not None:
        args = {plain: text}
    elif not text and action == "reload":
        args = {}
    else:
        raise CommandError(f"payload must be a JSON object like {_example(action)}")
    request_id = args.pop("request_id", None)
    err = CommandError()
    err.request_id = request_id
    if request_id is not None and (isinstance(request_id, bool)
                                   or not isinstance(request_id, str | int)):
        err.request_id = None
        raise _fail(err, "request_id must be a string or an integer")
    for key in args:
        if key not in keys:
            expected = f"expected {' or '.join(keys)}" if keys else "expected none"
            raise _fail(err, f"unknown key {key!r} ({expected})")
    try:
        _check_args(action, args, set(boxes), set(lines))
    except CommandError as e:
        raise _fail(err, str(e)) from None
    return Command(action, args, request_id)


def _fail(err: CommandError, message: str) -> CommandError:
    err.args = (message,)
    return err


def _example(action: str) -> str:
    return {"mark_heard": '{"box": "100"}', "delete": '{"message": "000012"}',
            "undelete": '{"box": "100"}', "answering": '{"line": 1, "on": true}',
            "rings": '{"line": 1, "rings": 3}', "led_test": '{"pattern": "blink"}',
            "reload": "{}"}[action]


def _check_args(action: str, args: dict, boxes: set, lines: set) -> None:
    def need(key):
        if key not in args:
            raise CommandError(f"missing {key!r} (like {_example(action)})")
        return args[key]

    if action == "mark_heard" and len(args) != 1:
        raise CommandError('give either "box" or "message"')
    if "box" in args:
        box = args["box"]
        if not isinstance(box, str):
            raise CommandError('box must be a string like "100"')
        if box not in boxes:
            raise CommandError(f"no box {box!r}")
    if "message" in args:
        message = args["message"]
        if not isinstance(message, str) or not message.isdigit():
            raise CommandError('message must be a message id string like "000012"')
    if action in ("delete",):
        need("message")
    if action == "undelete":
        need("box")
    if action in ("answering", "rings"):
        line = need("line")
        if not isinstance(line, int) or isinstance(line, bool):
            raise CommandError("line must be an integer")
        if line not in lines:
            raise CommandError(f"no line {line}")
    if action == "answering" and not isinstance(need("on"), bool):
        raise CommandError("on must be true or false")
    if action == "rings":
        rings = need("rings")
        if (not isinstance(rings, int) or isinstance(rings, bool)
                or not MIN_RINGS <= rings <= MAX_RINGS):
            raise CommandError(f"rings must be an integer from {MIN_RINGS} to {MAX_RINGS}")
    if action == "led_test":
        pattern = need("pattern")
        if pattern is not None and pattern not in LED_PATTERNS:
            raise CommandError(f"pattern must be one of {', '.join(LED_PATTERNS)} or null")


# ---------------------------------------------------------------- events

def report_for(ev: dict, callerid: dict | None) -> dict | None:
    """The MQTT event for a bus event, or None. ``callerid`` is what was heard on the
    event's line during this ring cycle."""
    kind = ev.get("event")
    cid = callerid or {}
    if kind == "answer":
        return {"type": "call", "line": ev.get("line"), "caller_number": cid.get("number"),
                "caller_name": cid.get("name"), "rings": ev.get("after_rings")}
    if kind == "missed_call":
        return {"type": "missed_call", "line": ev.get("line"),
                "caller_number": ev.get("caller_number"), "caller_name": ev.get("caller_name"),
                "rings": ev.get("rings")}
    if kind == "message_saved":
        out = {"type": "message_saved", "box": ev["box"], "message": ev["id"],
               "line": ev.get("line"), "caller_number": ev.get("caller_number"),
               "caller_name": ev.get("caller_name"), "seconds": ev.get("seconds")}
        if ev.get("recovered"):
            out["recovered"] = True
        return out
    if kind == "message_state" and ev.get("state") in ("heard", "trash"):
        kind = "message_heard" if ev["state"] == "heard" else "message_deleted"
        return {"type": kind, "box": ev["box"], "message": ev["id"]}
    if kind == "message_retracted":
        return {"type": "message_retracted", "box": ev["box"], "message": ev["id"]}
    if kind == "login" and ev.get("ok") is False:
        return {"type": "login_failed", "line": ev.get("line"), "box": ev.get("box"),
                "reason": ev.get("reason") or "wrong_pin"}
    if kind == "line_fault":
        return {"type": "line_fault", "line": ev.get("line"), "reason": ev.get("reason")}
    return None


# ---------------------------------------------------------------- the reporter


class MqttReporter:
    """Publishes the appliance's states and events to MQTT and takes commands.

    ``handle`` is subscribed to the bus at construction. ``start()`` connects in the
    background (and keeps reconnecting, 1 s to 60 s apart); ``stop()`` publishes
    ``offline`` and disconnects; ``flush(timeout)`` waits until every queued event is
    acknowledged; ``process_commands()`` runs the checked commands (call it from the
    firmware's loop).
    """

    def __init__(self, config: MqttConfig, device: DeviceConfig, bus: Bus, outbox: Outbox,
                 state_source: StateSource, command_target: CommandTarget,
                 clock: Callable[[], float] = time.time, window: int = WINDOW) -> None:
        self.config = config
        self.device = device
        self.outbox = outbox
        self.state_source = state_source
        self.target = command_target
        self.clock = clock
        self.window = window
        self.tz = zoneinfo.ZoneInfo(device.timezone) if device.timezone else None
        self.base = f"{config.base_topic}/{device.id}"
        self.status_topic = f"{self.base}/status"
        self.event_topic = f"{self.base}/event"
        self.cmd_prefix = f"{self.base}/cmd/"
        self.commands: queue.Queue[Command] = queue.Queue()
        self._callerid: dict[int, dict | None] = {}
        self._cond = threading.Condition()
        # all below under _cond
        self._connected = False
        self._refresh = False              # a connect happened: re-read the state source
        self._discovery_due = False
        self._hold_new = False             # events from before a reconnect not yet acked
        self._stopping = False
        self._states: dict[str, str] = {}  # retained topic -> payload
        self._versions: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._inflight: dict[int, str] = {}   # mid -> event id, in send order
        self._acked: list[int] = []
        self._boxes: dict[str, str] = {}      # number -> name (for commands, discovery)
        self._lines: list[int] = []
        self._thread: threading.Thread | None = None
        self._warned_down = False
        self.client = self._make_client()
        bus.subscribe(self.handle)

    def _make_client(self) -> paho.Client:
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"linebox-{self.device.id}",
                        clean_session=True, protocol=paho.MQTTv311)
        c.will_set(self.status_topic, "offline", qos=1, retain=True)
        c.reconnect_delay_set(RECONNECT_MIN, RECONNECT_MAX)
        if self.config.username is not None:
            c.username_pw_set(self.config.username, self.config.password)
        if self.config.tls:
            ca = str(self.config.ca_file) if self.config.ca_file else None
            try:
                c.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError) as e:
                raise LineboxError(f"mqtt: TLS set-up with ca_file {ca}: {e}") from None
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Read the state source, then connect in the background."""
        self._read_state_source()
        self._thread = threading.Thread(target=self._send_loop, name="linebox-mqtt", daemon=True)
        self._thread.start()
        log.info("MQTT: connecting to %s:%d as %s (base topic %s)", self.config.host,
                 self.config.port, f"linebox-{self.device.id}", self.base)
        self.client.connect_async(self.config.host, self.config.port, self.config.keepalive)
        self.client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """A clean stop: ``offline`` (retained), then disconnect. Undelivered events stay
        in the outbox for the next start."""
        with self._cond:
            self._stopping = True
            connected = self._connected
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if connected:
            # The last states go out before `offline`, so a dashboard ends up right.
            self._publish_states()
            info = self.client.publish(self.status_topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until the broker acknowledged every queued
        event; True if none is left."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.outbox) or (self._connected and self._dirty):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
            return len(self.outbox) == 0

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    # ------------------------------------------------------------ bus events (loop)

    def handle(self, ev: dict) -> None:
        """A bus event: update a retained state, or queue an MQTT event."""
        kind = ev.get("event")
        line = ev.get("line")
        if kind == "_line_state":
            self._set_state(f"{self.base}/line/{line}/state", ev["state"])
        elif kind == "box_changed":
            counts = {k: ev["counts"].get(k) for k in BOX_FIELDS}
            self._set_state(f"{self.base}/box/{ev['box']}/state", json.dumps(counts))
        elif kind == "ring" and ev.get("n") == 1:
            self._callerid[line] = None
        elif kind == "callerid":
            self._callerid[line] = ev
        elif kind == "extension_state":          # SIP phones (contract §9)
            self._set_state(f"{self.base}/extension/{ev['extension']}/state", ev["state"])
        elif kind == "sip_call":
            self.queue_event({"type": "call", "line": None, "extension": ev["extension"],
                              "caller_number": ev.get("caller_number"), "caller_name": ev.get("caller_name")})
        report = report_for(ev, self._callerid.get(line))
        if report is not None and "extension" in ev:
            report["extension"] = ev["extension"]
        if kind in ("missed_call", "onhook"):
            self._callerid.pop(line, None)
        if report is not None:
            self.queue_event(report)

    def queue_event(self, report: dict) -> None:
        """Put an event in the outbox (durably) and wake the sender."""
        report.setdefault("time", iso_time(self.clock(), self.tz))
        try:
            self.outbox.put(report)
        except OutboxError as e:
            log.error("%s: %s lost", e, report.get("type"))
            return
        with self._cond:
            self._cond.notify_all()

    # ------------------------------------------------------------ commands (loop)

    def process_commands(self) -> int:
        """Run the commands received since the last call; returns how many."""
        n = 0
        while True:
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                return n
            n += 1
            self._run(cmd)

    def _run(self, cmd: Command) -> None:
        a = cmd.args
        try:
            if cmd.action == "mark_heard":
                result = self.target.mark_heard(box=a.get("box"), message=a.get("message"))
            elif cmd.action == "delete":
                result = self.target.delete(a["message"])
            elif cmd.action == "undelete":
                result = self.target.undelete(a["box"])
            elif cmd.action == "answering":
                result = self.target.set_answering(a["line"], a["on"])
            elif cmd.action == "rings":
                result = self.target.set_rings(a["line"], a["rings"])
            elif cmd.action == "led_test":
                result = self.target.led_test(a["pattern"])
            else:
                result = self.target.reload()
        except (LineboxError, KeyError, ValueError) as e:
            text = e.args[0] if isinstance(e, KeyError) and e.args else e
            self._reply(cmd.action, cmd.request_id, str(text))
            return
        except Exception as e:            # a bug: answer, keep running, leave a trace
            log.exception("MQTT command %s failed", cmd.action)
            self._reply(cmd.action, cmd.request_id, f"internal error: {type(e).__name__}")
            return
        log.info("MQTT command %s %s: done", cmd.action, json.dumps(a))
        if cmd.action in ("answering", "rings", "reload"):
            self._read_state_source()
            with self._cond:
                self._discovery_due = cmd.action == "reload" and self.config.discovery
                self._cond.notify_all()
        self._reply(cmd.action, cmd.request_id, None, result)

    def _reply(self, action: str, request_id, error: str | None, result=None) -> None:
        out = {"ok": error is None, "error": error, "action": action, "request_id": request_id}
        if result is not None and isinstance(result, str | int | float | bool | list | dict):
            out["result"] = result
        if error is not None:
            log.warning("MQTT command %s refused: %s", action, error)
        self.client.publish(f"{self.cmd_prefix}result", json.dumps(out), qos=1)

    # ------------------------------------------------------------ paho callbacks

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT: broker %s:%d refused the connection: %s", self.config.host,
                      self.config.port, reason_code)
            return
        log.info("MQTT: connected to %s:%d", self.config.host, self.config.port)
        subs = [(f"{self.cmd_prefix}+", 1)]
        if self.config.discovery:
            subs.append((STATUS_TOPIC, 1))
        client.subscribe(subs)
        client.publish(self.status_topic, "online", qos=1, retain=True)
        with self._cond:
            self._connected = True
            self._warned_down = False
            self._refresh = True
            self._discovery_due = self.config.discovery
            self._hold_new = bool(self._inflight)
            self._cond.notify_all()

    def _on_connect_fail(self, client, userdata) -> None:
        self._went_down("cannot connect")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._cond:
            self._connected = False
            stopping = self._stopping
        if not stopping:
            self._went_down(str(reason_code))

    def _went_down(self, why: str) -> None:
        with self._cond:
            warned, self._warned_down = self._warned_down, True
        if not warned:
            log.warning("MQTT: broker %s:%d: %s; retrying (events are kept)",
                        self.config.host, self.config.port, why)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cond:
            self._acked.append(mid)
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == STATUS_TOPIC:
            if msg.payload.strip() == b"online":
                with self._cond:
                    self._discovery_due = self.config.discovery
                    self._cond.notify_all()
            return
        if not msg.topic.startswith(self.cmd_prefix):
            return
        action = msg.topic[len(self.cmd_prefix):]
        if action == "result":
            return
        with self._cond:
            boxes, lines = list(self._boxes), list(self._lines)
        try:
            cmd = parse_command(action, msg.payload, boxes, lines)
        except CommandError as e:
            self._reply(action, getattr(e, "request_id", None), str(e))
            return
        self.commands.put(cmd)

    # ------------------------------------------------------------ states

    def _set_state(self, topic: str, payload: str) -> None:
        with self._cond:
            self._states[topic] = payload
            self._versions[topic] = self._versions.get(topic, 0) + 1
            self._dirty.add(topic)
            self._cond.notify_all()

    def _read_state_source(self) -> None:
        """Every retained state from the source, except topics an event changed while
        it was being read (the event is newer)."""
        with self._cond:
            before = dict(self._versions)
        src = self.state_source
        boxes = src.box_counts()
        lines = src.line_states()
        settings = src.line_settings()
        fresh = {}
        for number, counts in boxes.items():
            fresh[f"{self.base}/box/{number}/state"] = json.dumps(
                {k: counts.get(k) for k in BOX_FIELDS})
        for line, state in lines.items():
            fresh[f"{self.base}/line/{line}/state"] = state
        for line, s in settings.items():
            fresh[f"{self.base}/line/{line}/answering"] = "ON" if s["answering"] else "OFF"
            fresh[f"{self.base}/line/{line}/rings"] = str(s["rings"])
        with self._cond:
            for topic, payload in fresh.items():
                if self._versions.get(topic, 0) == before.get(topic, 0):
                    self._states[topic] = payload
                self._dirty.add(topic)
            self._boxes = {n: str(c.get("name") or n) for n, c in boxes.items()}
            self._lines = sorted(lines)
            self._cond.notify_all()

    # ------------------------------------------------------------ the sender thread

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._work():
                    self._cond.wait(1.0)
                stopping = self._stopping
                done = [self._inflight.pop(m) for m in self._acked if m in self._inflight]
                self._acked.clear()
                if not self._inflight:
                    self._hold_new = False
                refresh, self._refresh = self._refresh, False
                discovery = self._discovery_due and self._connected
                if discovery:
                    self._discovery_due = False
            try:
                for event_id in done:
                    self.outbox.ack(event_id)
                if done:
                    with self._cond:
                        self._cond.notify_all()       # flush() waiters
                if stopping:
                    return
                if refresh:
                    self._read_state_source()
                if discovery:
                    self._publish_discovery()
                self._publish_states()
                self._publish_events()
            except Exception:                     # keep the sender alive whatever happens
                log.exception("MQTT sender")
                time.sleep(1.0)

    def _work(self) -> bool:
        if self._acked:
            return True
        if not self._connected:
            return False
        return bool(self._refresh or self._discovery_due or self._dirty or self._can_send())

    def _can_send(self) -> bool:
        return (not self._hold_new and len(self._inflight) < self.window
                and len(self.outbox) > len(self._inflight))

    def _publish_states(self) -> None:
        with self._cond:
            if not self._connected:
                return
            todo = [(t, self._states[t]) for t in sorted(self._dirty) if t in self._states]
            self._dirty.clear()
        for topic, payload in todo:
            self.client.publish(topic, payload, qos=1, retain=True)

    def _publish_discovery(self) -> None:
        with self._cond:
            boxes, lines = dict(self._boxes), list(self._lines)
        doc = discovery_payload(self.device, self.base, boxes, lines)
        self.client.publish(discovery_topic(self.device), json.dumps(doc), qos=1, retain=True)
        log.info("MQTT: Home Assistant discovery published (%d entities)", len(doc["cmps"]))

    def _publish_events(self) -> None:
        while True:
            with self._cond:
                if not self._connected or not self._can_send():
                    return
                flying = set(self._inflight.values())
                limit = len(self._inflight) + 1
            nxt = next((e for e in self.outbox.pending(limit) if e["id"] not in flying), None)
            if nxt is None:
                return
            info = self.client.publish(self.event_topic, json.dumps(nxt, ensure_ascii=False),
                                       qos=1)
            if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
                log.warning("MQTT: event %s not accepted by the client (%s): retrying",
                            nxt["id"], paho.error_string(info.rc))
                return
            with self._cond:
                # An ack that came before this line is still in _acked: matched next round.
                self._inflight[info.mid] = nxt["id"]
