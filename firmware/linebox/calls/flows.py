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
                yield from attendant(svc, call)
            else:
                yield from leave_message(svc, call, line_cfg.route)
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
                yield from login(svc, call, box)
            else:
                yield from leave_message(svc, call, box)
        except Hangup:
            return
    return flow


# -- helpers -----------------------------------------------------------------

def _prompts(svc, box: str | None):
    cfg = svc.config.boxes.get(box) if box is not None else None
    if cfg is None:
        cfg = next(iter(svc.config.boxes.values()), None)
    lang = cfg.language if cfg is not None else "en"
    voice = (cfg.prompts if cfg is not None else None) or svc.config.device.prompts
    return svc.prompts_for(lang, voice)


def say(svc, call: Call, box: str | None, name: str, clips: list[str] | None = None,
        interruptible: bool = True) -> Flow:
    """Play the prompt ``name`` (or the clips making up a sentence, under that name)."""
    p = _prompts(svc, box)
    samples = p.samples(clips) if clips is not None else p.clip(name)
    return (yield from call.play(name, samples, interruptible))


def menu_key(svc, call: Call, box: str | None, name: str, valid: str, clips=None, tries: int = 3) -> Flow:
    """Play a menu and return a valid key; None after ``tries`` timeouts."""
    for _ in range(tries):
        yield from say(svc, call, box, name, clips)
        while True:
            key = yield from call.wait_key(KEY_TIMEOUT)
            if key is None:
                break
            if key in valid:
                return key
            call.digits.clear()
            yield from say(svc, call, box, "invalid")
            break
    return None


# -- leaving a message ---------------------------------------------------------

def leave_message(svc: Services, call: Call, box: str) -> Flow:
    """Box route: retraction offer, greeting, beep, record, review."""
    store = svc.store
    yield from retract_offer(svc, call, box)
    refused = store.recording_refused(box)        # box_full, or no_space on the disk
    if refused is not None:
        yield from refuse_message(svc, call, box, refused)
        return
    yield from greeting(svc, call, box)
    key = call.take_key()
    if key == "*" and svc.config.boxes[box].remote_login:
        yield from login(svc, call, box)
        return
    call.digits.clear()
    while True:
        # The message is started before the beep: a caller who meets a box that another
        # line filled meanwhile (or a disk that filled) hears why, not a beep then a drop.
        try:
            pending = store.start_recording(box, call.runner.id, call.caller_number,
                                            call.caller_name)
        except (StoreError, OSError) as e:     # OSError: the disk refused the record
            log.warning("line %s: %s", call.runner.id, e)
            yield from refuse_message(svc, call, box,
                                      "box_full" if type(e) is StoreFull else "no_space")
            return
        try:
            yield from say(svc, call, box, "beep", interruptible=False)
        except BaseException:
            pending.discard("hangup")       # gone during the beep: nothing was said
            raise
        rec = yield from record(svc, call, box, pending)
        if rec is None:
            break
        if rec.reason != "key":
            rec.save()
            if rec.reason == "silence":
                call.gone("silence")
            break
        again = yield from review(svc, call, box, rec)
        if not again:
            break
    if call.hangup_cause is None:
        yield from say(svc, call, box, "goodbye", interruptible=False)


def greeting(svc: Services, call: Call, box: str) -> Flow:
    """The temporary greeting if there is one, else the box's own, else the system's."""
    for kind in ("temporary", "unavailable"):
        samples = _recording(svc, box, kind)
        if samples is not None:
            return (yield from call.play("greeting", samples))
    return (yield from call.play("greeting", system_greeting(svc, box)))


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


def refuse_message(svc: Services, call: Call, box: str, reason: str) -> Flow:
    """No message can be left (the box is full, or the disk): say so and hang up."""
    call.publish("record_end", reason="box_full", box=box)
    call.publish("message_discarded", reason=reason, box=box)
    yield from say(svc, call, box, "box_full", interruptible=False)


def retract_offer(svc: Services, call: Call, box: str) -> Flow:
    """A caller who left a message here a few minutes ago may take it back with 7."""
    number = call.caller_number
    if not number:
        return
    window = svc.config.boxes[box].retract_minutes * 60
    msg = svc.store.recent_from(box, number, window)
    if msg is None:
        return
    yield from say(svc, call, box, "retract_offer")
    key = yield from call.wait_key(KEY_TIMEOUT)
    if key == "7":
        svc.store.retract(msg["id"])
        yield from say(svc, call, box, "message_retracted")
    call.digits.clear()


class Recorded:
    """A recording waiting to be saved, reviewed or thrown away."""

    def __init__(self, pending, samples: array, keep: int, reason: str, voiced: float) -> None:
        self.pending = pending
        self.samples = samples
        self.keep = keep
        self.reason = reason
        self.voiced = voiced

    def save(self) -> dict | None:
        return self.pending.finish(self.keep)

    def discard(self, reason: str) -> None:
        self.pending.discard(reason)


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


