"""The configuration file (contract §4): strict TOML read once into frozen dataclasses.

Every table declares its keys; a key or table nobody declared is an error, every value is
read through a typed getter with bounds, and every error is one line naming the table and
the key: ``config: [[box]] #2 key 'max_messages': must be a positive integer``. TOML
``true`` is not the integer 1. Relative paths in the file are relative to the file's
directory.
"""

import json
import math
import re
import tomllib
import unicodedata
import zoneinfo
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from linebox.dsp.plans import PLAN_NAMES
from linebox.errors import LineboxError
from linebox.voicemail.pins import hash_problem, looks_like_pin_hash

DRIVERS = ("fxo", "modem", "sim", "modem-sim")
LANGUAGES = ("en", "de", "fr", "es", "it")
PROMPT_VOICES = ("auto", "espeak")     # auto: Asterisk's human voice where installed
DTMF_KEYS = "0123456789*#"
BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
MAX_GPIO = 27          # BCM GPIO 0..27 on the 40-pin header

MODEM_CHIPSETS = ("usr", "conexant")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TRANSCRIPTION_ENGINES = ("wyoming", "pocketsphinx")

DEFAULT_EMERGENCY = ("911", "112", "999")
_DEVICE_ID = re.compile(r"[a-z0-9_-]+")
_BOX_NUMBER = re.compile(r"[0-9]{2,8}")
_NAME = re.compile(r"[a-z0-9_-]+")             # prompt names
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ADDRESS = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+")
_TOPIC = re.compile(r"[^/#+\s]+(/[^/#+\s]+)*")
MAX_TEXT = 4096                                # characters in any string value
MAX_ID = 64                                    # characters in the device id
MAX_CONFIG_BYTES = 1 << 20                     # a configuration is a few kB
_BREAKS = "\u0085\u2028\u2029"                  # line breaks that are not control characters


class ConfigError(LineboxError):
    """A configuration problem, one line starting ``config: ``."""

    def __init__(self, message: str) -> None:
        message = " ".join(str(message).splitlines())
        if not message.startswith("config: "):
            message = f"config: {message}"
        super().__init__(message)


# Drivers a line key belongs to (``LineConfig`` fields declared with ``_only``).
FXO, MODEM, MODEM_SIM = ("fxo",), ("modem",), ("modem-sim",)
VOICE_MODEM = ("modem", "modem-sim")     # the real modem and the emulated one of `linebox sim`


def _only(drivers: tuple[str, ...], default=None):
    """A ``LineConfig`` field that only lines with one of ``drivers`` may set."""
    return field(default=default, metadata={"drivers": drivers})


@dataclass(frozen=True)
class DeviceConfig:
    """[device]: who this appliance is and where it keeps its data."""

    id: str = "linebox"
    name: str = "Linebox"
    data_dir: Path = Path("/var/lib/linebox")
    status_led_pin: int | None = None
    timezone: str | None = None          # IANA name; None = the system's local time
    prompts: str = "auto"                # "auto" | "espeak": the boxes' default voice


@dataclass(frozen=True)
class LineConfig:
    """One [[line]]: an analog line, its driver and where its calls go."""

    id: int
    driver: str                          # fxo | modem | sim
    plan: str
    rings: int
    toll_saver_rings: int                # 0 = off
    route: str                           # a box number or "attendant"
    answer: bool = True                  # False: let it ring (answering off)
    block: tuple[str, ...] = ()          # callers hung up on: numbers, "prefix*", "withheld"
    schedule: tuple["Hours", ...] = ()   # office hours; outside them rings/answer apply
    # Keys of some drivers only (_only: a key on a line of another driver is an error).
    audio: str | None = _only(FXO)       # ALSA device name
    hook_pin: int | None = _only(FXO)    # BCM numbers
    ring_pin: int | None = _only(FXO)
    loop_pin: int | None = _only(FXO)
    hook_active_high: bool = _only(FXO, True)
    ring_active_low: bool = _only(FXO, True)
    loop_active_low: bool = _only(FXO, True)
    rx_gain_db: float = _only(FXO, 0.0)
    tx_gain_db: float = _only(FXO, 0.0)
    port: str | None = _only(MODEM)
    baud: int = _only(MODEM, 115200)
    flow_control: str = _only(MODEM, "rtscts")      # "rtscts" (hardware) or "none"
    init: str | None = _only(VOICE_MODEM)           # one more AT command after the reset
    duplex: str = _only(VOICE_MODEM, "auto")        # auto | full | half
    chipset: str | None = _only(MODEM_SIM)          # which emulated modem (usr | conexant)
    ring: tuple[str, ...] = ()      # extensions rung together when a call rings (gateway)
    ring_rings: int = 4             # rings they ring before the voicemail route answers
    inbound_uri: str | None = None  # trunk mode: where this line's calls ring (else [sip]'s)


@dataclass(frozen=True)
class Hours:
    """One entry of a line's ``schedule``: on these weekdays, from ``start`` to ``end``
    (device time; an end before the start runs past midnight), answer after ``rings``
    rings, or not at all (``answer`` false: the office picks up itself)."""

    days: frozenset[int]                 # 0 = Monday, as datetime.weekday()
    start: int                           # minutes after midnight
    end: int
    rings: int
    answer: bool = True

    def covers(self, when) -> bool:
        """True if the (aware or local) datetime ``when`` falls in these hours; after
        midnight, an overnight window belongs to the day it started on."""
        minute = when.hour * 60 + when.minute
        day = when.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        return (day in self.days and minute >= self.start) or \
            ((day - 1) % 7 in self.days and minute < self.end)


@dataclass(frozen=True)
class BoxConfig:
    """One [[box]]: a mailbox, its owner's PIN and its limits."""

    number: str
    name: str
    language: str = "en"
    pin_hash: str | None = None
    pin_required: bool = True
    email: tuple[str, ...] = ()          # `email = "a@x"` or `email = ["a@x", "b@x"]`
    email_on_new: bool = False
    email_marks_heard: bool = False      # the lamp goes off once the server took the mail
    email_deletes: bool = False          # ... and the message goes to trash (delete-after-mail)
    led_pin: int | None = None
    max_messages: int = 100
    max_message_seconds: int = 180
    keep_heard_days: float = 30.0
    trash_days: float = 7.0
    retract_minutes: float = 15.0        # 0 = callers cannot retract
    prompts: str | None = None           # "auto" | "espeak"; None = [device] prompts
    remote_login: bool = True            # the owner may log in from a line (* or the attendant)


