"""The call flows, written like the call: greet, beep, record, review; the attendant;
login and the mailbox menu (Asterisk's keys: 4 previous, 5 repeat, 6 next, 7 delete,
9 save, 3 envelope, 0 mailbox options, # back).

Greetings are Asterisk's three kinds: the box's own (``unavailable``), a ``temporary``
one that overrides it while it exists, and the owner's ``name``, which the system
greeting says ("Main office. Please leave your message after the tone."); without a
recorded name it says the box's configured ``name``, spoken once by espeak-ng
(:func:`prepare_names`), and without espeak-ng the box number. Mailbox options keep
Linebox's keys 1 greeting, 2 PIN, 3 restore, and add Asterisk's 4 temporary greeting
(1 record, 2 remove once there is one) and 5 name (Asterisk's 3, which restores here).

Every flow takes a ``Session``: the call, the appliance's services and the box being
dealt with, with ``say``/``menu``/``flush_keys``. A message being left has one owner,
``Message``, and one rule for when it is saved and when discarded (see there).
"""

import logging
from array import array
from datetime import datetime
from pathlib import Path

from linebox import FRAME, RATE
from linebox.calls.engine import Call, Flow, Hangup
from linebox.errors import LineboxError
from linebox.voicemail.pins import pin_problem
from linebox.voicemail.storebase import StoreError, StoreFull

log = logging.getLogger(__name__)

SILENCE_END_SECONDS = 5.0       # a recording ends after this long without voice
MIN_VOICE_SECONDS = 1.0         # shorter messages are discarded
TRIM_PAD_SECONDS = 0.3          # kept after the last voice so the last word is not clipped
KEY_TIMEOUT = 5.0               # waiting for a menu key
PIN_TRIES = 3
STAR_AFTER_FULL = 2.0           # a full box's owner may still press * this long after "full"
GREETING_MAX_SECONDS = 60.0
GREETING_SILENCE_END = 3.0      # a greeting ends sooner on silence than a message
NAME_MAX_SECONDS = 2.5          # a recorded name: keeps the system greeting under 5 s to the beep
# (the spoken one is said within the same time: linebox.calls.speech.NAME_MAX_SECONDS)
NAME_SILENCE_END = 1.5


class Services:
    """What flows need from the appliance: config, store, prompts, bus."""

    def __init__(self, config, store, bus, prompts_for) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        self.prompts_for = prompts_for    # (language, voice) -> calls.prompts.Prompts


def answer(svc: Services, line_cfg) -> "callable":
    """The flow factory for a line: what happens once the line is answered."""

    def flow(call: Call) -> Flow:
        try:
            if line_cfg.route == "attendant":
                yield from attendant(Session(svc, call))
            else:
                yield from leave_message(Session(svc, call, line_cfg.route))
        except Hangup:
            return
    return flow


def sip_entry(svc: Services, action: str, box: str | None) -> "callable":
    """The flow factory for a call from an IP phone: ``action`` "login" (to ``box``, or
    asking for one when None) or "message" (leave a message in ``box``). The caller ID is
    the extension's number and name; the message's line is None."""

    def flow(call: Call) -> Flow:
        try:
            if action == "login":
                yield from login(Session(svc, call, box))
            else:
                yield from leave_message(Session(svc, call, box))
        except Hangup:
            return
    return flow


# -- the call as the flows see it ------------------------------------------------

def _prompts(svc, box: str | None):
    cfg = svc.config.boxes.get(box) if box is not None else None
    if cfg is None:
        cfg = next(iter(svc.config.boxes.values()), None)
    lang = cfg.language if cfg is not None else "en"
    voice = (cfg.prompts if cfg is not None else None) or svc.config.device.prompts
    return svc.prompts_for(lang, voice)