def record(svc: Services, call: Call, box: str, pending=None) -> Flow:
    """Record a message until hang-up, silence, the box's length limit or ``#``.

    Returns a Recorded, or None when nothing worth keeping was said (discarded here).
    The audio streams to disk as it comes; what is kept ends where the caller stopped
    talking, before any hang-up tone, key or silence.
    """
    limit = svc.config.boxes[box].max_message_seconds
    if pending is None:
        pending = svc.store.start_recording(box, call.runner.id, call.caller_number,
                                            call.caller_name)
    call.publish("record_start", box=box)
    call.set_state("recording")
    try:
        take = yield from hear_caller(call, limit, SILENCE_END_SECONDS, pending.write)
    except GeneratorExit:
        # The call was cut short under us (a line fault, the daemon stopping): keep what
        # reached the disk.
        if not pending.done:
            if pending.samples >= RATE:
                pending.finish(None)
            else:
                pending.discard("line_fault")
        raise
    finally:
        call.set_state("answered")
    call.publish("record_end", reason=take.reason, box=box)
    if take.voice_seconds < MIN_VOICE_SECONDS:
        pending.discard("too_short")
        return None
    return Recorded(pending, take.samples, take.keep, take.reason, take.voice_seconds)


def review(svc: Services, call: Call, box: str, rec: Recorded) -> Flow:
    """After #: 1 listen, 2 re-record, 3 send, * cancel. Hanging up sends.

    Returns True when the caller wants to record again."""
    try:
        for _ in range(3):
            key = yield from menu_key(svc, call, box, "review", "123*", tries=1)
            if key == "1":
                yield from call.play("recording", rec.samples[:rec.keep])
                continue
            if key == "2":
                rec.discard("rerecord")
                return True
            if key == "*":
                rec.discard("cancelled")
                yield from say(svc, call, box, "message_cancelled")
                return False
            if key == "3":
                break
        rec.save()
        yield from say(svc, call, box, "message_sent")
        return False
    except Hangup:
        if not rec.pending.done:
            rec.save()
        raise


# -- the attendant ---------------------------------------------------------------

def attendant(svc: Services, call: Call) -> Flow:
    """Play the attendant prompt; a key routes to a box or to login; none goes to default."""
    att = svc.config.attendant
    samples = _attendant_prompt(svc, att.prompt)
    for _ in range(3):
        yield from call.play("attendant", samples)
        key = yield from call.wait_key(att.timeout_seconds)
        if key is None:
            target = att.default
        else:
            target = att.options.get(key)     # "*" logs in only where the table says so
        if target is not None:
            break
        call.digits.clear()
        yield from say(svc, call, None, "invalid")
    else:
        target = att.default
    if target == "login":
        yield from login(svc, call, None)
    else:
        yield from leave_message(svc, call, target)


def _attendant_prompt(svc, prompt: str) -> array:
    if "/" in prompt or prompt.endswith(".wav"):
        from linebox.wavfile import read_wav
        return read_wav(Path(prompt))
    return _prompts(svc, None).clip(prompt)


# -- login and the mailbox ---------------------------------------------------------

def login(svc: Services, call: Call, box: str | None) -> Flow:
    """Box number (from the attendant) and PIN, three tries; then the mailbox.

    A box number that is not a box (or whose remote login is off) still gets the PIN
    prompt and the same refusal, so a caller cannot tell real boxes from others, and
    its digits are never published (they may be a PIN typed at the wrong prompt). A
    locked box sounds the same as a wrong PIN too (only a real box can be locked, so
    saying "locked" would tell a caller trying numbers that this one exists); the
    owner learns of the lock by e-mail and MQTT (``box_locked``)."""
    store = svc.store
    for _ in range(PIN_TRIES):
        number = box
        if number is None:
            yield from say(svc, call, None, "box_number")
            number = yield from call.collect(8)
        cfg = svc.config.boxes.get(number)
        real = cfg is not None and cfg.remote_login
        shown = number if real else None
        if real and not cfg.pin_required and not store.is_locked(number):
            result = "ok"
        else:
            yield from say(svc, call, shown, "pin")
            pin = yield from call.collect(10)
            result = store.check_pin(number, pin, "phone") if real else "wrong"
        if result != "ok":
            if result == "locked":
                call.publish("login", box=number, ok=False, reason="locked")
            else:
                call.publish("login", box=shown, ok=False)
            yield from say(svc, call, shown, "login_incorrect")
            continue
        store.login_ok(number)
        call.publish("login", box=number, ok=True)
        yield from mailbox(svc, call, number)
        return
    yield from say(svc, call, box, "goodbye", interruptible=False)


def mailbox(svc: Services, call: Call, box: str) -> Flow:
    """Counts, then the main menu: 1 listen, 0 options, # goodbye."""
    p = _prompts(svc, box)
    c = svc.store.counts(box)
    yield from say(svc, call, box, "counts", p.counts(c["new"], c["saved"]))
    if svc.store.greeting_path(box, "temporary") is not None:
        yield from say(svc, call, box, "temporary_active")     # as Asterisk reminds the owner
    while True:
        key = yield from menu_key(svc, call, box, "menu", "10#")
        if key == "1":
            yield from listen(svc, call, box)
        elif key == "0":
            yield from options(svc, call, box)
        else:
            break
    yield from say(svc, call, box, "goodbye", interruptible=False)


