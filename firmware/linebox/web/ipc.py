"""The portal in a process of its own, and the small channel between it and the daemon.

Why a process: every Python thread of one process shares one interpreter lock (the
GIL). Rendering pages, streaming files and drawing waveforms for five browsers in the
daemon's process made the line loops wait for it, and frames came late
(bench/web_bench.py). In its own process the portal runs beside the line loops, not
between their frames; the daemon keeps the store, the only owner of the database, and
does on the portal's behalf only what needs the store or the running appliance.

The channel is one Unix socket pair, frames of ``>IB`` (length, kind) then the payload:

- portal -> daemon: JSON only (kind ``j``): ``{"id", "call", "args"}``, a call of one
  of ``HostedPortal.CALLS``. The portal is the process that faces the network: nothing
  it sends is unpickled, and it can only ask for what that table lists, each of which
  goes through ``actions.Portal`` (changes through the command table, under the lock).
- daemon -> portal: pickle (kind ``p``, the trusted direction): ``("reply", id, ok,
  value)``, ``("event", ev)`` (bus events the pages follow, in the order they were
  published, so a change's events arrive before its reply) and ``("config", cfg)``
  (the running configuration, again after each change of it).

The portal process ends when the channel closes (the daemon stopped or died).
"""

import base64
import json
import logging
import os
import pickle
import queue
import socket
import struct
import threading
from array import array
from pathlib import Path

from linebox.errors import LineboxError
from linebox.voicemail.store import GREETING_KINDS
from linebox.web.actions import ActionError

log = logging.getLogger("linebox.web")
HEADER = struct.Struct(">IB")
MAX_FRAME = 64 * 1024 * 1024          # a 16 MB greeting upload in base64, with room
CALL_TIMEOUT = 60.0
OUTBOX = 2000                          # frames waiting for the sender; events past it are dropped
# What the pages follow live, and what makes the portal's copies of the store stale.
FORWARDED = ("line_state", "ring", "callerid", "answer", "onhook", "line_fault", "line_fault_cleared",
             "missed_call", "box_changed", "message_state", "message_saved", "message_retracted",
             "message_transcribed", "message_deleted", "message_purged", "call_logged",
             "greeting_changed")


class ChannelClosed(Exception):
    pass


def send_frame(sock: socket.socket, kind: bytes, payload: bytes) -> None:
    sock.sendall(HEADER.pack(len(payload), kind[0]) + payload)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ChannelClosed()
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> tuple[bytes, bytes]:
    size, kind = HEADER.unpack(_read_exact(sock, HEADER.size))
    if size > MAX_FRAME:
        raise ChannelClosed()
    return bytes([kind]), _read_exact(sock, size)


def samples_out(samples) -> str:
    return base64.b64encode(array("h", samples).tobytes()).decode("ascii")


def samples_in(text: str) -> array:
    a = array("h")
    a.frombytes(base64.b64decode(text, validate=True))
    return a


# ---------------------------------------------------------------- the daemon's side

