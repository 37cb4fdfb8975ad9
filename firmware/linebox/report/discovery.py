"""Home Assistant MQTT discovery: the whole appliance as one device, in one retained
message (the device-based format of Home Assistant 2024.11 and later).

Topic ``homeassistant/device/<device id>/config``. The payload names the device
(``dev``: name, model, firmware, serial and hardware version when the board tells them,
and ``configuration_url``, the web portal, when one is configured), this firmware as
origin (``o``), the availability topic (``<base>/status``, ``online``/``offline``) and one
component per entity (``cmps``):

- per box: sensors ``box_<n>_new`` (new messages) and ``box_<n>_saved`` (old messages:
  heard or saved, what the owner listened to already), a binary sensor ``box_<n>_waiting``
  (new messages waiting), a problem binary sensor ``box_<n>_full``, a timestamp sensor
  ``box_<n>_last_message`` (caller, length, line and, later, ``transcript`` as attributes)
  and a button ``box_<n>_mark_heard``;
- per line: an enum sensor ``line_<id>_state``, a sensor ``line_<id>_caller`` (the
  incoming caller while it rings, for an automation that announces who is calling), a
  counter ``line_<id>_missed_calls``, a problem binary sensor ``line_<id>_fault``, and in
  ``entity_category: config`` a switch ``line_<id>_answering`` and a number
  ``line_<id>_rings`` (1..20);
- per configured SIP extension: a connectivity binary sensor ``extension_<n>_registered``;
- one event entity ``events`` fed by ``<base>/event``, its event types the contract's.

Button, switch and number are left out when commands are off (``[mqtt] commands =
false``). Each component carries a ``unique_id``, a ``default_entity_id`` such as
``sensor.linebox_office_box_100_new`` and the same ``object_id`` (Home Assistant before
2025.10 reads only that one). The reporter republishes this when Home Assistant
announces itself on ``homeassistant/status`` (``online``).
"""

import json
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path

from linebox import __version__
from linebox.config import DeviceConfig
from linebox.linesettings import MAX_RINGS, MIN_RINGS

PREFIX = "homeassistant"
STATUS_TOPIC = f"{PREFIX}/status"
EVENT_TYPES = ("call", "missed_call", "message_saved", "message_heard", "message_deleted",
               "message_retracted", "login_failed", "line_fault", "box_locked")
LINE_STATES = ("idle", "ringing", "answered", "recording", "playing", "fault")
REGISTERED = ("registered", "online", "ON", "up")     # extension_state values that mean up
__all__ = ["MAX_RINGS", "MIN_RINGS", "board", "configured_extensions", "discovery_payload",
           "discovery_topic", "web_url"]


def web_url(cfg) -> str | None:
    """The web portal's address for Home Assistant's "visit device" link, when the
    configuration serves one (see ``portal_url``)."""
    return portal_url(getattr(cfg, "web", None))


def configured_extensions(cfg) -> list[str]:
    """The configured SIP extensions' numbers, if this build has them."""
    out = []
    for ext in getattr(cfg, "extensions", None) or ():
        n = ext if isinstance(ext, str | int) else (
            getattr(ext, "number", None) or getattr(ext, "extension", None)
            or (ext.get("number") if isinstance(ext, dict) else None))
        if n is not None:
            out.append(str(n))
    return out


def discovery_topic(device: DeviceConfig) -> str:
    return f"{PREFIX}/device/{device.id}/config"


def _read(path: str) -> str | None:
    try:
        text = Path(path).read_bytes().replace(b"\0", b"").decode("ascii", "replace").strip()
    except OSError:
        return None
    return text[:64] or None


def board() -> tuple[str | None, str | None]:
    """The board's serial number and model (a Raspberry Pi's device tree), or what the
    host says about itself elsewhere (no serial, the machine type)."""
    serial = _read("/sys/firmware/devicetree/base/serial-number")
    model = _read("/proc/device-tree/model") or (platform.machine() or None)
    return serial, model


def portal_url(web) -> str | None:
    """The web portal's address for ``configuration_url`` (None with the portal off).
    Listening on every address, the host is this machine's name (``<hostname>.local``,
    as mDNS announces it)."""
    import socket

    if web is None or not web.enabled:
        return None
    host = web.host if web.host not in ("0.0.0.0", "::", "") else f"{socket.gethostname()}.local"
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if web.tls_cert else 'http'}://{host}:{web.port}/"


