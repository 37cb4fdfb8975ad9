"""Scenarios for the simulated exchange: who calls which line, when, and what the caller does.

A scenario is a TOML file (contract §5) read strictly, like the configuration: every
key is read once, unknown keys and bad values are errors that name the call, the step
and the key, e.g. ``scenario: [[call]] #2 steps[3]: unknown step 'sya' (...)``.
Calls and steps are numbered from 1, as a person counts them in the file.

``[[phone]]`` tables are IP phones for the lines' ring groups (the gateway): an
``extension``, ``answer_after`` seconds of ringing (absent: never answers), ``steps``
once answered (``say``, ``silence``, ``dtmf``, ``wait = { seconds = N }``,
``hangup = "bye"``, ``transfer = "NUMBER"``: a blind transfer to an extension or a box)
and ``record`` (a WAV file for what it heard).

Top-level keys besides ``[[call]]``: ``[[callee]]`` (the numbers a line can call out
to, and what each does: answers after some rings and acts out steps, is busy, gives
reorder or SIT, or never answers), ``start`` (the virtual clock's wall time at t=0,
a TOML date-time or an ISO 8601 string; a time without offset is local time),
``echo_return_loss_db`` (hybrid echo of the firmware's own output; ``false`` = none)
and ``line_noise_dbm0`` (steady line noise; ``false`` = none).
"""

import tomllib
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from linebox.errors import LineboxError

STEP_KINDS = ("say", "silence", "dtmf", "wait", "hangup")
HANGUP_HOW = ("busy", "reorder", "dial", "loop", "silent")
WAIT_EVENTS = ("beep", "answer")
ABSENT_REASONS = ("O", "P")       # MDMF: O = unavailable (out of area), P = private

NUMBER_CHARS = frozenset("0123456789+*#")
MAX_NUMBER = 20                   # MDMF calling-number parameter, Bell and ETSI
MAX_NAME = 50                     # ETSI allows 50; Bell exchanges send up to 15
MAX_RINGS = 100
CALLEE_RESULTS = ("answer", "busy", "reorder", "sit", "no_answer")
# What a callee can do once it answered: no prompts to wait for on the far end.
CALLEE_STEPS = ("say", "silence", "dtmf", "wait", "hangup")
MAX_SECONDS = 24 * 3600.0         # one virtual day for a step: anything longer is a typo
# Calls may be weeks apart: retention (heard -> trash -> purged) plays out over days.
MAX_GAP_SECONDS = 400 * 24 * 3600.0


class ScenarioError(LineboxError):
    """A scenario file we cannot use; the message is one line naming the place."""

    def __init__(self, problem: str):
        super().__init__(f"scenario: {problem}")


@dataclass(frozen=True)
class CallerSpec:
    """The caller's identity as the exchange sends it in caller ID (MDMF)."""

    number: str | None = None
    name: str | None = None
    number_absent: str | None = None   # "O" or "P": why no number is sent
    name_absent: str | None = None     # "O" or "P": why no name is sent


@dataclass(frozen=True)
class Wait:
    """The caller waits: for the answer, the end of the beep, a prompt's start, or a time."""

    until: str                  # "answer" | "beep" | "prompt" | "seconds"
    prompt: str | None = None   # the prompt name, for until == "prompt"
    seconds: float = 0.0        # for until == "seconds"


@dataclass(frozen=True)
class Say:
    """The caller speaks: the samples of a WAV file (as 8 kHz mono), read at load."""

    path: Path
    audio: array = field(default_factory=lambda: array("h"), compare=False, repr=False)


@dataclass(frozen=True)
class Silence:
    """The caller stays quiet for ``seconds``."""

    seconds: float


@dataclass(frozen=True)
class Dtmf:
    """The caller presses keys: each ``on`` seconds of tone then ``off`` seconds of quiet.

    ``level`` is the high-group tone's level in dBm0; the low group is 2 dB lower,
    as telephones send it (default -5 / -7 dBm0).
    """

    digits: str
    on: float = 0.08
    off: float = 0.08
    level: float = -5.0