@dataclass(frozen=True)
class AttendantConfig:
    """[attendant]: a menu played on lines routed to "attendant"."""

    prompt: str                          # prompt name, or absolute path of a WAV file
    options: dict[str, str]              # key -> box number or "login"
    default: str                         # box number, on timeout or no key
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class MqttConfig:
    """[mqtt]: the broker; present = MQTT on."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    base_topic: str = "linebox"
    discovery: bool = True
    keepalive: int = 60
    commands: bool = True                # false: no command is taken over MQTT


@dataclass(frozen=True)
class EmailConfig:
    """[email]: the SMTP server messages are mailed through; present = e-mail on."""

    smtp_host: str
    smtp_port: int                       # default 587, or 465 with tls
    starttls: bool                       # default true, or false with tls
    tls: bool                            # SMTP over TLS from the start
    username: str | None
    password: str | None
    sender: str                          # TOML key `from`
    max_attachment_bytes: int = 10_000_000
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class SipConfig:
    """[sip]: Linebox as the SIP server of the office's IP phones (contract §9)."""

    enabled: bool = True
    host: str = "0.0.0.0"                # UDP and TCP on host:port; RTP on host too
    port: int = 5060
    realm: str = "linebox"
    mode: str = "server"                 # server | trunk
    trunk: "TrunkConfig | None" = None   # mode = "trunk" only


@dataclass(frozen=True)
class TrunkConfig:
    """[sip] mode = "trunk": the PBX Linebox registers to as a gateway (docs/sip.md)."""

    registrar: str                       # sip:HOST[:PORT], where REGISTER goes
    proxy: str                           # sip:HOST[:PORT], where calls go (default: registrar)
    username: str                        # the gateway account at the PBX
    password: str | None                 # one of password / ha1
    ha1: str | None                      # MD5(username:PBX realm:password)
    inbound_uri: str | None              # where an analog call rings (sip:201@pbx); a
                                         # line's own [[line]] inbound_uri comes first
    expires: int = 300                   # the registration's requested lifetime, seconds
    pbx_addresses: tuple[str, ...] = ()  # more addresses the PBX may send calls from
    lines: tuple[int, ...] = ()          # the lines the PBX's calls may go out on (() = all)
    dial: tuple[str, ...] | None = None  # number patterns the PBX may dial out (None = any)
    transport: str = "udp"               # udp | tcp: how registration and calls reach the PBX


@dataclass(frozen=True)
class ExtensionConfig:
    """One [[extension]]: an IP phone allowed to register, and the boxes its lamp shows."""

    number: str
    name: str
    ha1: str                             # MD5(number:realm:password), from linebox sip-password
    mailboxes: tuple[str, ...] = ()
    unsolicited_mwi: bool = False
    lines: tuple[int, ...] = ()          # the analog lines it may call out on
    dial: tuple[str, ...] | None = None  # number patterns it may dial out; None = any


@dataclass(frozen=True)
class GatewayConfig:
    """[gateway]: how the IP phones call out through the analog lines."""

    outbound_prefix: str = "9"           # dialled before the number ("" = none)
    emergency: tuple[str, ...] = DEFAULT_EMERGENCY   # always allowed, on any line


@dataclass(frozen=True)
class TranscriptionConfig:
    """[transcription]: speech to text for saved messages; present and enabled = on."""

    engine: str                          # wyoming | pocketsphinx
    uri: str | None = None               # wyoming: tcp://host:port
    model: Path | None = None            # pocketsphinx: a model folder (default: the wheel's en-us)
    timeout_seconds: float = 60.0        # one attempt
    give_up_hours: float = 24.0          # retried with backoff until then
    email_wait_seconds: float = 60.0     # the new-message e-mail waits this long for the text


@dataclass(frozen=True)
class WebConfig:
    """[web]: the portal served by `linebox run` (see docs/web.md)."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    frame_ancestors: str = "'self'"      # CSP frame-ancestors: who may embed the portal
    session_idle_minutes: float = 30.0


@dataclass(frozen=True)
class Config:
    """The whole configuration file."""

    device: DeviceConfig
    lines: tuple[LineConfig, ...]
    boxes: dict[str, BoxConfig]          # by number, in file order
    attendant: AttendantConfig | None
    mqtt: MqttConfig | None
    email: EmailConfig | None
    source: str
    sip: SipConfig | None = None
    extensions: dict[str, ExtensionConfig] | None = None   # by number
    transcription: TranscriptionConfig | None = None
    web: WebConfig | None = None
    gateway: GatewayConfig = GatewayConfig()

    def line(self, line_id: int) -> LineConfig:
        """The line with this id (KeyError if none)."""
        for line in self.lines:
            if line.id == line_id:
                return line
        raise KeyError(line_id)

    def boxes_for_line(self, line_id: int) -> tuple[BoxConfig, ...]:
        """The boxes a caller on this line can leave a message in, in file order (for the
        toll saver: any of them holding new messages makes the line answer sooner)."""
        route = self.line(line_id).route
        if route != "attendant":
            return (self.boxes[route],)
        assert self.attendant is not None
        wanted = {*self.attendant.options.values(), self.attendant.default}
        return tuple(b for n, b in self.boxes.items() if n in wanted)


# ---------------------------------------------------------------- the keys of each table
# Derived from the dataclasses: a new setting is one field (and its reader). The few TOML
# keys that are not a field's name are spelled out here.

def _keys(cls, rename: dict | None = None, extra: tuple[str, ...] = (),
          drivers: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The TOML keys of ``cls``'s table: its fields in order, ``rename`` mapping a field
    to its key (None: no key of its own), then ``extra``. ``drivers``: only the fields
    declared ``_only(drivers)``."""
    rename = rename or {}
    names = [f.name for f in fields(cls)]
    stale = set(rename) - set(names)
    assert not stale, f"{cls.__name__}: no field {sorted(stale)}"
    keys = [rename.get(f.name, f.name) for f in fields(cls)
            if drivers is None or f.metadata.get("drivers") == drivers]
    return tuple(k for k in keys if k is not None) + extra


DEVICE_KEYS = _keys(DeviceConfig)
FXO_KEYS = _keys(LineConfig, drivers=FXO)
MODEM_KEYS = _keys(LineConfig, drivers=MODEM)
VOICE_MODEM_KEYS = _keys(LineConfig, drivers=VOICE_MODEM)
MODEM_SIM_KEYS = _keys(LineConfig, drivers=MODEM_SIM)
LINE_KEYS = _keys(LineConfig)
SCHEDULE_KEYS = _keys(Hours, {"start": "from", "end": "to"})
BOX_KEYS = _keys(BoxConfig)
ATTENDANT_KEYS = _keys(AttendantConfig)
MQTT_KEYS = _keys(MqttConfig)
WEB_KEYS = _keys(WebConfig, {"host": "listen", "port": None})
# [sip] mode = "trunk": the PBX's keys sit in [sip] itself (gateway/trunk.py).
TRUNK_KEYS = _keys(TrunkConfig)
SIP_KEYS = _keys(SipConfig, {"host": "listen", "port": None, "trunk": None}, extra=TRUNK_KEYS)
EXTENSION_KEYS = _keys(ExtensionConfig)
GATEWAY_KEYS = _keys(GatewayConfig)
EMAIL_KEYS = _keys(EmailConfig, {"sender": "from"})
# [transcription] enabled = false: the table is kept but read as off (no field).
TRANSCRIPTION_KEYS = ("enabled", *_keys(TranscriptionConfig))