def discovery_payload(device: DeviceConfig, base: str, boxes: Mapping[str, str],
                      lines: Iterable[int], *, commands: bool = True,
                      configuration_url: str | None = None,
                      extensions: Iterable[str] = (),
                      min_rings: Mapping[int, int] | None = None) -> dict:
    """The discovery document. ``base`` is the device's base topic (``linebox/office``),
    ``boxes`` maps box number to box name, ``lines`` are the line ids, ``extensions`` the
    configured SIP extensions (none before the SIP server is configured), ``min_rings``
    the fewest rings each line takes (more than its toll saver)."""
    slug = f"linebox_{device.id.replace('-', '_')}"
    cmps: dict[str, dict] = {}

    def add(key: str, platform: str, name: str, **options) -> None:
        cmps[key] = {"p": platform, "name": name, "unique_id": f"{slug}_{key}",
                     "default_entity_id": f"{platform}.{slug}_{key}",
                     "object_id": f"{slug}_{key}", **options}

    for number, box_name in boxes.items():
        state = f"{base}/box/{number}/state"
        add(f"box_{number}_new", "sensor", f"{box_name} new messages", state_topic=state,
            value_template="{{ value_json.new }}", state_class="measurement",
            icon="mdi:voicemail")
        add(f"box_{number}_saved", "sensor", f"{box_name} old messages (heard or saved)",
            state_topic=state, value_template="{{ value_json.saved }}",
            state_class="measurement", icon="mdi:email-open-outline")
        add(f"box_{number}_waiting", "binary_sensor", f"{box_name} message waiting",
            state_topic=state, value_template="{{ 'ON' if value_json.new > 0 else 'OFF' }}",
            icon="mdi:message-alert")
        add(f"box_{number}_full", "binary_sensor", f"{box_name} full", state_topic=state,
            value_template="{{ 'ON' if value_json.full else 'OFF' }}", device_class="problem")
        last = f"{base}/box/{number}/last_message"
        add(f"box_{number}_last_message", "sensor", f"{box_name} last message",
            state_topic=last, device_class="timestamp",
            # "None" is Home Assistant's word for unknown: a box with no message.
            value_template="{{ value_json.received if value_json.received else None }}",
            json_attributes_topic=last, icon="mdi:message-text-clock")
        if commands:
            add(f"box_{number}_mark_heard", "button", f"{box_name} mark all heard",
                command_topic=f"{base}/cmd/mark_heard",
                payload_press=json.dumps({"box": number}), icon="mdi:email-check")
    for line in lines:
        lt = f"{base}/line/{line}"
        add(f"line_{line}_state", "sensor", f"Line {line}", state_topic=f"{lt}/state",
            device_class="enum", options=list(LINE_STATES), icon="mdi:phone-classic")
        add(f"line_{line}_caller", "sensor", f"Line {line} incoming caller",
            state_topic=f"{lt}/caller", value_template="{{ value_json.display }}",
            json_attributes_topic=f"{lt}/caller", icon="mdi:phone-incoming")
        add(f"line_{line}_missed_calls", "sensor", f"Line {line} missed calls",
            state_topic=f"{lt}/missed_calls", state_class="total_increasing",
            icon="mdi:phone-missed")
        add(f"line_{line}_fault", "binary_sensor", f"Line {line} fault",
            state_topic=f"{lt}/state", device_class="problem",
            value_template="{{ 'ON' if value == 'fault' else 'OFF' }}")
        if commands:
            add(f"line_{line}_answering", "switch", f"Line {line} answering",
                command_topic=f"{base}/cmd/answering",
                payload_on=json.dumps({"line": line, "on": True}),
                payload_off=json.dumps({"line": line, "on": False}),
                state_topic=f"{lt}/answering", state_on="ON", state_off="OFF",
                entity_category="config", icon="mdi:phone-message")
            add(f"line_{line}_rings", "number", f"Line {line} rings before answering",
                command_topic=f"{base}/cmd/rings",
                command_template='{"line": ' + str(line) + ', "rings": {{ value | int }}}',
                state_topic=f"{lt}/rings", min=(min_rings or {}).get(line, MIN_RINGS),
                max=MAX_RINGS, step=1,
                mode="box", entity_category="config", icon="mdi:phone-ring")
    for ext in extensions:
        add(f"extension_{ext}_registered", "binary_sensor", f"Extension {ext} registered",
            state_topic=f"{base}/extension/{ext}/state", device_class="connectivity",
            value_template="{{ 'ON' if value in " + json.dumps(list(REGISTERED))
                           + " else 'OFF' }}")
    add("events", "event", "Events", state_topic=f"{base}/event",
        event_types=list(EVENT_TYPES),
        # The event entity wants JSON with "event_type"; the other fields become attributes.
        value_template="{{ dict(value_json, event_type=value_json.type) | to_json }}",
        icon="mdi:phone-log")

    serial, model = board()
    dev = {"ids": [slug], "name": device.name, "mf": "Linebox",
           "mdl": "Linebox voicemail appliance", "sw": __version__}
    if serial:
        dev["sn"] = serial
    if model:
        dev["hw"] = model
    if configuration_url:
        dev["cu"] = configuration_url
    return {
        "dev": dev,
        "o": {"name": "linebox", "sw": __version__},
        "availability_topic": f"{base}/status",     # shared by every component
        "cmps": cmps,
    }