@dataclass(frozen=True)
class Hangup:
    """The caller hangs up; ``how`` is what the line does next (busy, reorder, dial, loop, silent)."""

    how: str


@dataclass(frozen=True)
class Transfer:
    """The phone blind-transfers the call (REFER) to an extension or a box."""

    to: str


Step = Wait | Say | Silence | Dtmf | Hangup | Transfer
PHONE_STEP_KINDS = ("say", "silence", "dtmf", "wait", "hangup", "transfer")


@dataclass(frozen=True)
class PhoneSpec:
    """One ``[[phone]]``: an IP phone of an extension, as the ring groups ring it."""

    index: int
    extension: str
    answer_after: float | None          # seconds of ringing; None: never answers
    steps: tuple[Step, ...]
    record: Path | None = None


@dataclass(frozen=True)
class CallSpec:
    """One ``[[call]]``: a caller dialling a line at a time, then acting out ``steps``."""

    index: int                          # 1-based, in file order
    line: int
    after: float | None                 # seconds after the previous call ended, or
    at: float | None                    # seconds from the start
    caller: CallerSpec | None
    give_up_after_rings: int
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class CalleeSpec:
    """One ``[[callee]]``: a number the exchange connects an outgoing call to.

    ``result`` is what the caller hears after dialling it: ``answer`` (ringback for
    ``answer_after_rings`` rings, then the callee acts out ``steps`` and what it hears
    is recorded), ``busy``, ``reorder``, ``sit`` (the plan's tone), ``no_answer``
    (ringback until the caller gives up)."""

    index: int                          # 1-based, in file order
    number: str
    result: str = "answer"
    answer_after_rings: int = 2
    steps: tuple[Step, ...] = ()
    record: Path | None = None          # a WAV file for what it heard (each call in turn)


@dataclass(frozen=True)
class DialSpec:
    """One ``[[dial]]``: an IP phone of ``extension`` dials ``number`` at ``at`` seconds
    (a call out through a line, as the gateway places it), then acts out ``steps`` once
    the call is answered, recording what it hears to ``record``."""

    index: int
    extension: str
    number: str
    at: float
    steps: tuple[Step, ...] = ()
    record: Path | None = None


@dataclass(frozen=True)
class Scenario:
    """A whole scenario: the calls in file order and the line's analog imperfections."""

    calls: tuple[CallSpec, ...]
    callees: tuple[CalleeSpec, ...] = ()
    echo_return_loss_db: float | None = 24.0
    line_noise_dbm0: float | None = -70.0
    start: datetime | None = None
    phones: tuple[PhoneSpec, ...] = ()
    dials: tuple[DialSpec, ...] = ()

    def lines(self) -> set[int]:
        """The line ids the scenario calls (each must be a ``driver = "sim"`` line)."""
        return {c.line for c in self.calls}

    def callee(self, number: str) -> CalleeSpec | None:
        """The callee with exactly this number, or None."""
        return next((c for c in self.callees if c.number == number), None)


# ---------------------------------------------------------------- loading