# Tables: name -> (keys, is an array of tables)
TABLES = {
    "device": (DEVICE_KEYS, False),
    "line": (LINE_KEYS, True),
    "box": (BOX_KEYS, True),
    "attendant": (ATTENDANT_KEYS, False),
    "mqtt": (MQTT_KEYS, False),
    "email": (EMAIL_KEYS, False),
    "sip": (SIP_KEYS, False),
    "gateway": (GATEWAY_KEYS, False),
    "extension": (EXTENSION_KEYS, True),
    "transcription": (TRANSCRIPTION_KEYS, False),
    "web": (WEB_KEYS, False),
}


# ---------------------------------------------------------------- reading one table

_REQUIRED = object()


def _show(name: str) -> str:
    """A key or table name as TOML would write it: bare if it can be, else quoted
    (escapes keep the message on one line)."""
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name)


def _quoted(key: str) -> str:
    shown = _show(key)
    return f"'{shown}'" if shown == key else shown


class _Table:
    """One TOML table being read: its declared keys and typed getters with bounds."""

    def __init__(self, label: str, data: dict, keys: tuple[str, ...], base_dir: Path):
        self.label = label               # "[mqtt]" or "[[box]] #2"
        self.data = data
        self.keys = keys
        self.base_dir = base_dir
        for key in data:
            if key not in keys:
                raise ConfigError(f"{label}: unknown key {_quoted(key)}")

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.label} key '{key}': {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def get_raw(self, key: str, default=_REQUIRED):
        """The value as TOML gave it, for the few keys with a shape of their own."""
        return self._raw(key, default)[1]

    def _raw(self, key: str, default):
        assert key in self.keys, key
        if key in self.data:
            return True, self.data[key]
        if default is _REQUIRED:
            raise self.error(key, "missing")
        return False, default

    def get_str(self, key, default=_REQUIRED, *, pattern=None, choices=None, must=None,
                max_len=None):
        found, v = self._raw(key, default)
        if not found:
            return v
        if choices is not None:
            if not isinstance(v, str) or v not in choices:
                raise self.error(key, f"must be one of {', '.join(choices)}")
            return v
        if isinstance(v, str):
            self._check_text(key, v, max_len or MAX_TEXT)
        if not isinstance(v, str) or not v.strip() or (pattern and not pattern.fullmatch(v)):
            raise self.error(key, must or "must be a non-empty string")
        return v

    def _check_text(self, key, v: str, max_len: int = MAX_TEXT) -> None:
        """No string may carry what breaks it later: a line break in a mail header
        (every mail fails), a NUL in a path or a topic, a 70,000-character id."""
        if len(v) > max_len:
            raise self.error(key, f"is too long ({len(v)} characters; at most {max_len})")
        if any(c in _BREAKS or unicodedata.category(c) == "Cc" for c in v):
            raise self.error(key, "must not contain control characters or line breaks")

    def get_int(self, key, default=_REQUIRED, *, lo=None, hi=None, must=None):
        found, v = self._raw(key, default)
        if not found:
            return v
        ok = isinstance(v, int) and not isinstance(v, bool)
        if not ok or (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.error(key, must or _int_rule(lo, hi))
        return v

    def get_num(self, key, default=_REQUIRED, *, lo=None, hi=None, lo_open=False):
        found, v = self._raw(key, default)
        if not found:
            return v
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        if ok and lo is not None:
            ok = v > lo if lo_open else v >= lo
        if ok and hi is not None:
            ok = v <= hi
        if not ok:
            raise self.error(key, _num_rule(lo, hi, lo_open))
        return float(v)

    def get_bool(self, key, default=_REQUIRED):
        found, v = self._raw(key, default)
        if found and not isinstance(v, bool):
            raise self.error(key, "must be true or false")
        return v

    def get_pin(self, key, default=None):
        return self.get_int(key, default, lo=0, hi=MAX_GPIO,
                            must=f"must be a BCM GPIO number from 0 to {MAX_GPIO}")

    def get_path(self, key, default=_REQUIRED, *, exists=False, folder=False):
        found, v = self._raw(key, default)
        if not found:
            return v
        if not isinstance(v, str) or not v.strip():
            raise self.error(key, "must be a path")
        self._check_text(key, v)
        p = self.base_dir / v            # an absolute v stays as it is
        if exists and folder and not p.is_dir():
            raise self.error(key, f"no such folder: {p}")
        if exists and not folder and not p.is_file():
            raise self.error(key, f"no such file: {p}")
        return p


def _int_rule(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f"must be an integer from {lo} to {hi}"
    if lo == 1:
        return "must be a positive integer"
    if lo is not None:
        return f"must be an integer of {lo} or more"
    return "must be an integer"


def _num_rule(lo, hi, lo_open) -> str:
    if lo is not None and hi is not None:
        return f"must be a number from {lo} to {hi}"
    if lo == 0:
        return "must be a positive number" if lo_open else "must be a number of 0 or more"
    return "must be a number"


# ---------------------------------------------------------------- the tables


def _read_device(t: _Table) -> DeviceConfig:
    tz = t.get_str("timezone", None, must='must be an IANA time zone name like "Europe/Berlin"')
    if tz is not None:
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise t.error("timezone", f"unknown time zone {tz!r} "
                          '(an IANA name like "Europe/Berlin")') from None
    return DeviceConfig(
        id=t.get_str("id", "linebox", pattern=_DEVICE_ID, max_len=MAX_ID,
                     must="must be lowercase letters, digits, '_' or '-'"),
        name=t.get_str("name", "Linebox"),
        data_dir=t.get_path("data_dir", Path("/var/lib/linebox")),
        status_led_pin=t.get_pin("status_led_pin"),
        timezone=tz,
        prompts=t.get_str("prompts", "auto", choices=PROMPT_VOICES),
    )


BLOCK_PATTERN = re.compile(r"\+?[0-9]{1,20}\*?|withheld")
MAX_BLOCK = 1000


def _read_block(t: _Table) -> tuple[str, ...]:
    """[[line]] block: the callers hung up on (a number, a prefix ending in "*", or
    "withheld" for a caller ID that withholds the number)."""
    raw = t.get_raw("block", [])
    if not isinstance(raw, list) or len(raw) > MAX_BLOCK or \
            not all(isinstance(x, str) and BLOCK_PATTERN.fullmatch(x) for x in raw):
        raise t.error("block", f'must be a list (at most {MAX_BLOCK}) of numbers like "5551234567", '
                      'prefixes like "1900*", or "withheld"')
    return tuple(raw)


def _read_line(t: _Table) -> LineConfig:
    driver = t.get_str("driver", choices=DRIVERS)
    own = {"fxo": FXO_KEYS, "modem": MODEM_KEYS + VOICE_MODEM_KEYS,
           "modem-sim": VOICE_MODEM_KEYS + MODEM_SIM_KEYS}.get(driver, ())
    for key in t.data:
        if key in VOICE_MODEM_KEYS and key not in own:
            raise t.error(key, 'only for driver "modem" or "modem-sim"')
        if key in MODEM_SIM_KEYS and key not in own:
            raise t.error(key, 'only for driver "modem-sim"')
        if key in FXO_KEYS + MODEM_KEYS and key not in own:
            other = "fxo" if key in FXO_KEYS else "modem"
            raise t.error(key, f'only for driver "{other}"')
    rings = t.get_int("rings", 4, lo=1, hi=20)
    toll = t.get_int("toll_saver_rings", 0, lo=0, hi=20)
    if toll and toll >= rings:
        raise t.error("toll_saver_rings", f"must be less than rings ({rings}), or 0 for off")
    route = t.get_str("route", must='must be a box number or "attendant"')
    if route != "attendant" and not _BOX_NUMBER.fullmatch(route):
        raise t.error("route", 'must be a box number or "attendant"')
    line = LineConfig(
        id=t.get_int("id", lo=1), driver=driver, plan=t.get_str("plan", "us", choices=PLAN_NAMES),
        rings=rings, toll_saver_rings=toll, route=route, answer=t.get_bool("answer", True),
        block=_read_block(t), schedule=_read_schedule(t), ring=_read_ring(t),
        ring_rings=t.get_int("ring_rings", 4, lo=1, hi=20),
        inbound_uri=_pbx_uri(t, "inbound_uri", None, user=True),
    )
    if driver == "fxo":
        for key in ("audio", "hook_pin", "ring_pin"):
            if not t.has(key):
                raise t.error(key, 'missing (driver "fxo" needs it)')
        gain = {"lo": -30, "hi": 30}
        line = replace(
            line, audio=t.get_str("audio"), hook_pin=t.get_pin("hook_pin"), ring_pin=t.get_pin("ring_pin"),
            loop_pin=t.get_pin("loop_pin"),
            hook_active_high=t.get_bool("hook_active_high", True),
            ring_active_low=t.get_bool("ring_active_low", True),
            loop_active_low=t.get_bool("loop_active_low", True),
            rx_gain_db=t.get_num("rx_gain_db", 0.0, **gain), tx_gain_db=t.get_num("tx_gain_db", 0.0, **gain))
    elif driver == "modem":
        if not t.has("port"):
            raise t.error("port", 'missing (driver "modem" needs it)')
        line = replace(line, port=t.get_str("port"), baud=t.get_int(
            "baud", 115200, must=f"must be one of {', '.join(map(str, BAUD_RATES))}"),
            flow_control=t.get_str("flow_control", "rtscts", choices=("rtscts", "none")))
        if line.baud not in BAUD_RATES:
            raise t.error("baud", f"must be one of {', '.join(map(str, BAUD_RATES))}")
    if driver == "modem-sim":
        line = replace(line, chipset=t.get_str("chipset", "conexant", choices=MODEM_CHIPSETS))
    if driver in ("modem", "modem-sim"):
        init = t.get_str("init", None, pattern=_INIT_STRING,
                         must='must be one AT command, printable ASCII ("AT!4886=00")')
        line = replace(line, init=init,
                       duplex=t.get_str("duplex", "auto", choices=("auto", "full", "half")))
    return line


def _read_schedule(t: _Table) -> tuple[Hours, ...]:
    """``schedule = [{days = "mon-fri", from = "08:00", to = "17:30", rings = 6}, ...]``:
    the first entry that covers the device's time wins."""
    raw = t.get_raw("schedule", [])
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise t.error("schedule", 'must be a list like [{days = "mon-fri", from = "08:00", '
                                  'to = "17:30", rings = 6}]')
    out = []
    for i, entry in enumerate(raw, 1):
        e = _Table(f"{t.label} schedule #{i}", entry, SCHEDULE_KEYS, t.base_dir)
        answer = e.get_bool("answer", True)
        if answer and not e.has("rings"):
            raise e.error("rings", "missing (or answer = false: not answered in these hours)")
        if not answer and e.has("rings"):
            raise e.error("rings", "not with answer = false")
        start, end = _minutes(e, "from"), _minutes(e, "to")
        if start == end:
            raise e.error("to", "must differ from 'from'")
        out.append(Hours(days=_weekdays(e), start=start, end=end,
                         rings=e.get_int("rings", 0, lo=1, hi=20), answer=answer))
    return tuple(out)


def _minutes(t: _Table, key: str) -> int:
    v = t.get_str(key, must='must be a time like "08:00" (24-hour clock)')
    m = re.fullmatch(r"([01]?[0-9]|2[0-4]):([0-5][0-9])", v)
    if m is None or (m[1] == "24" and m[2] != "00"):
        raise t.error(key, 'must be a time like "08:00" (24-hour clock)')
    return int(m[1]) * 60 + int(m[2])


def _weekdays(t: _Table) -> frozenset[int]:
    """ "mon-fri", "sat,sun", "mon,wed-fri", "fri-mon" (a range may wrap the week)."""
    v = t.get_str("days", must='must be weekdays like "mon-fri" or "sat,sun"')
    days: set[int] = set()
    for part in v.lower().replace(" ", "").split(","):
        a, _, b = part.partition("-")
        if a not in WEEKDAYS or (b and b not in WEEKDAYS):
            raise t.error("days", f'{part!r}: weekdays are {", ".join(WEEKDAYS)}, '
                                  'e.g. "mon-fri" or "sat,sun"')
        i, j = WEEKDAYS.index(a), WEEKDAYS.index(b or a)
        days.update((i + k) % 7 for k in range((j - i) % 7 + 1))
    return frozenset(days)


def _read_emails(t: _Table) -> tuple[str, ...]:
    raw = t.get_raw("email", None)
    if raw is None:
        return ()
    values = raw if isinstance(raw, list) else [raw]
    if not values or not all(isinstance(v, str) and _ADDRESS.fullmatch(v) for v in values):
        raise t.error("email", "must be a list of e-mail addresses like "
                      '["a@example.com", "b@example.com"]' if isinstance(raw, list) else
                      "must be an e-mail address like name@example.com")
    if len(set(values)) != len(values):
        raise t.error("email", "the same address twice")
    return tuple(values)
_INIT_STRING = re.compile(r"(?i)AT[\x20-\x7e]{1,60}")


def _read_box(t: _Table) -> BoxConfig:
    number = t.get_str("number", pattern=_BOX_NUMBER,
                   must='must be a string of 2 to 8 digits, in quotes (number = "100")')
    not_hash = "not a PIN hash (make one with linebox pin-hash)"
    pin_hash = t.get_str("pin_hash", None, must=not_hash)
    if pin_hash is not None and not looks_like_pin_hash(pin_hash):
        raise t.error("pin_hash", not_hash)
    if pin_hash is not None and hash_problem(pin_hash) is not None:
        raise t.error("pin_hash", hash_problem(pin_hash))
    pin_required = t.get_bool("pin_required", True)
    if pin_required and pin_hash is None:
        raise t.error("pin_hash", "missing (pin_required is true; make one with linebox pin-hash)")
    email = _read_emails(t)
    email_on_new = t.get_bool("email_on_new", False)
    if email_on_new and not email:
        raise t.error("email_on_new", "needs 'email', the address to send to")
    after_mail = {k: t.get_bool(k, False) for k in ("email_marks_heard", "email_deletes")}
    for key, on in after_mail.items():
        if on and not email_on_new:
            raise t.error(key, "needs email_on_new = true")
    return BoxConfig(
        number=number, name=t.get_str("name", f"Box {number}"),
        language=t.get_str("language", "en", choices=LANGUAGES),
        pin_hash=pin_hash, pin_required=pin_required, email=email, email_on_new=email_on_new,
        **after_mail,
        led_pin=t.get_pin("led_pin"),
        max_messages=t.get_int("max_messages", 100, lo=1),
        max_message_seconds=t.get_int("max_message_seconds", 180, lo=1, hi=3600),
        keep_heard_days=t.get_num("keep_heard_days", 30.0, lo=0, lo_open=True),
        trash_days=t.get_num("trash_days", 7.0, lo=0, lo_open=True),
        retract_minutes=t.get_num("retract_minutes", 15.0, lo=0),
        prompts=t.get_str("prompts", None, choices=PROMPT_VOICES),
        remote_login=t.get_bool("remote_login", True),
    )


def _read_attendant(t: _Table, boxes: dict[str, BoxConfig]) -> AttendantConfig:
    def box_number(where: str, v, also=()) -> str:
        if not isinstance(v, str) or not (v in also or _BOX_NUMBER.fullmatch(v)):
            rule = 'a box number or "login"' if also else "a box number"
            raise ConfigError(f"{where}must be {rule}")
        if v not in also and v not in boxes:
            raise ConfigError(f'{where}no [[box]] with number "{v}"')
        return v

    prompt = t.get_str("prompt", "attendant")
    if not _NAME.fullmatch(prompt):
        if not prompt.lower().endswith(".wav"):
            raise t.error("prompt", "must be a prompt name or a .wav file")
        prompt = str(t.get_path("prompt", exists=True))
    options = t.get_raw("options")
    if not isinstance(options, dict) or not options:
        raise t.error("options", 'must be a table like { "1" = "101", "*" = "login" }')
    checked = {}
    for key, v in options.items():
        if len(key) != 1 or key not in DTMF_KEYS:
            raise t.error("options", f"{key!r} is not a phone key (0-9, * or #)")
        checked[key] = box_number(f"{t.label} key 'options': '{key}': ", v, also=("login",))
    return AttendantConfig(
        prompt=prompt, options=checked,
        default=box_number(f"{t.label} key 'default': ", t.get_str("default", must="must be a box number")),
        timeout_seconds=t.get_num("timeout_seconds", 5.0, lo=1, hi=60),
    )


def _read_mqtt(t: _Table) -> MqttConfig:
    tls = t.get_bool("tls", False)
    username = t.get_str("username", None)
    password = t.get_str("password", None)
    if password is not None and username is None:
        raise t.error("password", "needs 'username'")
    ca_file = t.get_path("ca_file", None, exists=True)
    if ca_file is not None and not tls:
        raise t.error("ca_file", "needs tls = true")
    return MqttConfig(
        host=t.get_str("host"), port=t.get_int("port", 8883 if tls else 1883, lo=1, hi=65535),
        username=username, password=password, tls=tls, ca_file=ca_file,
        base_topic=t.get_str("base_topic", "linebox", pattern=_TOPIC,
                         must='must be a topic like "linebox" or "home/linebox" '
                              "(no +, #, spaces or empty levels)"),
        discovery=t.get_bool("discovery", True),
        keepalive=t.get_int("keepalive", 60, lo=5, hi=3600),
        commands=t.get_bool("commands", True),
    )


def _read_email(t: _Table) -> EmailConfig:
    tls = t.get_bool("tls", False)
    starttls = t.get_bool("starttls", not tls)
    if tls and starttls:
        raise t.error("starttls", "must be false when tls = true (the connection is TLS from the start)")
    username = t.get_str("username", None)
    password = t.get_str("password", None)
    if (username is None) != (password is None):
        missing, given = ("username", "password") if username is None else ("password", "username")
        raise t.error(given, f"needs '{missing}'")
    sender = t.get_str("from", must="must be an e-mail address like linebox@example.com")
    if not _ADDRESS.fullmatch(sender) and not re.fullmatch(r"[^<>\n]*<[^@\s<>]+@[^@\s<>]+>", sender):
        raise t.error("from", 'must be an e-mail address like linebox@example.com '
                      'or "Linebox <linebox@example.com>"')
    return EmailConfig(
        smtp_host=t.get_str("smtp_host"), sender=sender,
        smtp_port=t.get_int("smtp_port", 465 if tls else 587, lo=1, hi=65535),
        starttls=starttls, tls=tls, username=username, password=password,
        max_attachment_bytes=t.get_int("max_attachment_bytes", 10_000_000, lo=1),
        timeout_seconds=t.get_num("timeout_seconds", 30.0, lo=1, hi=600),
    )


_LISTEN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")
_ANCESTORS = re.compile(r"[A-Za-z0-9*:/.'_ -]+")


def parse_listen(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[v6]:PORT`` too) as (host, port), or None if it is not one."""
    m = _LISTEN.fullmatch(text) if isinstance(text, str) else None
    if m is None or not 1 <= int(m[2]) <= 65535:
        return None
    return m[1].strip("[]"), int(m[2])


def _read_web(t: _Table) -> WebConfig:
    listen = t.get_str("listen", "0.0.0.0:8080", must='must be "HOST:PORT", like "0.0.0.0:8080"')
    hostport = parse_listen(listen)
    if hostport is None:
        raise t.error("listen", 'must be "HOST:PORT", like "0.0.0.0:8080"')
    cert = t.get_path("tls_cert", None, exists=True)
    key = t.get_path("tls_key", None, exists=True)
    if (cert is None) != (key is None):
        raise t.error("tls_key" if key is None else "tls_cert", "tls_cert and tls_key go together")
    return WebConfig(
        enabled=t.get_bool("enabled", True), host=hostport[0], port=hostport[1],
        tls_cert=cert, tls_key=key,
        frame_ancestors=t.get_str("frame_ancestors", "'self'", pattern=_ANCESTORS,
                                  must="must be CSP sources like \"'self' http://homeassistant.local:8123\""),
        session_idle_minutes=t.get_num("session_idle_minutes", 30.0, lo=1, hi=7 * 24 * 60),
    )


_EXTENSION_NUMBER = re.compile(r"[0-9]{2,8}")
_HA1 = re.compile(r"[0-9a-f]{32}")
_REALM = re.compile(r"[A-Za-z0-9._-]{1,64}")


# A PBX's address as trunk settings take it: sip:HOST or sip:HOST:PORT ([sip] transport says how), a user part
# only where a user is meant (inbound_uri).
_PBX_URI = re.compile(r"sip:([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?")
_PBX_USER_URI = re.compile(r"sip:([A-Za-z0-9._~+*#-]+)@([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?")
_SIP_USER = re.compile(r"[A-Za-z0-9._~+-]{1,64}")
_ADDRESS_LITERAL = re.compile(r"[0-9.]{7,15}|[A-Za-z0-9.-]{1,253}")


def _read_sip(t: _Table) -> SipConfig:
    listen = t.get_str("listen", "0.0.0.0:5060", must='must be "HOST:PORT", like "0.0.0.0:5060"')
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535 or not \
            re.fullmatch(r"[0-9.]+|[A-Za-z0-9.-]+", host):
        raise t.error("listen", 'must be "HOST:PORT", like "0.0.0.0:5060"')
    mode = t.get_str("mode", "server", choices=("server", "trunk"))
    trunk = _read_trunk(t) if mode == "trunk" else None
    if trunk is None:
        for key in TRUNK_KEYS:
            if t.has(key):
                raise t.error(key, 'only with mode = "trunk"')
    return SipConfig(enabled=t.get_bool("enabled", True), host=host, port=int(port),
                     realm=t.get_str("realm", "linebox", pattern=_REALM,
                                     must="must be letters, digits, '.', '_' or '-'"),
                     mode=mode, trunk=trunk)


def _pbx_uri(t: _Table, key: str, default=_REQUIRED, user: bool = False) -> str | None:
    pattern = _PBX_USER_URI if user else _PBX_URI
    example = '"sip:201@pbx.example.com"' if user else '"sip:pbx.example.com" or "sip:192.168.1.5:5060"'
    v = t.get_str(key, default, pattern=pattern, must=f"must be a SIP URI like {example}")
    if v is not None:
        port = pattern.fullmatch(v).group(3 if user else 2)
        if port is not None and not 1 <= int(port) <= 65535:
            raise t.error(key, "port must be 1 to 65535")
    return v


def _read_trunk(t: _Table) -> TrunkConfig:
    registrar = _pbx_uri(t, "registrar")
    username = t.get_str("username", pattern=_SIP_USER,
                         must="must be the gateway's account name at the PBX (letters, digits, ._~+-)")
    password = t.get_str("password", None)
    ha1 = t.get_str("ha1", None, pattern=_HA1, must="must be 32 lowercase hex digits "
                    "(MD5 of username:PBX realm:password)")
    if (password is None) == (ha1 is None):
        raise t.error("password", 'mode = "trunk" needs exactly one of password or ha1')
    addresses = t.get_raw("pbx_addresses", [])
    if not isinstance(addresses, list) or not all(isinstance(a, str) and _ADDRESS_LITERAL.fullmatch(a)
                                                  for a in addresses):
        raise t.error("pbx_addresses", 'must be a list of addresses, like ["192.168.1.5"]')
    lines = t.get_raw("lines", [])
    if not isinstance(lines, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in lines):
        raise t.error("lines", "must be a list of line ids, like [1, 2]")
    dial = t.get_raw("dial", None)
    if dial is not None:
        from linebox.gateway.dialrules import PatternError, compile_pattern
        if not isinstance(dial, list) or not all(isinstance(p, str) for p in dial):
            raise t.error("dial", 'must be a list of number patterns, like ["NXXXXXX", "1800."]')
        for p in dial:
            try:
                compile_pattern(p)
            except PatternError as e:
                raise t.error("dial", str(e)) from None
    return TrunkConfig(
        registrar=registrar, proxy=_pbx_uri(t, "proxy", None) or registrar, username=username,
        password=password, ha1=ha1, inbound_uri=_pbx_uri(t, "inbound_uri", None, user=True),
        expires=t.get_int("expires", 300, lo=60, hi=86400), pbx_addresses=tuple(addresses),
        lines=tuple(lines), dial=tuple(dial) if dial is not None else None,
        transport=t.get_str("transport", "udp", choices=("udp", "tcp")))


def read_sip_table(path: str | Path) -> SipConfig | None:
    """Only the [sip] table of the file at ``path`` (for `linebox sip-password`)."""
    source = str(path)
    try:
        data = tomllib.loads(Path(path).read_bytes().decode("utf-8"))
    except OSError as e:
        raise ConfigError(f"{source}: {e.strerror or e}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{source}: {e}") from None
    if not isinstance(data.get("sip"), dict):
        return None
    return _read_sip(_Table("[sip]", data["sip"], SIP_KEYS, _base_dir(source)))


def _read_extension(t: _Table, boxes: dict[str, BoxConfig]) -> ExtensionConfig:
    number = t.get_str("number", pattern=_EXTENSION_NUMBER,
                       must='must be a string of 2 to 8 digits, in quotes (number = "201")')
    if number in boxes:
        raise t.error("number", f'"{number}" is a box number (dialling it leaves a message there)')
    mailboxes = t.get_raw("mailboxes", [])
    if not isinstance(mailboxes, list) or not all(isinstance(b, str) for b in mailboxes):
        raise t.error("mailboxes", 'must be a list of box numbers, like ["100"]')
    for b in mailboxes:
        if b not in boxes:
            raise t.error("mailboxes", f'no [[box]] with number "{b}"')
    lines = t.get_raw("lines", [])
    if not isinstance(lines, list) or not all(isinstance(n, int) and not isinstance(n, bool)
                                              for n in lines):
        raise t.error("lines", "must be a list of line ids, like [1]")
    dial = t.get_raw("dial", None)
    if dial is not None:
        from linebox.gateway.dialrules import PatternError, compile_pattern

        if not isinstance(dial, list) or not all(isinstance(p, str) for p in dial):
            raise t.error("dial", 'must be a list of number patterns, like ["NXXXXXX", "1800."]')
        for p in dial:
            try:
                compile_pattern(p)
            except PatternError as e:
                raise t.error("dial", str(e)) from None
    return ExtensionConfig(
        number=number, name=t.get_str("name", f"Extension {number}"),
        ha1=t.get_str("ha1", pattern=_HA1, must="must be 32 lowercase hex digits "
                      "(make it with linebox sip-password)"),
        mailboxes=tuple(mailboxes), unsolicited_mwi=t.get_bool("unsolicited_mwi", False),
        lines=tuple(lines), dial=tuple(dial) if dial is not None else None)


_DIALLED = re.compile(r"[0-9*#]{1,20}")


def _read_gateway(t: _Table) -> GatewayConfig:
    prefix = t.get_raw("outbound_prefix", "9")
    if not isinstance(prefix, str) or not re.fullmatch(r"[0-9*#]{0,4}", prefix):
        raise t.error("outbound_prefix", 'must be 0 to 4 of 0-9 * # in quotes, like "9" ("" for none)')
    emergency = t.get_raw("emergency", list(DEFAULT_EMERGENCY))
    if not isinstance(emergency, list) or not all(
            isinstance(n, str) and _DIALLED.fullmatch(n) for n in emergency):
        raise t.error("emergency", 'must be a list of numbers in quotes, like ["911", "112"]')
    return GatewayConfig(outbound_prefix=prefix, emergency=tuple(emergency))


def _check_gateway(lines, extension_tables, extensions, boxes, gateway) -> None:
    """Extensions' lines exist and can bridge; the prefix makes no box or star code
    unreachable. A half-duplex voice modem plays or records, never both: it cannot carry
    a conversation (ring groups or calls out)."""
    by_id = {line.id: line for _, line in lines}
    for t, ext in zip(extension_tables, extensions.values(), strict=True):
        for n in ext.lines:
            line = by_id.get(n)
            if line is None:
                raise t.error("lines", f"no [[line]] with id {n}")
            if half_duplex(line):
                raise t.error("lines", f"line {n} is a half-duplex voice modem (duplex = \"half\"): "
                              "it cannot bridge a call; use a full-duplex modem or an FXO line")
    for t, line in lines:
        if half_duplex(line) and getattr(line, "ring", None):
            raise t.error("ring", "a half-duplex voice modem (duplex = \"half\") cannot bridge a "
                          "call to the phones; use a full-duplex modem or an FXO line")
    # Emergency numbers go out before anything else is looked up (47 CFR 9.16, "Kari's
    # law": dialled directly, without the prefix): no box or extension may hide one.
    for number in gateway.emergency:
        if number in boxes:
            raise ConfigError(f"[gateway] key 'emergency': \"{number}\" is a box number; "
                              "an emergency number must always go out")
        if number in extensions:
            raise ConfigError(f"[gateway] key 'emergency': \"{number}\" is an extension number; "
                              "an emergency number must always go out")


def half_duplex(line) -> bool:
    """A voice-modem line configured half duplex (``auto`` is found out at run time)."""
    return line.driver in ("modem", "modem-sim") and line.duplex == "half"


def _read_extensions(tables: list[_Table], boxes) -> dict[str, ExtensionConfig]:
    out: dict[str, ExtensionConfig] = {}
    where: dict[str, str] = {}
    for t in tables:
        ext = _read_extension(t, boxes)
        if ext.number in out:
            raise t.error("number", f'"{ext.number}" is already used by {where[ext.number]}')
        out[ext.number] = ext
        where[ext.number] = t.label
    return out


# ---------------------------------------------------------------- the whole file


def _read_transcription(t: _Table) -> TranscriptionConfig | None:
    if not t.get_bool("enabled", True):
        return None
    engine = t.get_str("engine", choices=TRANSCRIPTION_ENGINES)
    uri = t.get_str("uri", None, pattern=re.compile(r"tcp://[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}"),
                    must='must be like "tcp://192.168.1.20:10300"')
    if engine == "wyoming" and uri is None:
        raise t.error("uri", 'missing (engine "wyoming" needs the server, like "tcp://host:10300")')
    if engine != "wyoming" and uri is not None:
        raise t.error("uri", 'only for engine "wyoming"')
    model = t.get_path("model", None, exists=True, folder=True)
    if model is not None and engine != "pocketsphinx":
        raise t.error("model", 'only for engine "pocketsphinx"')
    return TranscriptionConfig(
        engine=engine, uri=uri, model=model,
        timeout_seconds=t.get_num("timeout_seconds", 60.0, lo=1, hi=3600),
        give_up_hours=t.get_num("give_up_hours", 24.0, lo=0, hi=24 * 30),
        email_wait_seconds=t.get_num("email_wait_seconds", 60.0, lo=0, hi=3600),
    )


def _tables(data: dict, base_dir: Path) -> dict[str, list[_Table]]:
    """Check the file's top level and wrap each table, labelled as errors name it."""
    out: dict[str, list[_Table]] = {name: [] for name in TABLES}
    for name, value in data.items():
        if name not in TABLES:
            if isinstance(value, dict | list):
                raise ConfigError(f"unknown table [{_show(name)}]")
            raise ConfigError(f"unknown key {_quoted(name)} outside any table")
        keys, is_array = TABLES[name]
        if is_array:
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ConfigError(f"[{name}] must be written [[{name}]], one table each")
            out[name] = [_Table(f"[[{name}]] #{i}", v, keys, base_dir)
                         for i, v in enumerate(value, 1)]
        else:
            if not isinstance(value, dict):
                raise ConfigError(f"[[{name}]] must be written [{name}], a single table")
            out[name] = [_Table(f"[{name}]", value, keys, base_dir)]
    return out


def _base_dir(source: str) -> Path:
    return Path.cwd() if source.startswith("<") else Path(source).absolute().parent


def parse_config(data: dict, source: str = "<config>") -> Config:
    """Check a parsed TOML document and build the Config. ``source`` is the file name
    (relative paths in the file are relative to its directory), or ``<...>`` for none."""
    tables = _tables(data, _base_dir(source))
    device = _read_device(tables["device"][0]) if tables["device"] else DeviceConfig()
    sip_on = bool(tables["sip"]) and tables["sip"][0].data.get("enabled", True) is True
    if not tables["line"] and not sip_on:
        raise ConfigError("at least one [[line]] is required")   # or an enabled [sip]: SIP-only
    if not tables["box"]:
        raise ConfigError("at least one [[box]] is required")
    lines = [(t, _read_line(t)) for t in tables["line"]]
    boxes: dict[str, BoxConfig] = {}
    box_tables: dict[str, _Table] = {}
    for t in tables["box"]:
        box = _read_box(t)
        if box.number in boxes:
            raise t.error("number", f'"{box.number}" is already used by {box_tables[box.number].label}')
        boxes[box.number] = box
        box_tables[box.number] = t
    attendant = _read_attendant(tables["attendant"][0], boxes) if tables["attendant"] else None
    mqtt = _read_mqtt(tables["mqtt"][0]) if tables["mqtt"] else None
    email = _read_email(tables["email"][0]) if tables["email"] else None
    transcription = _read_transcription(tables["transcription"][0]) if tables["transcription"] else None
    web = _read_web(tables["web"][0]) if tables["web"] else None

    sip = _read_sip(tables["sip"][0]) if tables["sip"] else None
    extensions = _read_extensions(tables["extension"], boxes)
    if extensions and sip is None:
        raise ConfigError("[[extension]] needs a [sip] table")
    gateway = _read_gateway(tables["gateway"][0]) if tables["gateway"] else GatewayConfig()
    _check_lines(lines, boxes, attendant)
    if extensions and sip is not None and sip.mode == "trunk":
        raise ConfigError('[[extension]]: not in [sip] mode = "trunk" (the phones register to the PBX)')
    if sip is not None and sip.trunk is not None:
        ids = {line.id for _, line in lines}
        for n in sip.trunk.lines:
            if n not in ids:
                raise tables["sip"][0].error("lines", f"no [[line]] with id {n}")
    _check_gateway(lines, tables["extension"], extensions, boxes, gateway)
    _check_ring(lines, extensions, sip)
    _check_inbound_uri(lines, sip, tables["sip"][0] if tables["sip"] else None)
    for number, box in boxes.items():
        if box.email_on_new and email is None:
            raise box_tables[number].error("email_on_new", "needs an [email] table (the SMTP server)")
    _check_pins(device, tables["device"], lines, boxes, box_tables)
    return Config(device=device, lines=tuple(line for _, line in lines), boxes=boxes,
                  attendant=attendant, mqtt=mqtt, email=email, transcription=transcription,
                  source=source, web=web, sip=sip, extensions=extensions, gateway=gateway)


def _read_ring(t: _Table) -> tuple[str, ...]:
    ring = t.get_raw("ring", [])
    if not isinstance(ring, list) or not all(isinstance(n, str) and _EXTENSION_NUMBER.fullmatch(n)
                                             for n in ring):
        raise t.error("ring", 'must be a list of extension numbers, like ["201", "202"]')
    if len(set(ring)) != len(ring):
        raise t.error("ring", "names an extension twice")
    return tuple(ring)


def _check_ring(lines, extensions, sip=None) -> None:
    """Every extension a line rings is an [[extension]]; in trunk mode no line names any
    (every line's calls go to the PBX's inbound_uri)."""
    for t, line in lines:
        if sip is not None and sip.mode == "trunk" and line.ring:
            raise t.error("ring", 'not in [sip] mode = "trunk" (calls go to inbound_uri; the PBX rings its phones)')
        for n in line.ring:
            if n not in (extensions or {}):
                raise t.error("ring", f'no [[extension]] with number "{n}"')


def _check_inbound_uri(lines, sip, sip_table) -> None:
    """Trunk mode: every line rings its own ``inbound_uri`` or [sip]'s; no line names one
    in server mode (its calls ring ``ring``)."""
    trunk = sip.trunk if sip is not None else None
    for t, line in lines:
        if line.inbound_uri is not None and trunk is None:
            raise t.error("inbound_uri", 'only with [sip] mode = "trunk"')
    if trunk is not None and trunk.inbound_uri is None:
        without = [line.id for _, line in lines if line.inbound_uri is None]
        if without or not lines:
            which = (f" (line {without[0]} has no inbound_uri of its own)" if len(without) == 1 else
                     f" (lines {', '.join(map(str, without))} have no inbound_uri of their own)" if without else "")
            raise sip_table.error("inbound_uri", f"missing{which}")


def _check_lines(lines, boxes, attendant) -> None:
    """Line ids, hardware shared between lines, and where each line's calls go."""
    seen: dict[tuple[str, object], str] = {}
    for t, line in lines:
        for key, value in (("id", line.id), ("audio", line.audio), ("port", line.port)):
            if value is None:
                continue
            shown = value if key == "id" else f'"{value}"'
            if (key, value) in seen:
                raise t.error(key, f"{shown} is already used by {seen[key, value]}")
            seen[key, value] = t.label
        if line.route == "attendant":
            if attendant is None:
                raise t.error("route", '"attendant" needs an [attendant] table')
        elif line.route not in boxes:
            raise t.error("route", f'no [[box]] with number "{line.route}"')


def _check_pins(device, device_tables, lines, boxes, box_tables) -> None:
    """No GPIO drives or reads two things."""
    used: dict[int, str] = {}
    uses = []
    if device_tables:
        uses.append((device_tables[0], "status_led_pin", device.status_led_pin))
    for t, line in lines:
        uses += [(t, k, getattr(line, k)) for k in ("hook_pin", "ring_pin", "loop_pin")]
    uses += [(box_tables[n], "led_pin", box.led_pin) for n, box in boxes.items()]
    for t, key, pin in uses:
        if pin is None:
            continue
        if pin in used:
            raise t.error(key, f"GPIO {pin} is already used by {used[pin]}")
        used[pin] = f"{t.label} key '{key}'"


def load_config(path: str | Path, data_dir: str | Path | None = None) -> Config:
    """Read and check the file at ``path``. ``data_dir`` (from ``--data``) overrides
    [device] data_dir."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            blob = f.read(MAX_CONFIG_BYTES + 1)
        if len(blob) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a configuration")
        text = blob.decode("utf-8")
        data = tomllib.loads(text)
    except PermissionError:
        from linebox.access import denied
        raise ConfigError(denied(path, "read")) from None
    except RecursionError:
        raise ConfigError(f"{source}: values nested too deep") from None
    except OSError as e:
        raise ConfigError(f"{source}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        line = e.object[:e.start].count(b"\n") + 1
        raise ConfigError(f"{source}: not UTF-8 text (line {line})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: {e}") from None
    cfg = parse_config(data, source)
    if data_dir is not None:
        data_dir = str(data_dir)
        if not data_dir.strip() or "\0" in data_dir:
            raise ConfigError("--data: must be the path of a folder")
        cfg = replace(cfg, device=replace(cfg.device, data_dir=Path(data_dir).absolute()))
    return cfg


def device_tz(device: DeviceConfig):
    """The zone every time a person sees is shown in: ``[device] timezone``, or the
    system's local zone (None, as ``datetime.astimezone`` takes it)."""
    return zoneinfo.ZoneInfo(device.timezone) if device.timezone else None


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def summary(cfg: Config) -> str:
    """One line: what the configuration turns on."""
    parts = [_count(len(cfg.lines), "line", "lines"), _count(len(cfg.boxes), "box", "boxes")]
    parts += [name for name in ("attendant", "mqtt", "email", "transcription")
              if getattr(cfg, name) is not None]
    if cfg.sip is not None and cfg.sip.enabled and cfg.sip.trunk is not None:
        parts.append(f"sip trunk ({cfg.sip.trunk.username} at {cfg.sip.trunk.registrar})")
    elif cfg.sip is not None and cfg.sip.enabled:
        parts.append(f"sip ({_count(len(cfg.extensions or {}), 'extension', 'extensions')})")
    return ", ".join(parts)


def cmd_check(args) -> int:
    """`linebox config check`: load the file; print a summary, or fail with one line."""
    cfg = load_config(args.config)
    print(f"config OK: {summary(cfg)}")
    return 0