def _listening_order(store, box: str) -> list[dict]:
    new = store.messages(box, ["new"])
    old = store.messages(box, ["heard", "saved"])
    return new + old


def listen(svc: Services, call: Call, box: str) -> Flow:
    """Messages, new first then saved, with the message keys during and after each."""
    store = svc.store
    p = _prompts(svc, box)
    msgs = _listening_order(store, box)
    if not msgs:
        yield from say(svc, call, box, "no_messages")
        return
    i = 0
    replay = True
    while 0 <= i < len(msgs):
        m = msgs[i]
        key = None
        if replay:
            yield from say(svc, call, box, "message_number", p.message_intro(i + 1))
            key = call.take_key()
            if key is None:
                key = yield from play_message(svc, call, m)
        replay = True
        if key is None:
            key = yield from menu_key(svc, call, box, "message_menu", "3456790#*", tries=2)
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
            yield from say(svc, call, box, "message_deleted")
            i += 1
        elif key == "9":
            store.set_state(m["id"], "saved")
            yield from say(svc, call, box, "message_saved")
            i += 1
        elif key == "3":
            yield from say(svc, call, box, "envelope", p.envelope(m.get("caller_number"),
                                                                 _local(svc, m["received"])))
            replay = False
        elif key in "#*0":
            return
    yield from say(svc, call, box, "no_more_messages")


def _local(svc: Services, received: str) -> datetime:
    """A message's time as the office reads its clock: in [device] timezone (else the
    system's local time)."""
    import zoneinfo
    tz = svc.config.device.timezone
    when = datetime.fromisoformat(received)
    return when.astimezone(zoneinfo.ZoneInfo(tz) if tz else None)


def play_message(svc: Services, call: Call, m: dict) -> Flow:
    """Play one message; it counts as heard once playback starts (where that cannot be
    written, it plays all the same: the store reports a disk fault). Returns the key
    that stopped it, if any."""
    from linebox.wavfile import read_wav
    store = svc.store
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


def options(svc: Services, call: Call, box: str) -> Flow:
    """Mailbox options: 1 greeting, 2 PIN, 3 undelete, 4 temporary greeting, 5 name, # back."""
    store = svc.store
    while True:
        key = yield from menu_key(svc, call, box, "options", "12345#")
        if key == "1":
            yield from record_greeting(svc, call, box)
        elif key == "2":
            yield from change_pin(svc, call, box)
        elif key == "3":
            msg = store.undelete_last(box)
            yield from say(svc, call, box, "message_restored" if msg else "nothing_to_restore")
        elif key == "4":
            yield from temporary_greeting(svc, call, box)
        elif key == "5":
            yield from record_greeting(svc, call, box, "name")
        else:
            return


_RECORD_PROMPTS = {"unavailable": "record_greeting", "temporary": "record_temporary",
                   "name": "record_name"}


def record_greeting(svc: Services, call: Call, box: str, kind: str = "unavailable") -> Flow:
    """Record a greeting of ``kind`` after the beep; # or silence ends it."""
    yield from say(svc, call, box, _RECORD_PROMPTS[kind])
    yield from say(svc, call, box, "beep", interruptible=False)
    call.digits.clear()
    if kind == "name":
        take = yield from hear_caller(call, NAME_MAX_SECONDS, NAME_SILENCE_END)
        enough = take.voice_seconds >= 0.3
    else:
        take = yield from hear_caller(call, GREETING_MAX_SECONDS, GREETING_SILENCE_END)
        enough = take.voice_seconds >= MIN_VOICE_SECONDS
    if not enough:
        yield from say(svc, call, box, "invalid")
        return
    svc.store.set_greeting(box, take.samples[:take.keep], kind)
    yield from say(svc, call, box, "greeting_saved")


def temporary_greeting(svc: Services, call: Call, box: str) -> Flow:
    """Asterisk's temporary greeting: recorded at once, or, when there is one,
    1 record a new one, 2 remove it."""
    if svc.store.greeting_path(box, "temporary") is None:
        yield from record_greeting(svc, call, box, "temporary")
        return
    key = yield from menu_key(svc, call, box, "temporary_menu", "12#", tries=2)
    if key == "1":
        yield from record_greeting(svc, call, box, "temporary")
    elif key == "2":
        svc.store.clear_greeting(box, "temporary")
        yield from say(svc, call, box, "temporary_removed")


def change_pin(svc: Services, call: Call, box: str) -> Flow:
    yield from say(svc, call, box, "new_pin")
    first = yield from call.collect(10)
    if pin_problem(first, box) is not None:     # not 4-10 digits, or too easy to guess
        yield from say(svc, call, box, "pin_invalid")
        return
    yield from say(svc, call, box, "new_pin_again")
    second = yield from call.collect(10)
    if second != first:
        yield from say(svc, call, box, "pins_differ")
        return
    svc.store.set_pin(box, first)
    yield from say(svc, call, box, "pin_changed")
