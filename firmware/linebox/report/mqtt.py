"""MQTT reporting (contract §7): retained states, durable events, commands, Home Assistant
discovery.

Topics, under ``<base> = <base_topic>/<device id>``:

- ``<base>/status`` retained: ``online`` on every connect, ``offline`` from the broker's
  will when the appliance vanishes and from ``stop()`` when it shuts down cleanly.
- ``<base>/line/<id>/state`` retained: idle, ringing, answered, recording, playing, fault.
  ``<base>/line/<id>/answering`` (``ON``/``OFF``) and ``<base>/line/<id>/rings`` retained:
  the settings the commands change (for the Home Assistant switch and number).
- ``<base>/box/<number>/state`` retained: JSON ``{"new", "saved", "total", "full", "name"}``.
- ``<base>/line/<id>/caller`` retained: JSON ``{"display", "number", "name",
  "number_absent", "name_absent", "time"}``, the caller ID as soon as it is decoded while
  the line rings (``display`` ``none`` when no call is coming in), and
  ``<base>/line/<id>/missed_calls`` retained: missed calls counted since the data folder
  was made (kept in ``mqtt-counters.json`` beside the outbox).
- ``<base>/box/<number>/last_message`` retained: JSON ``{"message", "caller_number",
  "caller_name", "received", "seconds", "line", "transcript"}`` of the box's newest
  message not in the trash (all null when there is none; ``transcript`` once the
  transcription kept one, republished on ``message_transcribed``).
- ``<base>/extension/<n>/state`` retained: an IP phone's registration, from the
  ``extension_state`` bus event.
- ``<base>/trunk/state`` retained: in ``[sip] mode = "trunk"``, the registration at the
  PBX (``registering``, ``registered``, ``failed``, ``stopped``), from ``trunk_state``.
  All retained states are republished on every (re)connect from the state source.
- ``<base>/event`` QoS 1: one JSON object per event, ``{"id", "time", "type", ...}``.

Events, from bus events:

============================  ====================  =====================================
bus event                     type                  fields
============================  ====================  =====================================
answer (its caller fields)    call                  line, caller_number, caller_name, rings
bridged                       call_bridged          line, extension
missed_call                   missed_call           line, caller_number, caller_name, rings
message_saved                 message_saved         box, message, line, caller_number,
                                                    caller_name, seconds (recovered if so)
message_state heard           message_heard         box, message
message_state trash           message_deleted       box, message
message_retracted             message_retracted     box, message
login with ok false           login_failed          line, box (configured boxes only), reason
line_fault                    line_fault            line, reason
box_locked                    box_locked            box, until, permanent, failures, source
box_unlocked                  box_unlocked          box, by
disk_fault                    disk_fault            reason
disk_fault_cleared            disk_fault_cleared    (none)
message_transcribed           message_transcribed   box, message, line, transcript, engine
============================  ====================  =====================================

Every field comes from the bus event itself (the catalogue in :mod:`linebox.events`
says which), never from the order of earlier events. ``login_failed`` carries ``box``
only when it is a configured box: digits typed at the box-number prompt may be a PIN.

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
A kill between the store's commit and the outbox would lose a ``message_saved``: the
newest message queued is noted (``saved_upto`` in ``mqtt-counters.json``) and at start
the messages saved after it are reported (:meth:`MqttReporter.catch_up`).

Commands, on ``<base>/cmd/<action>``, answered on ``<base>/cmd/result`` with
``{"ok": bool, "error": str|null, "action": ..., "request_id": ...}`` (and ``result``
when the command has one): the table of :mod:`linebox.commands` (docs/commands.md) says
which actions there are and what they take. A payload is a JSON object, or for the actions
that have a main key, that key's value as plain text (``cmd/delete`` ``000012``).
Payloads over ``MAX_PAYLOAD`` bytes, retained messages (a command published once with
the retain flag would run again at every connect; MQTT 5's "retain as published" shows
the flag on live delivery too) and, with ``[mqtt] commands = false``, every command are
not carried out (nothing is subscribed then). Nothing a sender sends can stop the reporter: every
callback catches what it raises.

Threads: paho's network thread runs the callbacks; the sender thread publishes; bus
events (``handle``) come from the firmware's loop. Commands read from their payload are
queued and checked and run by :meth:`MqttReporter.process_commands`, which the firmware's
loop calls, so the appliance is only ever touched from that loop. :meth:`dead` says when
a thread died; the daemon then calls :meth:`restart`. No lock of this module is held
while calling paho (paho calls ``on_publish`` holding its own lock).
"""