class Session:
    """One call as its flows see it: the appliance's services, the call, and the box the
    caller deals with (``None``: none yet), whose language and voice the prompts speak.
    The flows take one of these instead of threading services, call and box through
    every function; ``for_box`` is the same call about another box."""

    def __init__(self, svc: Services, call: Call, box: str | None = None) -> None:
        self.svc = svc
        self.call = call
        self.box = box

    @property
    def store(self):
        return self.svc.store

    @property
    def config(self):
        return self.svc.config

    def for_box(self, box: str | None) -> "Session":
        return self if box == self.box else Session(self.svc, self.call, box)

    def prompts(self):
        return _prompts(self.svc, self.box)

    def say(self, name: str, clips: list[str] | None = None, interruptible: bool = True) -> Flow:
        """Play the prompt ``name`` (or the clips making up a sentence, under that name)."""
        p = self.prompts()
        samples = p.samples(clips) if clips is not None else p.clip(name)
        return (yield from self.call.play(name, samples, interruptible))

    def menu(self, name: str, valid: str, clips=None, tries: int = 3) -> Flow:
        """Play a menu and return a valid key; None after ``tries`` timeouts."""
        for _ in range(tries):
            yield from self.say(name, clips)
            while True:
                key = yield from self.call.wait_key(KEY_TIMEOUT)
                if key is None:
                    break
                if key in valid:
                    return key
                self.flush_keys()
                yield from self.say("invalid")
                break
        return None

    def flush_keys(self) -> None:
        """Forget keys pressed ahead (typed during a prompt that did not take them)."""
        self.call.digits.clear()


# -- leaving a message ---------------------------------------------------------

def leave_message(s: Session) -> Flow:
    """Box route: retraction offer, greeting, beep, record, review."""
    box, call, store = s.box, s.call, s.store
    yield from retract_offer(s)
    remote = s.config.boxes[box].remote_login
    refused = store.recording_refused(box)        # box_full, or no_space on the disk
    if refused is not None:
        # The owner can still press * (during the refusal, or just after it) and log in
        # to make room: a full box must not lock its owner out of it.
        yield from refuse_message(s, refused, interruptible=remote)
        if remote and call.hangup_cause is None:
            key = call.take_key()
            if key is None:
                key = yield from call.wait_key(STAR_AFTER_FULL)
            if key == "*":
                yield from login(s)
        return
    yield from greeting(s)
    key = call.take_key()
    if key == "*" and remote:
        yield from login(s)
        return
    s.flush_keys()
    while True:
        # The message is started before the beep: a caller who meets a box that another
        # line filled meanwhile (or a disk that filled) hears why, not a beep then a drop.
        try:
            pending = store.start_recording(box, call.runner.id, call.caller_number,
                                            call.caller_name, extension=call.callerid.extension)
        except (StoreError, OSError) as e:     # OSError: the disk refused the record
            log.warning("line %s: %s", call.runner.id, e)
            yield from refuse_message(s, "box_full" if type(e) is StoreFull else "no_space")
            return
        again = False
        with Message(pending) as msg:          # saved or discarded by its one rule
            yield from s.say("beep", interruptible=False)
            yield from record(s, msg)
            if msg.done:                       # too short: discarded
                break
            if msg.reason != "key":
                msg.save()
                if msg.reason == "silence":
                    call.gone("silence")
                break
            again = yield from review(s, msg)
        if not again:
            break
    if call.hangup_cause is None:
        yield from s.say("goodbye", interruptible=False)


def greeting(s: Session) -> Flow:
    """The temporary greeting if there is one, else the box's own, else the system's."""
    for kind in ("temporary", "unavailable"):
        samples = _recording(s.svc, s.box, kind)
        if samples is not None:
            return (yield from s.call.play("greeting", samples))
    return (yield from s.call.play("greeting", system_greeting(s.svc, s.box)))


def system_greeting(svc: Services, box: str) -> array:
    """The box's name (recorded, else spoken from the config), then "please leave your
    message after the tone"; the box number instead of the name when there is neither."""
    p = _prompts(svc, box)
    name = _recording(svc, box, "name")
    if name is None:
        name = _spoken_name(svc, box)
    if name is None:
        return p.samples(p.greeting(box))
    return p.with_name(name)