def load_scenario(path) -> Scenario:
    """Read and check a scenario file; errors are one-line ScenarioErrors."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ScenarioError(f"{p}: no such file") from None
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError(f"{p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: not valid TOML: {e}") from None
    return parse_scenario(data, p.resolve().parent, str(p))


def parse_scenario(data: dict, base_dir: Path, source: str = "<scenario>") -> Scenario:
    """Check a parsed scenario; ``say`` paths are relative to ``base_dir``."""
    _no_unknown(data, {"call", "callee", "dial", "start", "echo_return_loss_db",
                       "line_noise_dbm0", "phone"}, "")
    calls = data.get("call")
    callees = data.get("callee", [])
    dials = data.get("dial", [])
    for key, v in (("callee", callees), ("dial", dials)):
        if not isinstance(v, list) or not all(isinstance(c, dict) for c in v):
            raise ScenarioError(f"key {key!r}: must be an array of tables [[{key}]]")
    if calls is None and not callees and not dials:
        raise ScenarioError(f"{source}: no [[call]]: nothing to simulate")
    calls = [] if calls is None else calls
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        raise ScenarioError("key 'call': must be an array of tables [[call]]")
    if not calls and not callees and not dials:
        raise ScenarioError(f"{source}: no [[call]]: nothing to simulate")
    wavs: dict[Path, object] = {}
    parsed_callees = tuple(_callee(i, c, Path(base_dir), wavs) for i, c in enumerate(callees, 1))
    numbers = [c.number for c in parsed_callees]
    for c in parsed_callees:
        if numbers.count(c.number) > 1:
            raise ScenarioError(f"[[callee]] #{c.index} key 'number': \"{c.number}\" is given "
                                "to more than one [[callee]]")
    return Scenario(
        calls=tuple(_call(i, c, Path(base_dir), wavs) for i, c in enumerate(calls, 1)),
        callees=parsed_callees,
        echo_return_loss_db=_optional_level(data, "echo_return_loss_db", 24.0, 0.0, 100.0),
        line_noise_dbm0=_optional_level(data, "line_noise_dbm0", -70.0, -120.0, -20.0),
        start=_start(data.get("start")),
        phones=_phones(data.get("phone", []), Path(base_dir), wavs),
        dials=tuple(_dial(i, d, Path(base_dir), wavs) for i, d in enumerate(dials, 1)),
    )


def _phones(v, base_dir: Path, wavs: dict) -> tuple[PhoneSpec, ...]:
    if not isinstance(v, list) or not all(isinstance(p, dict) for p in v):
        raise ScenarioError("key 'phone': must be an array of tables [[phone]]")
    out: list[PhoneSpec] = []
    for i, p in enumerate(v, 1):
        where = f"[[phone]] #{i} "
        _no_unknown(p, {"extension", "answer_after", "steps", "record"}, where)
        ext = p.get("extension")
        if not isinstance(ext, str) or not ext.isdigit() or not 2 <= len(ext) <= 8:
            raise ScenarioError(f"{where}key 'extension': must be 2 to 8 digits in quotes, like \"201\"")
        if any(o.extension == ext for o in out):
            raise ScenarioError(f"{where}key 'extension': {ext} is already a [[phone]]")
        after = p.get("answer_after")
        if after is not None:
            after = _seconds(after, f"{where}key 'answer_after'")
        steps = p.get("steps", [])
        if not isinstance(steps, list):
            raise ScenarioError(f"{where}key 'steps': must be an array of steps")
        record = p.get("record")
        if record is not None and (not isinstance(record, str) or not record):
            raise ScenarioError(f"{where}key 'record': must be the path of a WAV file to write")
        out.append(PhoneSpec(
            index=i, extension=ext, answer_after=after,
            steps=tuple(_phone_step(s, f"{where}steps[{j}]: ", base_dir, wavs)
                        for j, s in enumerate(steps, 1)),
            record=(base_dir / record).resolve() if record else None))
    return tuple(out)


def _dial(index: int, d: dict, base_dir: Path, wavs: dict) -> DialSpec:
    where = f"[[dial]] #{index} "
    _no_unknown(d, {"extension", "number", "at", "steps", "record"}, where)
    ext = d.get("extension")
    if not isinstance(ext, str) or not ext.isdigit() or not 2 <= len(ext) <= 8:
        raise ScenarioError(f"{where}key 'extension': must be 2 to 8 digits in quotes, like \"201\"")
    number = d.get("number")
    if (not isinstance(number, str) or not 1 <= len(number) <= MAX_CALLEE_NUMBER + 4
            or not set(number) <= set("0123456789*#")):
        raise ScenarioError(f"{where}key 'number': must be what the phone dials, 0-9 * # in "
                            "quotes, like \"95551234\"")
    at = _seconds(d.get("at", 0), f"{where}key 'at'", limit=MAX_GAP_SECONDS)
    steps = d.get("steps", [])
    if not isinstance(steps, list):
        raise ScenarioError(f"{where}key 'steps': must be an array of steps")
    parsed = tuple(_phone_step(s, f"{where}steps[{j}]: ", base_dir, wavs)
                   for j, s in enumerate(steps, 1))
    if any(isinstance(s, Transfer) for s in parsed):
        raise ScenarioError(f"{where}steps: a phone calling out cannot transfer")
    record = d.get("record")
    if record is not None and (not isinstance(record, str) or not record):
        raise ScenarioError(f"{where}key 'record': must be the path of a WAV file to write")
    return DialSpec(index=index, extension=ext, number=number, at=at, steps=parsed,
                    record=(base_dir / record).resolve() if record else None)


def _phone_step(s, where: str, base_dir: Path, wavs: dict) -> Step:
    if not isinstance(s, dict) or len(s) < 1:
        raise ScenarioError(f"{where}must be a table, e.g. {{ say = \"hello.wav\" }}")
    kind = next(iter(s))
    if kind not in PHONE_STEP_KINDS:
        raise ScenarioError(f"{where}unknown step {kind!r} ({', '.join(PHONE_STEP_KINDS)})")
    if kind == "hangup":
        _no_unknown(s, {"hangup"}, where)
        if s["hangup"] != "bye":
            raise ScenarioError(f"{where}hangup: a phone hangs up with \"bye\"")
        return Hangup("bye")
    if kind == "transfer":
        _no_unknown(s, {"transfer"}, where)
        to = s["transfer"]
        if not isinstance(to, str) or not to.isdigit():
            raise ScenarioError(f"{where}transfer: must be an extension or box number in quotes")
        return Transfer(to)
    step = _step(s, where, base_dir, wavs)
    if isinstance(step, Wait) and step.until != "seconds":
        raise ScenarioError(f"{where}wait: a phone waits {{ seconds = N }}")
    return step


def _no_unknown(table: dict, known: set[str], where: str) -> None:
    for key in table:
        if key not in known:
            allowed = ", ".join(sorted(known))
            raise ScenarioError(f"{where}unknown key {key!r} (known: {allowed})")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _optional_level(data: dict, key: str, default: float, lo: float, hi: float) -> float | None:
    v = data.get(key, default)
    if v is False:
        return None
    if not _is_number(v) or not lo <= v <= hi:
        raise ScenarioError(f"key {key!r}: must be a number from {lo:g} to {hi:g}, or false")
    return float(v)


START_YEARS = (1971, 2999)


def _start(v) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v)
        except ValueError:
            raise ScenarioError(f"key 'start': not an ISO 8601 date and time: {v!r}") from None
    if not isinstance(v, datetime):
        raise ScenarioError("key 'start': must be a date and time, e.g. 2024-03-05T09:30:00")
    # Years the clock, the store's ISO times and the caller-ID date can all represent
    # (year 1 overflowed the local time conversion into a traceback).
    if not START_YEARS[0] <= v.year <= START_YEARS[1]:
        raise ScenarioError(f"key 'start': the year must be from {START_YEARS[0]} to "
                            f"{START_YEARS[1]}, not {v.year}")
    # A time without offset is local time; keep its wall-clock fields.
    return v if v.tzinfo else v.astimezone()


def _call(index: int, c: dict, base_dir: Path, wavs: dict) -> CallSpec:
    where = f"[[call]] #{index} "
    _no_unknown(c, {"line", "after", "at", "caller", "give_up_after_rings", "steps"}, where)
    if "line" not in c:
        raise ScenarioError(f"{where}key 'line': missing (which line is called)")
    line = c["line"]
    if not isinstance(line, int) or isinstance(line, bool) or line < 1:
        raise ScenarioError(f"{where}key 'line': must be a positive integer")
    if "after" in c and "at" in c:
        raise ScenarioError(f"{where}keys 'after' and 'at': give one or the other")
    at = _seconds(c["at"], f"{where}key 'at'", limit=MAX_GAP_SECONDS) if "at" in c else None
    after = None if at is not None else _seconds(c.get("after", 0), f"{where}key 'after'",
                                                 limit=MAX_GAP_SECONDS)
    rings = c.get("give_up_after_rings", 10)
    if not isinstance(rings, int) or isinstance(rings, bool) or not 1 <= rings <= MAX_RINGS:
        raise ScenarioError(f"{where}key 'give_up_after_rings': must be an integer from 1 to {MAX_RINGS}")
    steps = c.get("steps", [])
    if not isinstance(steps, list):
        raise ScenarioError(f"{where}key 'steps': must be an array of steps")
    return CallSpec(
        index=index, line=line, after=after, at=at,
        caller=_caller(c["caller"], where) if "caller" in c else None,
        give_up_after_rings=rings,
        steps=tuple(_step(s, f"{where}steps[{i}]: ", base_dir, wavs)
                    for i, s in enumerate(steps, 1)),
    )


MAX_CALLEE_NUMBER = 20           # digits the exchange collects (E.164: at most 15, plus prefixes)


def _callee(index: int, c: dict, base_dir: Path, wavs: dict) -> CalleeSpec:
    where = f"[[callee]] #{index} "
    _no_unknown(c, {"number", "result", "answer_after_rings", "steps", "record"}, where)
    number = c.get("number")
    if number is None:
        raise ScenarioError(f"{where}key 'number': missing (the digits that reach this callee)")
    if (not isinstance(number, str) or not 1 <= len(number) <= MAX_CALLEE_NUMBER
            or not set(number) <= set("0123456789*#")):
        raise ScenarioError(f"{where}key 'number': must be 1 to {MAX_CALLEE_NUMBER} "
                            "characters of 0-9 * #, in quotes")
    result = c.get("result", "answer")
    if result not in CALLEE_RESULTS:
        raise ScenarioError(f"{where}key 'result': must be one of {', '.join(CALLEE_RESULTS)}")
    if result != "answer":
        for key in ("answer_after_rings", "steps", "record"):
            if key in c:
                raise ScenarioError(f"{where}key {key!r}: only with result = \"answer\"")
    rings = c.get("answer_after_rings", 2)
    if not isinstance(rings, int) or isinstance(rings, bool) or not 0 <= rings <= MAX_RINGS:
        raise ScenarioError(f"{where}key 'answer_after_rings': must be an integer from 0 to {MAX_RINGS}")
    steps = c.get("steps", [])
    if not isinstance(steps, list):
        raise ScenarioError(f"{where}key 'steps': must be an array of steps")
    parsed = []
    for i, s in enumerate(steps, 1):
        step = _step(s, f"{where}steps[{i}]: ", base_dir, wavs)
        if isinstance(step, Wait) and step.until != "seconds":
            raise ScenarioError(f"{where}steps[{i}]: wait: a callee can only wait "
                                "{ seconds = N } (it hears no prompts)")
        parsed.append(step)
    record = c.get("record")
    if record is not None and (not isinstance(record, str) or not record):
        raise ScenarioError(f"{where}key 'record': must be the path of a WAV file to write")
    return CalleeSpec(index=index, number=number, result=result, answer_after_rings=rings,
                      steps=tuple(parsed), record=(base_dir / record).resolve() if record else None)


def _seconds(v, what: str, zero_ok: bool = True, limit: float = MAX_SECONDS) -> float:
    ok = _is_number(v) and (v >= 0 if zero_ok else v > 0) and v <= limit
    if not ok:
        kind = "a number of seconds >= 0" if zero_ok else "a number of seconds > 0"
        raise ScenarioError(f"{what}: must be {kind} (at most {limit:.0f})")
    return float(v)


def _caller(v, where: str) -> CallerSpec:
    if not isinstance(v, dict):
        raise ScenarioError(f"{where}key 'caller': must be a table, e.g. {{ number = \"5551234567\" }}")
    _no_unknown(v, {"number", "name", "number_absent", "name_absent"}, f"{where}caller: ")
    number, name = v.get("number"), v.get("name")
    if number is not None and (not isinstance(number, str) or not 1 <= len(number) <= MAX_NUMBER
                               or not set(number) <= NUMBER_CHARS):
        raise ScenarioError(f"{where}caller: key 'number': must be 1 to {MAX_NUMBER} "
                            "characters of 0-9 + * #")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME
                             or not name.isascii() or not name.isprintable()):
        raise ScenarioError(f"{where}caller: key 'name': must be 1 to {MAX_NAME} printable ASCII characters")
    absent = {}
    for key, present in (("number_absent", number), ("name_absent", name)):
        r = v.get(key)
        if r is None:
            continue
        if r not in ABSENT_REASONS:
            raise ScenarioError(f"{where}caller: key {key!r}: must be \"O\" (unavailable) "
                                "or \"P\" (private)")
        if present is not None:
            raise ScenarioError(f"{where}caller: key {key!r}: not with a {key.split('_')[0]}")
        absent[key] = r
    return CallerSpec(number, name, absent.get("number_absent"), absent.get("name_absent"))


def _step(s, where: str, base_dir: Path, wavs: dict) -> Step:
    if not isinstance(s, dict) or not s:
        raise ScenarioError(f"{where}must be a table, e.g. {{ wait = \"beep\" }}")
    kinds = [k for k in s if k in STEP_KINDS]
    if not kinds:
        raise ScenarioError(f"{where}unknown step {next(iter(s))!r} ({', '.join(STEP_KINDS)})")
    if len(kinds) > 1:
        raise ScenarioError(f"{where}one step per table, found {kinds[0]!r} and {kinds[1]!r}")
    kind = kinds[0]
    known = {kind, "on", "off", "level"} if kind == "dtmf" else {kind}
    _no_unknown(s, known, where)
    return _STEP_PARSERS[kind](s, where, base_dir, wavs)


def _wait(s, where, _base, _wavs) -> Wait:
    v = s["wait"]
    if isinstance(v, dict):
        _no_unknown(v, {"seconds"}, f"{where}wait: ")
        if "seconds" not in v:
            raise ScenarioError(f"{where}wait: key 'seconds': missing")
        return Wait("seconds", seconds=_seconds(v["seconds"], f"{where}wait: key 'seconds'"))
    if v in WAIT_EVENTS:
        return Wait(v)
    if isinstance(v, str) and v.startswith("prompt:") and len(v) > len("prompt:"):
        return Wait("prompt", prompt=v[len("prompt:"):])
    raise ScenarioError(f"{where}wait: must be \"beep\", \"answer\", \"prompt:NAME\" "
                        "or { seconds = N }")


def _say(s, where, base_dir: Path, wavs) -> Say:
    from linebox.wavfile import WavError, read_wav

    v = s["say"]
    if not isinstance(v, str) or not v:
        raise ScenarioError(f"{where}say: must be the path of a WAV file")
    path = (base_dir / v).resolve()
    if path not in wavs:
        if not path.is_file():
            raise ScenarioError(f"{where}say: {v}: no such file")
        try:
            wavs[path] = read_wav(path, name=v)
        except WavError as e:
            raise ScenarioError(f"{where}say: {e}") from None
    return Say(path, wavs[path])


def _silence(s, where, _base, _wavs) -> Silence:
    return Silence(_seconds(s["silence"], f"{where}silence"))


def _dtmf(s, where, _base, _wavs) -> Dtmf:
    digits = s["dtmf"]
    if (not isinstance(digits, str) or not digits
            or not set(digits.upper()) <= set("0123456789*#ABCD")):
        raise ScenarioError(f"{where}dtmf: must be a string of keys 0-9 * # A-D")
    on = _seconds(s.get("on", 0.08), f"{where}key 'on'", zero_ok=False)
    off = _seconds(s.get("off", 0.08), f"{where}key 'off'")
    level = s.get("level", -5.0)
    if not _is_number(level) or not -50.0 <= level <= 0.0:
        raise ScenarioError(f"{where}key 'level': must be a number of dBm0 from -50 to 0")
    return Dtmf(digits.upper(), on, off, float(level))


def _hangup(s, where, _base, _wavs) -> Hangup:
    how = s["hangup"]
    if how not in HANGUP_HOW:
        raise ScenarioError(f"{where}hangup: must be one of {', '.join(HANGUP_HOW)}")
    return Hangup(how)


_STEP_PARSERS = {"wait": _wait, "say": _say, "silence": _silence, "dtmf": _dtmf, "hangup": _hangup}