import functools
import json
import logging
import queue
import re
import ssl
import threading
import time
import zoneinfo
from collections.abc import Callable
from typing import Protocol

import paho.mqtt.client as paho
from paho.mqtt.subscribeoptions import SubscribeOptions

from linebox import events as ev_
from linebox.commands import MAX_PAYLOAD, CommandError, parse_payload
from linebox.config import DeviceConfig, MqttConfig
from linebox.errors import LineboxError
from linebox.events import Bus
from linebox.fileio import write_file_atomic
from linebox.report.discovery import STATUS_TOPIC, discovery_payload, discovery_topic
from linebox.report.outbox import Outbox, OutboxError, iso_time

log = logging.getLogger(__name__)

RECONNECT_MIN, RECONNECT_MAX = 1, 60        # seconds, doubling in between (paho)
WINDOW = 10                                  # events in flight at once
BOX_FIELDS = ("new", "saved", "total", "full", "name")
LAST_FIELDS = ("caller_number", "caller_name", "received", "seconds", "line")
_TOPIC_LEVEL = re.compile(r"[A-Za-z0-9_.-]{1,32}")       # an extension number in a topic
COUNTERS_FILE = "mqtt-counters.json"


class StateSource(Protocol):
    """What the retained topics show; read on every (re)connect and after commands.
    ``last_messages`` (box -> the store's newest live record or None) is optional."""

    def line_states(self) -> dict[int, str]: ...            # line id -> idle|ringing|...
    def box_counts(self) -> dict[str, dict]: ...            # box -> store.counts(box)
    def line_settings(self) -> dict[int, dict]: ...         # line id -> {"answering", "rings"}


# (action, arguments) -> the reply of linebox.commands.dispatch
Dispatch = Callable[[str, dict], dict]


def _guarded(fn):
    """A paho callback that never raises: an exception escaping one kills paho's network
    thread, and with it all reporting (found with a payload of 1,000 ``[``)."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except Exception as e:              # noqa: BLE001 - the thread must live on
            log.error("MQTT: %s failed: %s: %s", fn.__name__, type(e).__name__, e,
                      exc_info=True)
    return wrapper


# ---------------------------------------------------------------- events

def report_for(ev: dict) -> dict | None:
    """The MQTT event for a bus event, or None. Every field comes from the event itself."""
    kind = ev.get("event")
    if kind == ev_.ANSWER:
        return {"type": "call", "line": ev.get("line"), "caller_number": ev.get("caller_number"),
                "caller_name": ev.get("caller_name"), "rings": ev.get("after_rings")}
    if kind == ev_.BRIDGED:
        return {"type": "call_bridged", "line": ev.get("line"), "extension": ev.get("extension")}
    if kind == ev_.MISSED_CALL:
        return {"type": "missed_call", "line": ev.get("line"),
                "caller_number": ev.get("caller_number"), "caller_name": ev.get("caller_name"),
                "rings": ev.get("rings")}
    if kind == ev_.MESSAGE_SAVED:
        out = {"type": "message_saved", "box": ev["box"], "message": ev["id"],
               "line": ev.get("line"), "caller_number": ev.get("caller_number"),
               "caller_name": ev.get("caller_name"), "seconds": ev.get("seconds")}
        if ev.get("recovered"):
            out["recovered"] = True
        return out
    if kind == ev_.MESSAGE_STATE and ev.get("state") in ("heard", "trash"):
        kind = "message_heard" if ev["state"] == "heard" else "message_deleted"
        return {"type": kind, "box": ev["box"], "message": ev["id"]}
    if kind == ev_.MESSAGE_RETRACTED:
        return {"type": "message_retracted", "box": ev["box"], "message": ev["id"]}
    if kind == ev_.LOGIN and ev.get("ok") is False:
        return {"type": "login_failed", "line": ev.get("line"), "box": ev.get("box"),
                "reason": ev.get("reason") or "wrong_pin"}
    if kind == ev_.LINE_FAULT:
        return {"type": "line_fault", "line": ev.get("line"), "reason": ev.get("reason")}
    if kind == ev_.BOX_LOCKED:
        return {"type": "box_locked", "box": ev.get("box"), "until": ev.get("until"),
                "permanent": bool(ev.get("permanent")), "failures": ev.get("failures"),
                "source": ev.get("source")}
    if kind == ev_.BOX_UNLOCKED:
        return {"type": "box_unlocked", "box": ev.get("box"), "by": ev.get("by")}
    if kind == ev_.DISK_FAULT:
        return {"type": "disk_fault", "reason": ev.get("reason")}
    if kind == ev_.DISK_FAULT_CLEARED:
        return {"type": "disk_fault_cleared"}
    if kind == ev_.MESSAGE_TRANSCRIBED:
        return {"type": "message_transcribed", "box": ev.get("box"), "message": ev.get("id"),
                "line": ev.get("line"), "transcript": ev.get("transcript"),
                "engine": ev.get("engine")}
    return None


def caller_display(cid: dict | None) -> str:
    """The "incoming caller" sensor's state: number and name, or why they are absent."""
    if cid is None:
        return "none"
    shown = " ".join(x for x in (cid.get("number"), cid.get("name")) if x)
    if shown:
        return shown[:120]
    absent = cid.get("number_absent") or cid.get("name_absent")
    return {"P": "private", "O": "out of area"}.get(absent, "unknown")


