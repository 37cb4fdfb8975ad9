"""A small synchronous event bus: the store, the call flows and the drivers publish facts,
the transcript, LEDs, MQTT and e-mail subscribe to them.

An event is a dict with at least ``event`` (its kind). Call-flow events also carry ``t``
(seconds on the line's clock) and ``line``. Every kind is named once, in :data:`CATALOGUE`
below, with its fields; publishers use the constants. Kinds that are facts for the
machinery rather than for the story (``line_state``, ``prompt_end``, ``box_changed``) are
marked ``transcript=False`` and left out of ``linebox sim`` transcripts.

Subscribers are isolated from each other and from the publisher: one that raises is
logged (with its exception) and the others still get the event, so a broken reporter
can neither abort the store operation that published nor silence the LEDs.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class EventKind:
    """One kind of bus event: its name, the fields it carries, who publishes it."""

    name: str
    fields: tuple[str, ...]
    source: str                      # the publishing module, for readers of the code
    transcript: bool = True          # shown in `linebox sim` transcripts


# ---- the call engine (calls/engine.py), one line each: also "t" and "line"
RING = "ring"
CALLERID = "callerid"
ANSWER = "answer"
MISSED_CALL = "missed_call"
DTMF = "dtmf"
PROMPT = "prompt"
PROMPT_END = "prompt_end"
HANGUP_DETECTED = "hangup_detected"
ONHOOK = "onhook"
LINE_STATE = "line_state"
LINE_FAULT = "line_fault"
LINE_FAULT_CLEARED = "line_fault_cleared"
# ---- the call flows (calls/flows.py)
RECORD_START = "record_start"
RECORD_END = "record_end"
LOGIN = "login"
MESSAGE_PLAYED = "message_played"
# ---- the store (voicemail/store.py)
MESSAGE_SAVED = "message_saved"
MESSAGE_DISCARDED = "message_discarded"
MESSAGE_STATE = "message_state"
MESSAGE_RETRACTED = "message_retracted"
MESSAGE_TRANSCRIBED = "message_transcribed"
BOX_CHANGED = "box_changed"
BOX_LOCKED = "box_locked"              # PIN lockout began (for the owner's alert)
BOX_UNLOCKED = "box_unlocked"          # the owner or an administrator lifted a lock
DISK_FAULT = "disk_fault"              # the data folder is full or cannot be written
DISK_FAULT_CLEARED = "disk_fault_cleared"
# ---- the appliance (app.py)
TRANSCRIPTION_FAILED = "transcription_failed"
# ---- the lamps (hw/leds.py)
LED = "led"
# ---- the SIP server: registration of an IP phone
EXTENSION_STATE = "extension_state"
SIP_CALL = "sip_call"                  # a registered phone called in (sip/server.py)
EXTENSION_CALL_STATE = "extension_call_state"   # what a phone's voicemail call is doing
TRUNK_STATE = "trunk_state"            # the registration at the PBX, [sip] mode = "trunk"
CALL_LOGGED = "call_logged"            # the call log kept one call (voicemail/calllog.py)
CALL_BLOCKED = "call_blocked"          # a caller on the line's block list: hung up on
# ---- the gateway (gateway/outbound.py): a phone's call out through a line
OUTBOUND_START = "outbound_start"
OUTBOUND_END = "outbound_end"
# ---- the gateway (gateway/ringgroup.py): an analog call and the IP phones
RING_GROUP = "ring_group"              # the line's phones ring for its call
RING_GROUP_END = "ring_group_end"      # they stopped ringing unanswered (reason)
BRIDGED = "bridged"                    # a phone answered: caller and phone talk
TRANSFER = "transfer"                  # the phone blind-transferred the call (REFER)
# ---- the simulated phones (sim/phones.py): the phones' side, for transcripts
PHONE_RINGING = "phone_ringing"
PHONE_ANSWER = "phone_answer"
PHONE_RING_STOPPED = "phone_ring_stopped"
PHONE_HANGUP = "phone_hangup"
PHONE_DIAL = "phone_dial"              # a scenario phone calls out (sim/dialer.py)
PHONE_PROGRESS = "phone_progress"      # what its call out did (183, 200, a failure)
# ---- the simulated exchange (sim/exchange.py): the caller's side, for transcripts
INCOMING = "incoming"
CALLER_GAVE_UP = "caller_gave_up"
CALLER_HANGUP = "caller_hangup"
CALL_END = "call_end"
DIALLED = "dialled"                    # the exchange has the digits of an outgoing call
CALLEE_ANSWER = "callee_answer"
CALLEE_HANGUP = "callee_hangup"
CALLEE_END = "callee_end"              # the outgoing call is over for the exchange

_CALLER = ("caller_number", "caller_name", "caller_number_absent", "caller_name_absent")

CATALOGUE: dict[str, EventKind] = {k.name: k for k in (
    EventKind(RING, ("n",), "calls/engine.py"),
    EventKind(CALLERID, ("number", "name", "number_absent", "name_absent"), "calls/engine.py"),
    EventKind(ANSWER, ("after_rings", *_CALLER), "calls/engine.py"),
    EventKind(MISSED_CALL, ("rings", "caller_number", "caller_name"), "calls/engine.py"),
    EventKind(DTMF, ("digit",), "calls/engine.py"),
    EventKind(PROMPT, ("name",), "calls/engine.py"),
    EventKind(PROMPT_END, ("name",), "calls/engine.py", transcript=False),
    EventKind(HANGUP_DETECTED, ("cause",), "calls/engine.py"),
    EventKind(ONHOOK, (), "calls/engine.py"),
    EventKind(LINE_STATE, ("state",), "calls/engine.py", transcript=False),
    EventKind(LINE_FAULT, ("reason", "key"), "calls/engine.py"),
    EventKind(LINE_FAULT_CLEARED, ("reason", "key"), "calls/engine.py"),
    EventKind(RECORD_START, ("box",), "calls/flows.py"),
    EventKind(RECORD_END, ("reason", "box"), "calls/flows.py"),
    EventKind(LOGIN, ("box", "ok", "reason"), "calls/flows.py"),
    EventKind(MESSAGE_PLAYED, ("id",), "calls/flows.py"),
    EventKind(MESSAGE_SAVED, ("box", "id", "seconds", "line", "caller_number", "caller_name",
                              "recovered"), "voicemail/store.py"),
    EventKind(MESSAGE_DISCARDED, ("box", "reason", "line"), "voicemail/store.py"),
    EventKind(MESSAGE_STATE, ("id", "box", "state", "line"), "voicemail/store.py"),
    EventKind(MESSAGE_RETRACTED, ("id", "box", "line"), "voicemail/store.py"),
    EventKind(MESSAGE_TRANSCRIBED, ("id", "box", "line", "transcript", "engine"),
              "voicemail/store.py"),
    EventKind(BOX_CHANGED, ("box", "counts"), "voicemail/store.py", transcript=False),
    EventKind(BOX_LOCKED, ("box", "until", "permanent", "first", "failures", "source"),
              "voicemail/logins.py"),
    EventKind(BOX_UNLOCKED, ("box", "by"), "voicemail/logins.py"),
    EventKind(DISK_FAULT, ("key", "reason"), "voicemail/store.py"),
    EventKind(DISK_FAULT_CLEARED, ("key",), "voicemail/store.py"),
    EventKind(TRANSCRIPTION_FAILED, ("id", "reason"), "app.py"),
    EventKind(LED, ("box", "pattern"), "hw/leds.py"),
    EventKind(EXTENSION_STATE, ("extension", "state"), "sip", transcript=False),
    EventKind(TRUNK_STATE, ("state", "registrar", "reason"), "gateway/trunk.py", transcript=False),
    EventKind(SIP_CALL, ("extension", "caller_number", "caller_name", "dialled"),
              "sip/server.py", transcript=False),
    EventKind(EXTENSION_CALL_STATE, ("extension", "state"), "sip/server.py",
              transcript=False),
    EventKind(CALL_LOGGED, ("call",), "voicemail/calllog.py", transcript=False),
    EventKind(CALL_BLOCKED, ("pattern", "caller_number", "caller_name"), "calls/engine.py"),
    EventKind(OUTBOUND_START, ("extension", "number"), "gateway/outbound.py"),
    EventKind(OUTBOUND_END, ("extension", "result"), "gateway/outbound.py"),
    EventKind(RING_GROUP, ("extensions",), "gateway/ringgroup.py"),
    EventKind(RING_GROUP_END, ("reason",), "gateway/ringgroup.py"),
    EventKind(BRIDGED, ("extension",), "gateway/ringgroup.py"),
    EventKind(TRANSFER, ("extension", "kind", "to"), "gateway/ringgroup.py"),
    EventKind(PHONE_RINGING, ("extension", "caller_name", "caller_number"), "sim/phones.py"),
    EventKind(PHONE_ANSWER, ("extension",), "sim/phones.py"),
    EventKind(PHONE_RING_STOPPED, ("extension", "reason"), "sim/phones.py"),
    EventKind(PHONE_HANGUP, ("extension", "cause"), "sim/phones.py"),
    EventKind(PHONE_DIAL, ("extension", "dialled"), "sim/dialer.py"),
    EventKind(PHONE_PROGRESS, ("extension", "state", "status", "reason"), "sim/dialer.py"),
    EventKind(INCOMING, ("caller_number", "caller_name"), "sim/exchange.py"),
    EventKind(CALLER_GAVE_UP, ("rings",), "sim/exchange.py"),
    EventKind(CALLER_HANGUP, ("how",), "sim/exchange.py"),
    EventKind(CALL_END, (), "sim/exchange.py"),
    EventKind(DIALLED, ("number", "result", "callee"), "sim/exchange.py"),
    EventKind(CALLEE_ANSWER, ("number", "callee"), "sim/exchange.py"),
    EventKind(CALLEE_HANGUP, ("number", "how", "callee"), "sim/exchange.py"),
    EventKind(CALLEE_END, ("number", "callee"), "sim/exchange.py"),
)}
HIDDEN = frozenset(k.name for k in CATALOGUE.values() if not k.transcript)

log = logging.getLogger(__name__)


class NotTaken(Exception):  # noqa: N818 - a verdict, not an error of the publisher
    """Raised by a subscriber that could not keep an event it is meant to keep durably
    (a mail that could not be queued): ``Bus.publish`` then answers False, so the
    publisher does not count the event as delivered. The message says why (one line)."""


class Bus:
    """Delivers every published event to every subscriber, in order, synchronously."""

    def __init__(self) -> None:
        self._subs: list[Callable[[dict], None]] = []

    def subscribe(self, fn: Callable[[dict], None]) -> Callable[[dict], None]:
        self._subs.append(fn)
        return fn

    def unsubscribe(self, fn: Callable[[dict], None]) -> None:
        self._subs.remove(fn)

    def publish(self, event: dict) -> bool:
        """Deliver ``event``; True when every subscriber took it (none raised)."""
        taken = True
        for fn in list(self._subs):
            try:
                fn(event)
            except NotTaken as e:
                taken = False
                log.warning("%s event not taken: %s", event.get("event"), e)
            except Exception:       # noqa: BLE001 - one subscriber must not stop the rest
                taken = False
                log.exception("subscriber %s failed on a %s event",
                              getattr(fn, "__qualname__", repr(fn)), event.get("event"))
        return taken
