"""Linphone (Debian's linphonec, from linphone-cli) registers with Linebox and logs in
to a box by `*56`, sending its PIN as DTMF."""

import os
import subprocess
import time

import pytest

from sipkit import PASSWORDS, PIN, REALM, SipDaemon, free_port, write_config


@pytest.fixture
def server(tmp_path):
    d = SipDaemon(write_config(tmp_path, free_port()))
    yield d
    d.stop()


class Linphonec:
    """linphonec driven on its standard input, with its own HOME and configuration: the
    account (proxy_0) registers at start; `soundcard use files` needs no sound card."""

    def __init__(self, tmp, ext: str, server_port: int) -> None:
        home = tmp / f"linphone-{ext}"
        # Without its database folder linphonec never opens its SIP ports.
        (home / ".local" / "share" / "linphone").mkdir(parents=True)
        rc = home / "linphonerc"
        rc.write_text(f"""[sip]
sip_port={free_port()}
sip_tcp_port=0
sip_tls_port=0
default_proxy=0
[rtp]
audio_rtp_port={free_port()}
[sound]
echocancellation=0
[proxy_0]
reg_proxy=<sip:127.0.0.1:{server_port}>
reg_identity=sip:{ext}@127.0.0.1
reg_expires=600
reg_sendregister=1
[auth_info_0]
username={ext}
passwd={PASSWORDS[ext]}
realm={REALM}
domain=127.0.0.1
""")
        self.out = home / "linphonec.out"
        self.proc = subprocess.Popen(["linphonec", "-c", str(rc), "-d", "0"], stdin=subprocess.PIPE,
                                     stdout=self.out.open("wb"), stderr=subprocess.STDOUT,
                                     env=dict(os.environ, HOME=str(home)))
        self.command("soundcard use files")
        self.command("ipv6 disable")       # else it offers its IPv6 address in SDP

    def command(self, line: str) -> None:
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.command("quit")
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def test_linphonec_registers_and_logs_in_with_dtmf(tmp_path, server):
    phone = Linphonec(tmp_path, "201", server.port)
    try:
        ev = server.events
        ev.wait("extension_state", extension="201", state="registered", timeout=20)
        phone.command(f"call sip:*56100@127.0.0.1:{server.port}")
        ev.wait("prompt", name="pin", timeout=20)
        # Keys typed before linphonec has its call up are lost on its side.
        deadline = time.monotonic() + 10
        while "connected" not in phone.out.read_text(errors="replace"):
            assert time.monotonic() < deadline, phone.out.read_text(errors="replace")[-2000:]
            time.sleep(0.05)
        time.sleep(0.5)
        for key in f"{PIN}#":
            phone.command(key)                # a lone key in a call is sent as DTMF
            time.sleep(0.3)
        login = ev.wait("login", timeout=20)
        keys = [e["digit"] for e in ev.of("dtmf")]
        assert (login["ok"], login["box"], login["extension"]) == (True, "100", "201"), keys
        assert [e["digit"] for e in ev.of("dtmf")] == [*PIN, "#"]
        phone.command("terminate")
        ev.wait("hangup_detected", cause="bye", timeout=20)
    finally:
        phone.close()
    server.events.wait("extension_state", extension="201", state="unregistered", after=1, timeout=10)
