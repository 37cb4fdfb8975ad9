"""sd_notify(3) in pure Python: tell systemd we are ready, alive, or stopping.

systemd passes the address of its notification socket in ``$NOTIFY_SOCKET`` (a path,
or an abstract name written with a leading ``@``) to a unit with ``Type=notify``, and
the watchdog period in ``$WATCHDOG_USEC`` when the unit sets ``WatchdogSec=``. Outside
systemd (a shell, the tests, `linebox sim`) the variable is unset and every call here
does nothing and returns False, so callers never need to check where they run.

A notification is one datagram of newline-separated ``KEY=value`` fields. Sending
never raises: a daemon must not die because its supervisor is momentarily unreachable
(systemd itself treats a missing notification as the failure, via the watchdog).
"""

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(env: str) -> str | bytes | None:
    if not env or env[0] not in "/@":
        return None                     # unset, or a vsock address we do not speak
    if env[0] == "@":
        return b"\0" + env[1:].encode()  # Linux abstract namespace
    return env


def notify(*fields: str) -> bool:
    """Send ``fields`` (e.g. ``"READY=1"``, ``"STATUS=..."``) as one datagram to
    ``$NOTIFY_SOCKET``. Returns True when it was sent, False when there is no socket
    or sending failed (logged at debug)."""
    addr = _address(os.environ.get("NOTIFY_SOCKET", ""))
    if addr is None or not fields:
        return False
    payload = "\n".join(fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(payload, addr)
    except OSError as e:
        log.debug("sd_notify %r to %r failed: %s", fields, addr, e)
        return False
    return True


def _one_line(text: str) -> str:
    # A newline would start a new field: systemd would read the rest as KEY=value.
    return " ".join(text.split())


def ready(status_text: str | None = None) -> bool:
    """Start-up finished: systemd marks the unit active (Type=notify)."""
    fields = ["READY=1"]
    if status_text:
        fields.append(f"STATUS={_one_line(status_text)}")
    return notify(*fields)


def status(text: str) -> bool:
    """The one-line status `systemctl status linebox` shows."""
    return notify(f"STATUS={_one_line(text)}")


def watchdog() -> bool:
    """Keep-alive: without one within WatchdogSec systemd kills and restarts us."""
    return notify("WATCHDOG=1")


def stopping(status_text: str | None = None) -> bool:
    """Shutdown has begun (so a slow stop is not mistaken for a hang)."""
    fields = ["STOPPING=1"]
    if status_text:
        fields.append(f"STATUS={_one_line(status_text)}")
    return notify(*fields)


# The order `summary` lists line states in (MQTT's .../line/<id>/state values).
LINE_STATES = ("idle", "ringing", "answered", "recording", "playing")


def summary(line_states: Mapping[int, str], new_by_box: Mapping[str, int]) -> str:
    """The STATUS= text: ``2 lines idle, box 100: 3 new``. Lines in fault are named
    (``line 2 fault``); boxes without new messages are left out."""
    by_state: dict[str, int] = {}
    faults = []
    for line_id, state in sorted(line_states.items()):
        if state == "fault":
            faults.append(f"line {line_id} fault")
        else:
            by_state[state] = by_state.get(state, 0) + 1
    order = [s for s in LINE_STATES if s in by_state] + sorted(set(by_state) - set(LINE_STATES))
    parts = [f"{by_state[s]} line{'' if by_state[s] == 1 else 's'} {s}" for s in order] + faults
    if not line_states:
        parts.append("no lines")
    new = [f"box {box}: {n} new" for box, n in new_by_box.items() if n]
    parts += new or ["no new messages"]
    return ", ".join(parts)


def watchdog_interval() -> float | None:
    """The watchdog period in seconds from ``$WATCHDOG_USEC``, or None when systemd
    does not watch this process (unset, malformed, or ``$WATCHDOG_PID`` names another
    process). Send :func:`watchdog` at about half of it."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        n = int(usec)
    except ValueError:
        return None
    return n / 1_000_000 if n > 0 else None
