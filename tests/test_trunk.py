"""[sip] mode = "trunk": Linebox as a gateway behind a real PBX (Debian's Kamailio as
registrar and proxy, tests/kamailiokit.py), and the pieces of it that need no PBX (the
client side of digest, the registration's answers, who may call in)."""

import logging
import socket
import time

import pytest

import kamailiokit
from kamailiokit import Kamailio
from linebox.config import ConfigError, parse_config
from linebox.gateway import trunk as trunk_mod
from linebox.sip.auth import DigestAuth, Verdict
from sipkit import SipDaemon, free_port

GATEWAY, GATEWAY_PASSWORD = "linebox-a", "gw-secret-1"
PHONE, PHONE_PASSWORD = "201", "phone-secret"

needs_kamailio = pytest.mark.skipif(not kamailiokit.available(), reason="kamailio is not installed")


def trunk_config(tmp, port: int, pbx_port: int, password: str = GATEWAY_PASSWORD, user: str = GATEWAY,
                 device: str = "office", extra: str = "", lines: str = "") -> "Path":  # noqa: F821
    data = tmp / f"data-{device}"
    cfg = tmp / f"linebox-{device}.toml"
    cfg.write_text(f"""
[device]
id = "{device}"
data_dir = "{data}"

{lines}

[[box]]
number = "100"
name = "Main office"
pin_required = false

[sip]
listen = "127.0.0.1:{port}"
mode = "trunk"
registrar = "sip:127.0.0.1:{pbx_port}"
username = "{user}"
password = "{password}"
inbound_uri = "sip:{PHONE}@127.0.0.1:{pbx_port}"
expires = 60
{extra}
""")
    return cfg


@pytest.fixture
def pbx(tmp_path):
    k = Kamailio(tmp_path, {GATEWAY: GATEWAY_PASSWORD, PHONE: PHONE_PASSWORD, "linebox-b": "gw-secret-2"},
                 gateway=GATEWAY)
    yield k
    k.stop()


@pytest.fixture
def daemons():
    made = []
    yield made
    for d in made:
        d.stop()


# ================================================================ against Kamailio
@needs_kamailio
def test_linebox_registers_at_kamailio_and_its_location_shows_the_contact(tmp_path, pbx, daemons):
    port = free_port()
    d = SipDaemon(trunk_config(tmp_path, port, pbx.port))
    daemons.append(d)
    ev = d.events.wait("trunk_state", state="registered", timeout=15)
    assert ev["registrar"] == f"sip:127.0.0.1:{pbx.port}"
    contacts = pbx.wait_contacts(GATEWAY)
    assert contacts == [f"sip:{GATEWAY}@127.0.0.1:{port}"], pbx.log()[-2000:]
    pbx.wait_log(f"registered {GATEWAY} from 127.0.0.1:{port}")
    assert d.daemon.sip.trunk.registration.granted == 60
    # Stopping un-registers: the location is empty again.
    d.stop()
    daemons.remove(d)
    deadline = time.monotonic() + 5
    while pbx.contacts(GATEWAY) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pbx.contacts(GATEWAY) == []


@needs_kamailio
def test_a_wrong_password_is_refused_by_kamailio_and_logged(tmp_path, pbx, daemons, caplog):
    caplog.set_level(logging.INFO)
    d = SipDaemon(trunk_config(tmp_path, free_port(), pbx.port, password="not-the-password"))
    daemons.append(d)
    ev = d.events.wait("trunk_state", state="failed", timeout=15)
    assert "refused the credentials" in ev["reason"] and GATEWAY in ev["reason"]
    pbx.wait_log(f"authentication failed for {GATEWAY} from 127.0.0.1")
    assert pbx.contacts(GATEWAY) == []
    assert any("registration at" in r.getMessage() and "failed" in r.getMessage()
               for r in caplog.records if r.name.endswith("trunk"))
    assert not d.events.of("trunk_state", state="registered")