class HostedPortal:
    """In the daemon: answers the portal process's calls through ``actions.Portal`` and
    forwards bus events and configuration changes to it."""

    # name -> the kinds of its arguments, each checked here before anything runs: the
    # portal process checked them too, but the daemon trusts nothing from the network's side
    # (the store builds a greeting's file name from the box number, for one).
    CALLS = {
        "messages_all": (), "lines": (), "calls": (), "line_settings": (),
        "greeting_file": ("box", "kind"), "greetings": ("box",), "system_greeting": ("box",), "pin_hash": ("box",),
        "is_locked": ("box",), "login_failed": ("box", "who"), "login_ok": ("box", "who"),
        "mark_heard": ("message", "who"), "save": ("message", "who"), "delete": ("message", "who"),
        "undelete": ("message", "who"), "purge": ("message", "who"),
        "set_greeting": ("box", "samples", "kind", "who"), "clear_greeting": ("box", "kind", "who"),
        "set_pin_hash": ("box", "hash", "who"), "set_answering": ("line", "bool", "who"),
        "set_rings": ("line", "int", "who"), "apply_config_file": ("lines", "who", "text"),
    }

    def _valid(self, kind: str, v) -> bool:
        cfg = self.portal.app.config
        line_ids = {ln.id for ln in cfg.lines}
        if kind == "box":
            return isinstance(v, str) and v in cfg.boxes
        if kind == "message":
            return isinstance(v, str) and v.isascii() and v.isdigit() and len(v) <= 12
        if kind == "kind":
            return v in GREETING_KINDS
        if kind in ("who", "text"):
            return isinstance(v, str) and len(v) <= 1000
        if kind == "line":
            return type(v) is int and v in line_ids
        if kind == "lines":
            return isinstance(v, list) and all(type(x) is int and x in line_ids for x in v)
        if kind == "bool":
            return type(v) is bool
        if kind == "int":
            return type(v) is int
        if kind == "hash":
            return isinstance(v, str) and v.startswith("scrypt$") and len(v) <= 300
        if kind == "samples":
            return isinstance(v, str) and len(v) <= MAX_FRAME
        return False

    def __init__(self, portal, sock: socket.socket) -> None:
        self.portal = portal
        self.sock = sock
        self.outbox: queue.Queue = queue.Queue(OUTBOX)
        self._config = None
        self._gap = False
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        portal.app.bus.subscribe(self._on_event)

    def start(self) -> None:
        for name, target in (("web-host", self._serve), ("web-send", self._send_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self._push_config()

    def _on_event(self, ev: dict) -> None:
        # On the line loop's thread, under the daemon's lock: a filter and a queue, no more.
        if self._closed.is_set() or ev.get("event") not in FORWARDED:
            return
        try:
            self.outbox.put_nowait(("event", ev))
        except queue.Full:
            self._gap = True           # told to the portal, which then reads everything anew

    def _push_config(self) -> None:
        cfg = self.portal.app.config
        if cfg is not self._config:
            self._config = cfg
            self.outbox.put(("config", cfg))

    def _send_loop(self) -> None:
        while not self._closed.is_set():
            try:
                item = self.outbox.get(timeout=1.0)
            except queue.Empty:
                self._push_config()     # changed by MQTT's reload, or the housekeeping
                continue
            if item is None:
                break
            if self._gap:               # events were dropped: the portal forgets what it copied
                self._gap = False
                try:
                    send_frame(self.sock, b"p", pickle.dumps(("gap", None)))
                except OSError:
                    break
            try:
                blob = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
            except (pickle.PicklingError, TypeError, AttributeError) as e:
                if item[0] != "reply":
                    continue
                blob = pickle.dumps(("reply", item[1], False, (500, f"internal: {e}")))
            try:
                send_frame(self.sock, b"p", blob)
            except OSError:
                break

    def _serve(self) -> None:
        try:
            while True:
                kind, payload = recv_frame(self.sock)
                if kind != b"j":
                    log.error("web: the portal process sent a frame of kind %r; closing", kind)
                    break
                self._answer(payload)
        except (ChannelClosed, OSError):
            pass
        finally:
            self._closed.set()
            try:
                self.sock.shutdown(socket.SHUT_RDWR)    # the portal process sees it and ends
            except OSError:
                pass
            try:
                self.outbox.put_nowait(None)
            except queue.Full:
                pass

    def _answer(self, payload: bytes) -> None:
        try:
            req = json.loads(payload)
            rid, name, args = req["id"], req["call"], req["args"]
            kinds = self.CALLS.get(name)
            if not isinstance(args, list) or kinds is None or len(kinds) != len(args):
                raise ValueError(f"no call {name!r} with these arguments")
            bad = [k for k, v in zip(kinds, args, strict=True) if not self._valid(k, v)]
        except (ValueError, KeyError, TypeError) as e:
            log.error("web: a malformed request from the portal process: %s", e)
            return
        if bad:
            log.error("web: the portal process asked %s with a bad %s; refused", name, ", ".join(bad))
            self.outbox.put(("reply", rid, False, (400, f"bad {', '.join(bad)}")))
            return
        try:
            value = getattr(self, "_" + name, None)
            value = value(*args) if value is not None else getattr(self.portal, name)(*args)
            self._push_config()         # a settings change: its configuration before the reply
            self.outbox.put(("reply", rid, True, value))
        except ActionError as e:
            self.outbox.put(("reply", rid, False, (e.status, str(e))))
        except LineboxError as e:
            self.outbox.put(("reply", rid, False, (409, str(e))))
        except Exception as e:  # noqa: BLE001 - the portal gets a 500, the daemon goes on
            log.exception("web: %s failed", name)
            self.outbox.put(("reply", rid, False, (500, f"internal error: {type(e).__name__}")))

    # Calls whose arguments or answers need translating.
    def _messages_all(self):
        return self.portal._messages()[0]

    def _greeting_file(self, box, kind):
        path = self.portal.greeting_file(box, kind)
        return None if path is None else str(path)

    def _system_greeting(self, box):
        return samples_out(self.portal.system_greeting(box))

    def _set_greeting(self, box, samples, kind, who):
        return self.portal.set_greeting(box, samples_in(samples), who, kind)

    def _clear_greeting(self, box, kind, who):
        return self.portal.clear_greeting(box, who, kind)

    def _apply_config_file(self, changed, who, what):
        return self.portal.apply_config_file([int(x) for x in changed], who, what)

    def _calls(self):
        return self.portal.calls()

    def close(self) -> None:
        self._closed.set()
        self.portal.app.bus.unsubscribe(self._on_event)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.outbox.put_nowait(None)
        except queue.Full:
            pass
        for t in self._threads:
            t.join(timeout=2.0)
        self.sock.close()


# ---------------------------------------------------------------- the portal process's side

class LocalBus:
    """The bus as the portal process sees it: the daemon's forwarded events."""

    def __init__(self) -> None:
        self._subs = []

    def subscribe(self, fn) -> None:
        self._subs.append(fn)

    def publish(self, ev: dict) -> None:
        for fn in list(self._subs):
            try:
                fn(ev)
            except Exception:  # noqa: BLE001 - one listener must not stop the others
                log.exception("web: event listener failed")


class RemotePortal:
    """``actions.Portal``'s interface in the portal process, answered by the daemon.

    What every page needs (the messages, the call log) is copied once and kept until an
    event says it changed, so five browsers reloading a page cost the daemon one call."""

    def __init__(self, sock: socket.socket, config, data_dir: Path, on_close=None) -> None:
        self.sock = sock
        self.config = config
        self.data_dir = Path(data_dir)
        self.bus = LocalBus()
        self.on_close = on_close
        self._send_lock = threading.Lock()
        self._next = 0
        self._waiting: dict[int, list] = {}
        self._wait_lock = threading.Lock()
        self._snapshot = None
        self._calls = None
        self._thread = threading.Thread(target=self._read_loop, name="web-channel", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # ------------------------------------------------------------ the channel

    def _read_loop(self) -> None:
        try:
            while True:
                kind, payload = recv_frame(self.sock)
                if kind != b"p":
                    continue
                item = pickle.loads(payload)
                if item[0] == "reply":
                    _, rid, ok, value = item
                    with self._wait_lock:
                        slot = self._waiting.pop(rid, None)
                    if slot is not None:
                        slot[1], slot[2] = ok, value
                        slot[0].set()
                elif item[0] == "event":
                    self._on_event(item[1])
                elif item[0] == "config":
                    self.config = item[1]
                elif item[0] == "gap":           # events were lost: nothing cached is trusted
                    self._snapshot = None
                    self._calls = None
        except (ChannelClosed, OSError, pickle.UnpicklingError, EOFError):
            pass
        finally:
            with self._wait_lock:
                for slot in self._waiting.values():
                    slot[1], slot[2] = False, (503, "the appliance is not answering")
                    slot[0].set()
                self._waiting.clear()
            if self.on_close is not None:
                self.on_close()

    def _on_event(self, ev: dict) -> None:
        kind = ev.get("event", "")
        if kind == "box_changed" or kind.startswith("message_") or kind == "greeting_changed":
            self._snapshot = None
        if kind == "call_logged":
            self._calls = None
        self.bus.publish(ev)

    def _call(self, name: str, *args):
        slot = [threading.Event(), False, None]
        with self._wait_lock:
            self._next += 1
            rid = self._next
            self._waiting[rid] = slot
        try:
            with self._send_lock:
                send_frame(self.sock, b"j", json.dumps({"id": rid, "call": name, "args": list(args)}).encode())
        except OSError:
            with self._wait_lock:
                self._waiting.pop(rid, None)
            raise ActionError("the appliance is not answering", 503) from None
        if not slot[0].wait(CALL_TIMEOUT):
            with self._wait_lock:
                self._waiting.pop(rid, None)
            raise ActionError("the appliance did not answer in time", 503)
        if not slot[1]:
            status, error = slot[2]
            raise ActionError(error, status)
        return slot[2]

    def _changed(self, name: str, *args):
        try:
            return self._call(name, *args)
        finally:
            self._snapshot = None       # the change's events came first; this is belt and braces

    # ------------------------------------------------------------ reading

    def _messages(self):
        snap = self._snapshot
        if snap is None:
            msgs = self._call("messages_all")
            snap = (msgs, {m["id"]: m for m in msgs})
            self._snapshot = snap
        return snap

    def box_numbers(self) -> list[str]:
        return list(self.config.boxes)

    def box_summary(self, number: str) -> dict:
        from linebox.web.actions import summary
        return summary(self.config, self._messages()[0], number)

    def messages(self, box: str) -> list[dict]:
        return [m for m in self._messages()[0] if m["box"] == box]

    def message(self, message_id: str) -> dict | None:
        return self._messages()[1].get(message_id)

    def lines(self) -> list[dict]:
        return self._call("lines")

    def line_settings(self) -> dict:
        return {int(k): v for k, v in self._call("line_settings").items()}

    def calls(self) -> list[dict]:
        calls = self._calls
        if calls is None:
            calls = self._calls = self._call("calls")
        return calls

    def greeting_file(self, box: str, kind: str = "unavailable"):
        path = self._call("greeting_file", box, kind)
        return None if path is None else Path(path)

    def greetings(self, box: str) -> dict:
        return self._call("greetings", box)

    def system_greeting(self, box: str) -> array:
        return samples_in(self._call("system_greeting", box))

    def pin_hash(self, box: str):
        return self._call("pin_hash", box)

    def is_locked(self, box: str) -> bool:
        return self._call("is_locked", box)

    # ------------------------------------------------------------ changes

    def login_failed(self, box: str, who: str) -> bool:
        return self._call("login_failed", box, who)

    def login_ok(self, box: str, who: str) -> None:
        self._call("login_ok", box, who)

    def mark_heard(self, message_id: str, who: str) -> dict:
        return self._changed("mark_heard", message_id, who)

    def save(self, message_id: str, who: str) -> dict:
        return self._changed("save", message_id, who)

    def delete(self, message_id: str, who: str) -> dict:
        return self._changed("delete", message_id, who)

    def undelete(self, message_id: str, who: str) -> dict:
        return self._changed("undelete", message_id, who)

    def purge(self, message_id: str, who: str) -> None:
        self._changed("purge", message_id, who)

    def set_greeting(self, box: str, samples, who: str, kind: str = "unavailable") -> None:
        self._changed("set_greeting", box, samples_out(samples), kind, who)

    def clear_greeting(self, box: str, who: str, kind: str = "unavailable") -> None:
        self._changed("clear_greeting", box, kind, who)

    def set_pin_hash(self, box: str, pin_hash: str, who: str) -> None:
        self._call("set_pin_hash", box, pin_hash, who)

    def set_answering(self, line: int, on: bool, who: str) -> None:
        self._call("set_answering", line, on, who)

    def set_rings(self, line: int, rings: int, who: str) -> None:
        self._call("set_rings", line, rings, who)

    def apply_config(self, cfg, changed_lines, who: str, what: str) -> None:
        # The daemon reads the file the settings page just wrote, with its own parser:
        # no configuration object crosses from the network-facing process.
        self._changed("apply_config_file", sorted(changed_lines), who, what)


def child_environment() -> dict:
    """The portal process's environment: the daemon's, with firmware/ importable."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