def _recording(svc: Services, box: str, kind: str) -> array | None:
    path = svc.store.greeting_path(box, kind)
    if path is None:
        return None
    from linebox.wavfile import read_wav
    try:
        return read_wav(path)
    except LineboxError as e:
        log.warning("box %s: %s greeting unusable, not played: %s", box, kind, e)
        return None


def _names_dir(svc: Services) -> Path:
    return Path(svc.store.data_dir) / "names"


def _spoken_name(svc: Services, box: str) -> array | None:
    from linebox.calls.speech import name_cache_path
    from linebox.wavfile import read_wav
    cfg = svc.config.boxes[box]
    path = name_cache_path(_names_dir(svc), cfg.language, cfg.name)
    try:
        return read_wav(path) if path.is_file() else None
    except LineboxError:
        return None


def prepare_names(svc: Services) -> None:
    """Speak every box's name with espeak-ng once (kept in ``data_dir/names/``), so that
    no call waits for the synthesizer. Boxes with a recorded name too: the spoken one is
    there when the owner removes the recording."""
    from linebox.calls.speech import spoken_name
    for cfg in svc.config.boxes.values():
        spoken_name(_names_dir(svc), cfg.language, cfg.name)


def refuse_message(s: Session, reason: str, interruptible: bool = False) -> Flow:
    """No message can be left (the box is full, or the disk): say so."""
    s.call.publish("record_end", reason="box_full", box=s.box)
    s.call.publish("message_discarded", reason=reason, box=s.box)
    yield from s.say("box_full", interruptible=interruptible)


def retract_offer(s: Session) -> Flow:
    """A caller who left a message here a few minutes ago may take it back with 7."""
    number = s.call.caller_number
    if not number:
        return
    window = s.config.boxes[s.box].retract_minutes * 60
    msg = s.store.recent_from(s.box, number, window)
    if msg is None:
        return
    yield from s.say("retract_offer")
    key = yield from s.call.wait_key(KEY_TIMEOUT)
    if key == "7":
        s.store.retract(msg["id"])
        yield from s.say("message_retracted")
    s.flush_keys()


class Message:
    """The one owner of a message being left, from before the beep until it is saved or
    discarded, and the one rule for which:

    - a take with less than MIN_VOICE_SECONDS of voice is discarded (``too_short``);
    - a take ended by ``#`` goes to the review (listen, re-record, send, cancel); one
      ended any other way (hang-up, silence, the length limit, a disk error) is saved;
    - when the call ends with the message undecided (``with`` block left by an
      exception): before the take (during the beep) it is discarded (``hangup``: nothing
      was said); during the take (a line fault, the daemon stopping) what reached the
      disk is kept if it is a second or more, else discarded (``line_fault``); after the
      take (hanging up in the review) it is saved.
    """

    def __init__(self, pending) -> None:
        self.pending = pending
        self.phase = "beep"                   # beep -> taking -> taken
        self.take: Take | None = None

    @property
    def done(self) -> bool:
        return self.pending.done

    @property
    def reason(self) -> str | None:
        """What ended the take (``key``, ``hangup``, ``silence``, ``max_length``, ``error``)."""
        return self.take.reason if self.take is not None else None

    @property
    def kept(self) -> array:
        """The caller's words, as they will be saved (for "1: listen")."""
        return self.take.samples[:self.take.keep]

    def taken(self, take: "Take") -> None:
        self.take, self.phase = take, "taken"
        if take.voice_seconds < MIN_VOICE_SECONDS:
            self.discard("too_short")

    def save(self) -> dict | None:
        return self.pending.finish(self.take.keep)

    def discard(self, reason: str) -> None:
        self.pending.discard(reason)

    def __enter__(self) -> "Message":
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if kind is None or self.pending.done:
            return False
        if self.phase == "beep":
            self.discard("hangup")
        elif self.phase == "taking":
            if self.pending.samples >= RATE:
                self.pending.finish(None)      # keep what reached the disk
            else:
                self.discard("line_fault")
        else:
            self.save()
        return False