# ---------------------------------------------------------------- the reporter


class MqttReporter:
    """Publishes the appliance's states and events to MQTT and takes commands.

    ``handle`` is subscribed to the bus at construction. ``start()`` connects in the
    background (and keeps reconnecting, 1 s to 60 s apart); ``stop()`` publishes
    ``offline`` and disconnects; ``flush(timeout)`` waits until every queued event is
    acknowledged; ``process_commands()`` runs the received commands through ``commands``
    (call it from the firmware's loop; None: no commands); ``dead()`` and ``restart()``
    are the daemon's health check.
    """

    def __init__(self, config: MqttConfig, device: DeviceConfig, bus: Bus, outbox: Outbox,
                 state_source: StateSource, commands: Dispatch | None,
                 clock: Callable[[], float] = time.time, window: int = WINDOW, *,
                 configuration_url: str | None = None, extensions=()) -> None:
        self.config = config
        self.device = device
        self.outbox = outbox
        self.state_source = state_source
        self.dispatch = commands if getattr(config, "commands", True) else None
        self.clock = clock
        self.window = window
        self.configuration_url = configuration_url
        self.extensions = [str(e) for e in extensions if _TOPIC_LEVEL.fullmatch(str(e))]
        self.tz = zoneinfo.ZoneInfo(device.timezone) if device.timezone else None
        self.base = f"{config.base_topic}/{device.id}"
        self.status_topic = f"{self.base}/status"
        self.event_topic = f"{self.base}/event"
        self.cmd_prefix = f"{self.base}/cmd/"
        self.commands: queue.Queue[tuple[str, dict]] = queue.Queue()
        self.counters_file = outbox.folder.with_name(COUNTERS_FILE)
        self._missed = self._load_counters()          # line id -> missed calls (loop only)
        self._ringing: dict[int, dict | None] = {}    # line -> caller ID of this ring cycle
        self._cond = threading.Condition()
        # all below under _cond
        self._connected = False
        self._refresh = False              # a connect happened: re-read the state source
        self._discovery_due = False
        self._hold_new = False             # events from before a reconnect not yet acked
        self._stopping = False
        self._started = False
        self._states: dict[str, str] = {}  # retained topic -> payload
        self._versions: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._inflight: dict[int, str] = {}   # mid -> event id, in send order
        self._acked: list[int] = []
        self._boxes: dict[str, str] = {}      # number -> name (for discovery)
        self._lines: list[int] = []
        self._min_rings: dict[int, int] = {}  # line -> the fewest rings it takes
        self._thread: threading.Thread | None = None
        self._warned_down = False
        self.client = self._make_client()
        bus.subscribe(self.handle)

    def _make_client(self) -> paho.Client:
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"linebox-{self.device.id}",
                        protocol=paho.MQTTv5)
        # Second line of defence behind _guarded: paho logs what escapes a callback.
        c.suppress_exceptions = True
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
        """Read the state source, report what an interrupted run did not, then connect
        in the background."""
        self._read_state_source()
        self.catch_up()
        self._start_sender()
        log.info("MQTT: connecting to %s:%d as %s (base topic %s)", self.config.host,
                 self.config.port, f"linebox-{self.device.id}", self.base)
        self._connect()
        self._started = True

    def _start_sender(self) -> None:
        self._thread = threading.Thread(target=self._send_loop, name="linebox-mqtt", daemon=True)
        self._thread.start()

    def _connect(self) -> None:
        self.client.connect_async(self.config.host, self.config.port, self.config.keepalive,
                                  clean_start=True)       # as clean_session in MQTT 3.1.1
        self.client.loop_start()

    def dead(self) -> str | None:
        """Why the reporter cannot work any more (a thread of it died), or None."""
        with self._cond:
            if not self._started or self._stopping:
                return None
        if self._thread is None or not self._thread.is_alive():
            return "the sender thread ended"
        # paho's loop_start() thread (paho 2 keeps it there, None after loop_stop());
        # a paho without the attribute is not second-guessed.
        if hasattr(self.client, "_thread"):
            net = self.client._thread
            if net is None or not net.is_alive():
                return "the network thread ended"
        return None

    def restart(self) -> None:
        """A fresh client and the threads that died; the outbox is sent again from its
        start (at least once, with the same ids)."""
        old = self.client
        try:
            old.loop_stop()
            old.disconnect()
        except Exception:                   # noqa: BLE001 - it is broken already
            pass
        with self._cond:
            self._connected = False
            self._inflight.clear()
            self._acked.clear()
            self._hold_new = False
        self.client = self._make_client()
        if self._thread is None or not self._thread.is_alive():
            self._start_sender()
        self._connect()
        log.info("MQTT: reporter restarted")

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
        if kind == ev_.LINE_STATE:
            self._set_state(f"{self.base}/line/{line}/state", ev["state"])
            if ev["state"] == "idle" and self._ringing.pop(line, None) is not None:
                self._set_caller(line, None)
        elif kind == ev_.BOX_CHANGED:
            counts = {k: ev["counts"].get(k) for k in BOX_FIELDS}
            self._set_state(f"{self.base}/box/{ev['box']}/state", json.dumps(counts))
        elif kind == ev_.RING and ev.get("n") == 1:
            self._ringing[line] = {}
            self._set_caller(line, {})
        elif kind == ev_.CALLERID:
            self._ringing[line] = ev
            self._set_caller(line, ev)
        elif kind == ev_.MISSED_CALL and line is not None:
            self._missed[line] = self._missed.get(line, 0) + 1
            self._save_counters()
            self._set_state(f"{self.base}/line/{line}/missed_calls", str(self._missed[line]))
        elif kind == ev_.EXTENSION_STATE:
            ext = str(ev.get("extension"))
            if _TOPIC_LEVEL.fullmatch(ext):
                self._set_state(f"{self.base}/extension/{ext}/state", str(ev.get("state"))[:32])
        elif kind == ev_.TRUNK_STATE:
            self._set_state(f"{self.base}/trunk/state", str(ev.get("state"))[:32])
        if kind in (ev_.MESSAGE_SAVED, ev_.MESSAGE_STATE, ev_.MESSAGE_RETRACTED,
                    ev_.MESSAGE_TRANSCRIBED):
            self._refresh_last_messages()
        elif kind == ev_.SIP_CALL:
            self.queue_event({"type": "call", "line": None, "extension": ev.get("extension"),
                              "caller_number": ev.get("caller_number"),
                              "caller_name": ev.get("caller_name")})
        report = report_for(ev)
        if report is None:
            return
        if "extension" in ev:
            report["extension"] = ev["extension"]
        if report["type"] == "login_failed" and report.get("box") not in self._boxes:
            # What a caller typed at the box-number prompt may be a PIN typed early:
            # only a configured box number is worth (and safe) reporting.
            report["box"] = None
        queued = self.queue_event(report)
        if report["type"] == "message_saved":
            if not queued:      # the store announces it again at the next start
                raise ev_.NotTaken(f"MQTT event for message {report['message']} not queued")
            self._note_saved(report["message"])

    def queue_event(self, report: dict) -> bool:
        """Put an event in the outbox (durably) and wake the sender; False if it could
        not be put there."""
        report.setdefault("time", iso_time(self.clock(), self.tz))
        try:
            self.outbox.put(report)
        except OutboxError as e:
            log.error("%s: %s lost", e, report.get("type"))
            return False
        with self._cond:
            self._cond.notify_all()
        return True

    def _set_caller(self, line, cid: dict | None) -> None:
        """The incoming caller of a line: {} while ringing without caller ID (yet),
        None when no call is coming in."""
        c = cid or {}
        payload = {"display": caller_display(c) if cid is not None else "none",
                   "number": c.get("number"), "name": c.get("name"),
                   "number_absent": c.get("number_absent"), "name_absent": c.get("name_absent"),
                   "time": iso_time(self.clock(), self.tz) if cid is not None else None}
        self._set_state(f"{self.base}/line/{line}/caller", json.dumps(payload, ensure_ascii=False))

    def _refresh_last_messages(self) -> None:
        source = getattr(self.state_source, "last_messages", None)
        if source is None:
            return
        for box, rec in source().items():
            self._set_state(f"{self.base}/box/{box}/last_message", _last_payload(rec))

    def _load_counters(self) -> dict[int, int]:
        """Missed calls per line, and (``self._saved_upto``) the newest message whose
        ``message_saved`` is in the outbox."""
        self._saved_upto: str | None = None
        try:
            doc = json.loads(self.counters_file.read_bytes())
            upto = doc.get("saved_upto")
            if isinstance(upto, str) and upto.isascii() and upto.isdigit():
                self._saved_upto = upto
            raw = doc.get("missed_calls", {})
            return {int(k): int(v) for k, v in raw.items()
                    if str(k).isascii() and str(k).isdigit() and isinstance(v, int) and v >= 0}
        except FileNotFoundError:
            return {}
        except Exception as e:              # noqa: BLE001 - a counter is not worth a fault
            log.warning("%s: %s; missed calls counted from 0", self.counters_file,
                        type(e).__name__)
            return {}

    def _note_saved(self, message_id: str) -> None:
        if self._saved_upto is None or int(message_id) > int(self._saved_upto):
            self._saved_upto = message_id
            self._save_counters()

    def catch_up(self) -> int:
        """Queue ``message_saved`` for messages saved after the last one queued: a kill
        between the store's commit and the outbox loses no event. The first run on a
        data folder only notes where it stands. Returns how many were queued."""
        source = getattr(self.state_source, "saved_messages", None)
        if source is None:
            return 0
        records = sorted(source(), key=lambda r: int(r["id"]))
        if self._saved_upto is None:
            self._saved_upto = records[-1]["id"] if records else "0"
            self._save_counters()
            return 0
        missing = [r for r in records if int(r["id"]) > int(self._saved_upto)]
        for rec in missing:
            log.warning("MQTT: message %s was saved but not reported (interrupted); "
                        "reporting it now", rec["id"])
            self.queue_event(report_for({"event": ev_.MESSAGE_SAVED, **rec}))
            self._note_saved(rec["id"])
        return len(missing)

    def _save_counters(self) -> None:
        blob = json.dumps({"missed_calls": {str(k): v for k, v in self._missed.items()},
                           "saved_upto": self._saved_upto})
        try:
            write_file_atomic(self.counters_file, blob.encode())
        except OSError as e:
            log.warning("%s: %s", self.counters_file, e.strerror or e)

    # ------------------------------------------------------------ commands (loop)

    def process_commands(self) -> int:
        """Run the commands received since the last call; returns how many."""
        n = 0
        while True:
            try:
                action, args = self.commands.get_nowait()
            except queue.Empty:
                return n
            n += 1
            self._run(action, args)

    def _run(self, action: str, args: dict) -> None:
        try:
            reply = self.dispatch(action, args)
        except Exception as e:              # noqa: BLE001 - dispatch is meant not to raise
            log.error("MQTT command %s: %s: %s", action, type(e).__name__, e, exc_info=True)
            reply = {"ok": False, "error": "internal error (see the appliance's log)",
                     "action": action, "request_id": None}
        if reply.get("ok"):
            log.info("MQTT command %s: done", action)
            from linebox.commands import TABLE
            cmd = TABLE.get(action)
            if cmd is not None and cmd.settings:
                self._read_state_source()
                with self._cond:
                    self._discovery_due = action == "reload" and self.config.discovery
                    self._cond.notify_all()
        self._send_reply(reply)

    def _reply(self, action: str, request_id, error: str) -> None:
        self._send_reply({"ok": False, "error": error, "action": action,
                          "request_id": request_id})

    def _send_reply(self, reply: dict) -> None:
        if reply.get("error") is not None:
            log.warning("MQTT command %s refused: %s", reply.get("action"), reply["error"])
        try:
            payload = json.dumps(reply, ensure_ascii=False)
        except (TypeError, ValueError):
            payload = json.dumps({**reply, "result": None})
        self.client.publish(f"{self.cmd_prefix}result", payload, qos=1)

    # ------------------------------------------------------------ paho callbacks

    @_guarded
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT: broker %s:%d refused the connection: %s", self.config.host,
                      self.config.port, reason_code)
            return
        log.info("MQTT: connected to %s:%d", self.config.host, self.config.port)
        # MQTT 5's "retain as published": a command someone published with the retain
        # flag arrives flagged even live, so it is ignored every time, not only at a
        # reconnect (MQTT 3.1.1 clears the flag on live delivery).
        opts = SubscribeOptions(qos=1, retainAsPublished=True)
        subs = [(f"{self.cmd_prefix}+", opts)] if self.dispatch is not None else []
        if self.config.discovery:
            subs.append((STATUS_TOPIC, SubscribeOptions(qos=1)))
        if subs:
            client.subscribe(subs)
        client.publish(self.status_topic, "online", qos=1, retain=True)
        with self._cond:
            self._connected = True
            self._warned_down = False
            self._refresh = True
            self._discovery_due = self.config.discovery
            self._hold_new = bool(self._inflight)
            self._cond.notify_all()

    @_guarded
    def _on_connect_fail(self, client, userdata) -> None:
        self._went_down("cannot connect")

    @_guarded
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

    @_guarded
    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cond:
            self._acked.append(mid)
            self._cond.notify_all()

    @_guarded
    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == STATUS_TOPIC:
            if msg.payload.strip() == b"online":
                with self._cond:
                    self._discovery_due = self.config.discovery
                    self._cond.notify_all()
            return
        if not msg.topic.startswith(self.cmd_prefix) or self.dispatch is None:
            return
        action = msg.topic[len(self.cmd_prefix):]
        if action == "result":
            return
        if msg.retain:
            # A retained command would act again at every connect (a message trashed
            # again after its owner restored it): never carried out, never answered.
            log.warning("MQTT: retained message on %s ignored (commands must not be "
                        "retained)", msg.topic[:200])
            return
        if len(msg.payload) > MAX_PAYLOAD:
            self._reply(action[:64], None, f"payload too large ({len(msg.payload)} bytes; "
                                           f"at most {MAX_PAYLOAD})")
            return
        try:
            args = parse_payload(action, msg.payload)
        except CommandError as e:
            self._reply(action[:64], None, str(e))
            return
        self.commands.put((action, args))

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
        last = getattr(src, "last_messages", None)
        last = last() if last is not None else {}
        fresh = {}
        for number, counts in boxes.items():
            fresh[f"{self.base}/box/{number}/state"] = json.dumps(
                {k: counts.get(k) for k in BOX_FIELDS})
        for number, rec in last.items():
            fresh[f"{self.base}/box/{number}/last_message"] = _last_payload(rec)
        for line, state in lines.items():
            fresh[f"{self.base}/line/{line}/state"] = state
            fresh[f"{self.base}/line/{line}/missed_calls"] = str(self._missed.get(line, 0))
        for line, s in settings.items():
            fresh[f"{self.base}/line/{line}/answering"] = "ON" if s["answering"] else "OFF"
            fresh[f"{self.base}/line/{line}/rings"] = str(s["rings"])
        with self._cond:
            for line in lines:
                topic = f"{self.base}/line/{line}/caller"
                if topic not in self._states:
                    fresh[topic] = json.dumps({"display": "none", "number": None, "name": None,
                                               "number_absent": None, "name_absent": None,
                                               "time": None})
            for topic, payload in fresh.items():
                if self._versions.get(topic, 0) == before.get(topic, 0):
                    self._states[topic] = payload
                self._dirty.add(topic)
            for topic in self._states:
                self._dirty.add(topic)
            self._boxes = {n: str(c.get("name") or n) for n, c in boxes.items()}
            self._lines = sorted(lines)
            self._min_rings = {i: s.get("min_rings", 1) for i, s in settings.items()}
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
            boxes, lines, lo = dict(self._boxes), list(self._lines), dict(self._min_rings)
        doc = discovery_payload(self.device, self.base, boxes, lines, min_rings=lo,
                                commands=self.dispatch is not None,
                                configuration_url=self.configuration_url,
                                extensions=self.extensions)
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


def _last_payload(rec: dict | None) -> str:
    """A box's ``last_message`` topic (``transcript`` once transcription kept one)."""
    rec = rec or {}
    out = {"message": rec.get("id"), **{k: rec.get(k) for k in LAST_FIELDS},
           "transcript": rec.get("transcript")}
    return json.dumps(out, ensure_ascii=False)
