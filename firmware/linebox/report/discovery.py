"""Home Assistant MQTT discovery: the whole appliance as one device, in one retained
message (the device-based format of Home Assistant 2024.11 and later).

Topic ``homeassistant/device/<device id>/config``. The payload names the device
(``dev``), this firmware as origin (``o``), the availability topic (``<base>/status``,
``online``/``offline``) and one component per entity (``cmps``):

- per box: sensors ``box_<n>_new`` and ``box_<n>_saved`` (counts), a binary sensor
  ``box_<n>_waiting`` (new messages waiting) and a button ``box_<n>_mark_heard``;
- per line: an enum sensor ``line_<id>_state``, a switch ``line_<id>_answering`` and a
  number ``line_<id>_rings`` (1..20);
- one event entity ``events`` fed by ``<base>/event``, its event types the contract's.

Each component carries a ``unique_id`` and a ``default_entity_id`` such as
``sensor.linebox_office_box_100_new``. The reporter republishes this when Home Assistant
announces itself on ``homeassistant/status`` (``online``).
"""

import json
from collections.abc import Iterable, Mapping

from linebox import __version__
from linebox.config import DeviceConfig

PREFIX = "homeassistant"
STATUS_TOPIC = f"{PREFIX}/status"
EVENT_TYPES = ("call", "missed_call", "message_saved", "message_heard", "message_deleted",
               "message_retracted", "login_failed", "line_fault")
LINE_STATES = ("idle", "ringing", "answered", "recording", "playing", "fault")
MIN_RINGS, MAX_RINGS = 1, 20


def discovery_topic(device: DeviceConfig) -> str:
    return f"{PREFIX}/device/{device.id}/config"


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
                      lines: Iterable[int], configuration_url: str | None = None) -> dict:
    """The discovery document. ``base`` is the device's base topic (``linebox/office``),
    ``boxes`` maps box number to box name, ``lines`` are the line ids;
    ``configuration_url`` (see ``portal_url``) links the device page to the portal."""
    slug = f"linebox_{device.id.replace('-', '_')}"
    cmps: dict[str, dict] = {}

    def add(key: str, platform: str, name: str, **options) -> None:
        cmps[key] = {"p": platform, "name": name, "unique_id": f"{slug}_{key}",
                     "default_entity_id": f"{platform}.{slug}_{key}", **options}

    for number, box_name in boxes.items():
        state = f"{base}/box/{number}/state"
        add(f"box_{number}_new", "sensor", f"{box_name} new messages", state_topic=state,
            value_template="{{ value_json.new }}", state_class="measurement",
            icon="mdi:voicemail")
        add(f"box_{number}_saved", "sensor", f"{box_name} saved messages", state_topic=state,
            value_template="{{ value_json.saved }}", state_class="measurement",
            icon="mdi:email-open-outline")
        add(f"box_{number}_waiting", "binary_sensor", f"{box_name} message waiting",
            state_topic=state, value_template="{{ 'ON' if value_json.new > 0 else 'OFF' }}",
            icon="mdi:message-alert")
        add(f"box_{number}_mark_heard", "button", f"{box_name} mark all heard",
            command_topic=f"{base}/cmd/mark_heard",
            payload_press=json.dumps({"box": number}), icon="mdi:email-check")
    for line in lines:
        add(f"line_{line}_state", "sensor", f"Line {line}", state_topic=f"{base}/line/{line}/state",
            device_class="enum", options=list(LINE_STATES), icon="mdi:phone-classic")
        add(f"line_{line}_answering", "switch", f"Line {line} answering",
            command_topic=f"{base}/cmd/answering",
            payload_on=json.dumps({"line": line, "on": True}),
            payload_off=json.dumps({"line": line, "on": False}),
            state_topic=f"{base}/line/{line}/answering", state_on="ON", state_off="OFF",
            icon="mdi:phone-message")
        add(f"line_{line}_rings", "number", f"Line {line} rings before answering",
            command_topic=f"{base}/cmd/rings",
            command_template='{"line": ' + str(line) + ', "rings": {{ value | int }}}',
            state_topic=f"{base}/line/{line}/rings", min=MIN_RINGS, max=MAX_RINGS, step=1,
            mode="box", icon="mdi:phone-ring")
    add("events", "event", "Events", state_topic=f"{base}/event",
        event_types=list(EVENT_TYPES),
        # The event entity wants JSON with "event_type"; the other fields become attributes.
        value_template="{{ dict(value_json, event_type=value_json.type) | to_json }}",
        icon="mdi:phone-log")

    dev = {"ids": [slug], "name": device.name, "mf": "Linebox",
           "mdl": "Linebox voicemail appliance", "sw": __version__}
    if configuration_url:
        dev["cu"] = configuration_url              # configuration_url: "Visit" on the device page
    return {
        "dev": dev,
        "o": {"name": "linebox", "sw": __version__},
        "availability_topic": f"{base}/status",     # shared by every component
        "cmps": cmps,
    }