class Take:
    """What the caller said until something ended it, and where their voice was."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.samples = array("h")
        self.voiced = bytearray()      # per frame: did the caller's voice reach into it
        self.reason: str | None = None
        self.cut: float | None = None  # line time where the caller's part ended

    def _frames_before_cut(self) -> int:
        cut = self.start + len(self.voiced) * FRAME / RATE if self.cut is None else self.cut
        return max(0, min(len(self.voiced), int(round((cut - self.start) * RATE)) // FRAME))

    @property
    def voice_seconds(self) -> float:
        """Voice before the cut: a hang-up tone or a key is not the caller talking."""
        return self.voiced[:self._frames_before_cut()].count(1) * FRAME / RATE

    @property
    def keep(self) -> int:
        """Samples to keep: up to where the caller stopped talking (plus a little)."""
        n = self._frames_before_cut()
        last = self.voiced[:n].rfind(1)
        if last < 0:
            return 0
        return min(n, last + 1 + int(TRIM_PAD_SECONDS * RATE / FRAME)) * FRAME


def hear_caller(call: Call, limit: float, silence_end: float, sink=None) -> Flow:
    """Take what the line brings until a hang-up, ``#``, ``limit`` seconds, or
    ``silence_end`` seconds without voice. ``sink(frame)`` streams it (to disk); if the
    sink fails (a full disk), the take ends there with reason "error"."""
    vad = call.listener.vad
    take = Take(call.t)
    half_frame = FRAME / RATE / 2
    while take.reason is None:
        yield None
        take.samples.extend(call.heard)
        now = call.t
        last = vad.last_voice_end
        last_t = None if last is None else call.line_time(last)
        take.voiced.append(last_t is not None and last_t > now - half_frame)
        if sink is not None:
            try:
                sink(call.heard)
            except OSError as e:
                log.error("line %s: recording stopped: %s", call.runner.id, e.strerror or e)
                take.reason, take.cut = "error", now
                break
        if call.hangup_cause is not None:
            take.reason, take.cut = "hangup", call.hangup_t
        elif call.digits:
            if call.digits.popleft() == "#":
                take.reason, take.cut = "key", call.last_key_t
        elif now - take.start >= limit:
            take.reason, take.cut = "max_length", now
        elif not vad.active:
            quiet_since = take.start if last_t is None else max(take.start, last_t)
            if now - quiet_since >= silence_end:
                take.reason, take.cut = "silence", quiet_since
    return take


def record(s: Session, msg: Message) -> Flow:
    """Record a message until hang-up, silence, the box's length limit or ``#``, into
    ``msg`` (which then knows what ended it, and discards it when too little was said).
    The audio streams to disk as it comes; what is kept ends where the caller stopped
    talking, before any hang-up tone, key or silence."""
    call = s.call
    limit = s.config.boxes[s.box].max_message_seconds
    call.publish("record_start", box=s.box)
    call.set_state("recording")
    msg.phase = "taking"
    try:
        take = yield from hear_caller(call, limit, SILENCE_END_SECONDS, msg.pending.write)
    finally:
        call.set_state("answered")
    call.publish("record_end", reason=take.reason, box=s.box)
    msg.taken(take)


def review(s: Session, msg: Message) -> Flow:
    """After #: 1 listen, 2 re-record, 3 send, * cancel. Hanging up sends (the Message
    rule). Returns True when the caller wants to record again."""
    for _ in range(3):
        key = yield from s.menu("review", "123*", tries=1)
        if key == "1":
            yield from s.call.play("recording", msg.kept)
            continue
        if key == "2":
            msg.discard("rerecord")
            return True
        if key == "*":
            msg.discard("cancelled")
            yield from s.say("message_cancelled")
            return False
        if key == "3":
            break
    msg.save()
    yield from s.say("message_sent")
    return False


# -- the attendant ---------------------------------------------------------------

def attendant(s: Session) -> Flow:
    """Play the attendant prompt; a key routes to a box or to login; none goes to default."""
    att = s.config.attendant
    samples = _attendant_prompt(s.svc, att.prompt)
    for _ in range(3):
        yield from s.call.play("attendant", samples)
        key = yield from s.call.wait_key(att.timeout_seconds)
        if key is None:
            target = att.default
        else:
            target = att.options.get(key)     # "*" logs in only where the table says so
        if target is not None:
            break
        s.flush_keys()
        yield from s.say("invalid")
    else:
        target = att.default
    if target == "login":
        yield from login(s)
    else:
        yield from leave_message(s.for_box(target))


def _attendant_prompt(svc, prompt: str) -> array:
    if "/" in prompt or prompt.endswith(".wav"):
        from linebox.wavfile import read_wav
        return read_wav(Path(prompt))
    return _prompts(svc, None).clip(prompt)


# -- login and the mailbox ---------------------------------------------------------

def login(s: Session) -> Flow:
    """Box number (``s.box``, else asked for) and PIN, three tries; then the mailbox.

    A box number that is not a box (or whose remote login is off) still gets the PIN
    prompt and the same refusal, so a caller cannot tell real boxes from others, and
    its digits are never published (they may be a PIN typed at the wrong prompt). A
    locked box sounds the same as a wrong PIN too (only a real box can be locked, so
    saying "locked" would tell a caller trying numbers that this one exists); the
    owner learns of the lock by e-mail and MQTT (``box_locked``)."""
    store, call = s.store, s.call
    typed = s.box is None
    for _ in range(PIN_TRIES):
        number = s.box
        if number is None:
            yield from s.say("box_number")
            number = yield from call.collect(8)
        cfg = s.config.boxes.get(number)
        real = cfg is not None and cfg.remote_login
        shown = s.for_box(number if real else None)     # an unknown box: no name, no language
        # A typed box number gets its PIN prompt and refusal in the language the caller
        # already hears: the box's own language (a German box among English ones) would
        # tell that the number is a box. Its language starts with the mailbox.
        asks = s if typed else shown
        if real and not cfg.pin_required and not store.is_locked(number):
            result = "ok"
        else:
            yield from asks.say("pin")
            pin = yield from call.collect(10)
            result = store.check_pin(number, pin, "phone") if real else "wrong"
        if result != "ok":
            if result == "locked":
                call.publish("login", box=number, ok=False, reason="locked")
            else:
                call.publish("login", box=shown.box, ok=False)
            yield from asks.say("login_incorrect")
            continue
        store.login_ok(number)
        call.publish("login", box=number, ok=True)
        yield from mailbox(shown)
        return
    yield from s.say("goodbye", interruptible=False)


def mailbox(s: Session) -> Flow:
    """Counts, then the main menu: 1 listen, 0 options, # goodbye."""
    c = s.store.counts(s.box)
    yield from s.say("counts", s.prompts().counts(c["new"], c["saved"]))
    if s.store.greeting_path(s.box, "temporary") is not None:
        yield from s.say("temporary_active")     # as Asterisk reminds the owner
    while True:
        key = yield from s.menu("menu", "10#")
        if key == "1":
            yield from listen(s)
        elif key == "0":
            yield from options(s)
        else:
            break
    yield from s.say("goodbye", interruptible=False)


def _listening_order(store, box: str) -> list[dict]:
    new = store.messages(box, ["new"])
    old = store.messages(box, ["heard", "saved"])
    return new + old


def listen(s: Session) -> Flow:
    """Messages, new first then saved, with the message keys during and after each."""
    store, call, box = s.store, s.call, s.box
    p = s.prompts()
    msgs = _listening_order(store, box)
    if not msgs:
        yield from s.say("no_messages")
        return
    i = 0
    replay = True
    while 0 <= i < len(msgs):
        m = msgs[i]
        key = None
        if replay:
            yield from s.say("message_number", p.message_intro(i + 1))
            key = call.take_key()
            if key is None:
                key = yield from play_message(s, m)
        replay = True
        if key is None:
            key = yield from s.menu("message_menu", "3456790#*", tries=2)
            if key is None:
                i += 1
                continue
        if key == "4":
            i = max(0, i - 1)
        elif key == "5":
            pass
        elif key == "6":
            i += 1
        elif key == "7":
            store.delete(m["id"])
            yield from s.say("message_deleted")
            i += 1
        elif key == "9":
            store.set_state(m["id"], "saved")
            yield from s.say("message_saved")
            i += 1
        elif key == "3":
            yield from s.say("envelope", p.envelope(m.get("caller_number"),
                                                   _local(s.svc, m["received"])))
            replay = False
        elif key in "#*0":
            return
    yield from s.say("no_more_messages")


def _local(svc: Services, received: str) -> datetime:
    """A message's time as the office reads its clock: in [device] timezone (else the
    system's local time)."""
    import zoneinfo
    tz = svc.config.device.timezone
    when = datetime.fromisoformat(received)
    return when.astimezone(zoneinfo.ZoneInfo(tz) if tz else None)


def play_message(s: Session, m: dict) -> Flow:
    """Play one message; it counts as heard once playback starts (where that cannot be
    written, it plays all the same: the store reports a disk fault). Returns the key
    that stopped it, if any."""
    from linebox.wavfile import read_wav
    store, call = s.store, s.call
    try:
        samples = read_wav(m["file"])
    except LineboxError as e:
        log.error("message %s unreadable: %s", m["id"], e)
        samples = array("h")
    if m["state"] == "new" and store.mark_heard(m["id"]):
        m["state"] = "heard"
    call.publish("message_played", id=m["id"])
    call.set_state("playing")
    try:
        yield from call.play("message", samples)
    finally:
        call.set_state("answered")
    return call.take_key()


def options(s: Session) -> Flow:
    """Mailbox options: 1 greeting, 2 PIN, 3 undelete, 4 temporary greeting, 5 name, # back."""
    while True:
        key = yield from s.menu("options", "12345#")
        if key == "1":
            yield from record_greeting(s)
        elif key == "2":
            yield from change_pin(s)
        elif key == "3":
            msg = s.store.undelete_last(s.box)
            yield from s.say("message_restored" if msg else "nothing_to_restore")
        elif key == "4":
            yield from temporary_greeting(s)
        elif key == "5":
            yield from record_greeting(s, "name")
        else:
            return


_RECORD_PROMPTS = {"unavailable": "record_greeting", "temporary": "record_temporary",
                   "name": "record_name"}


def record_greeting(s: Session, kind: str = "unavailable") -> Flow:
    """Record a greeting of ``kind`` after the beep; # or silence ends it."""
    yield from s.say(_RECORD_PROMPTS[kind])
    yield from s.say("beep", interruptible=False)
    s.flush_keys()
    if kind == "name":
        take = yield from hear_caller(s.call, NAME_MAX_SECONDS, NAME_SILENCE_END)
        enough = take.voice_seconds >= 0.3
    else:
        take = yield from hear_caller(s.call, GREETING_MAX_SECONDS, GREETING_SILENCE_END)
        enough = take.voice_seconds >= MIN_VOICE_SECONDS
    if not enough:
        yield from s.say("invalid")
        return
    s.store.set_greeting(s.box, take.samples[:take.keep], kind)
    yield from s.say("greeting_saved")


def temporary_greeting(s: Session) -> Flow:
    """Asterisk's temporary greeting: recorded at once, or, when there is one,
    1 record a new one, 2 remove it."""
    if s.store.greeting_path(s.box, "temporary") is None:
        yield from record_greeting(s, "temporary")
        return
    key = yield from s.menu("temporary_menu", "12#", tries=2)
    if key == "1":
        yield from record_greeting(s, "temporary")
    elif key == "2":
        s.store.clear_greeting(s.box, "temporary")
        yield from s.say("temporary_removed")


def change_pin(s: Session) -> Flow:
    """Option 2: the new PIN twice; refused when it is too easy to guess."""
    yield from s.say("new_pin")
    first = yield from s.call.collect(10)
    if pin_problem(first, s.box) is not None:     # not 4-10 digits, or too easy to guess
        yield from s.say("pin_invalid")
        return
    yield from s.say("new_pin_again")
    second = yield from s.call.collect(10)
    if second != first:
        yield from s.say("pins_differ")
        return
    s.store.set_pin(s.box, first)
    yield from s.say("pin_changed")
