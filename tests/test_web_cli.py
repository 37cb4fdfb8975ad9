"""`linebox admin-password` and `linebox sim --web` as a person runs them."""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

from conftest import run_linebox
from simkit import PIN, Sim, speech_wav
from test_web_api import Client

CALL = """
[[call]]
line = 1
at = 1.0
caller = {{ number = "5551234567", name = "JOHN DOE" }}
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_admin_password_is_stored_hashed_and_private(tmp_path):
    sim = Sim(tmp_path)
    res = run_linebox("admin-password", "--config", sim.config_path, "--data", sim.data,
                      input=b"a long enough secret\n")
    assert res.returncode == 0, res.stderr.decode()
    f = sim.data / "admin.json"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    text = f.read_text()
    assert "a long enough secret" not in text and '"scrypt$' in text


def test_admin_password_refuses_a_short_one_with_one_line(tmp_path):
    sim = Sim(tmp_path)
    res = run_linebox("admin-password", "--config", sim.config_path, "--data", sim.data, input=b"short\n")
    assert res.returncode == 2
    assert res.stderr.decode() == "linebox: error: admin-password: a password is 8 to 256 characters\n"
    assert not (sim.data / "admin.json").exists()


def test_sim_web_serves_the_portal_after_the_scenario_until_sigterm(tmp_path, speech_files):
    sim = Sim(tmp_path)
    voice = speech_wav(tmp_path, speech_files[0], 3.0)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "linebox", "sim", str(sim.write_scenario(CALL.format(voice=voice))),
                             "--config", str(sim.config_path), "--data", str(sim.data), "--json",
                             "--web", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        line = proc.stderr.readline().decode()
        while "web portal at" not in line and line:
            line = proc.stderr.readline().decode()
        assert f"http://127.0.0.1:{port}/" in line
        c = Client(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        msgs = []
        while time.monotonic() < deadline:
            if c.csrf or c.login(box="100", pin=PIN)[0] == 200:
                msgs = c.json("GET", "/api/v1/boxes/100/messages")[1]
                if msgs:
                    break
            time.sleep(0.3)
        assert [m["caller_number"] for m in msgs] == ["5551234567"]
        # The portal's process logs (here a failed login) where sim logs: on stderr, never
        # into the --json transcript on stdout.
        assert Client(f"http://127.0.0.1:{port}").login(user="admin", password="not the password")[0] == 401
        time.sleep(0.5)
        assert proc.poll() is None                  # still serving after the scenario
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)           # a bound for a loaded machine
        assert proc.returncode == 0
        assert b'"event": "message_saved"' in out
        for row in out.decode().splitlines():
            json.loads(row)
        assert b"failed administrator login" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sim_web_refuses_a_bad_address_with_one_line(tmp_path):
    sim = Sim(tmp_path)
    res = run_linebox("sim", sim.write_scenario("[[call]]\nline = 1\nsteps = []\n"), "--config", sim.config_path,
                      "--data", sim.data, "--web", "localhost")
    assert res.returncode == 2
    assert res.stderr.decode() == "linebox: error: sim: --web 'localhost': must be HOST:PORT, like 127.0.0.1:8080\n"


def test_home_assistant_discovery_links_the_portal():
    from linebox.config import DeviceConfig, WebConfig
    from linebox.report.discovery import discovery_payload, portal_url

    assert portal_url(None) is None and portal_url(WebConfig(enabled=False)) is None
    url = portal_url(WebConfig(host="192.168.1.20", port=8080))
    assert url == "http://192.168.1.20:8080/"
    doc = discovery_payload(DeviceConfig(id="office"), "linebox/office", {"100": "Main"}, [1], configuration_url=url)
    assert doc["dev"]["cu"] == url
    assert "cu" not in discovery_payload(DeviceConfig(id="office"), "linebox/office", {}, [1])["dev"]
    assert portal_url(WebConfig()).endswith(".local:8080/")


def test_sim_web_realtime_paces_the_scenario_and_sigterm_stops_it_midway(tmp_path):
    sim = Sim(tmp_path)
    port = _free_port()
    scen = sim.write_scenario('[[call]]\nline = 1\nat = 2.0\ngive_up_after_rings = 1\nsteps = []\n'
                              '[[call]]\nline = 1\nat = 600.0\ngive_up_after_rings = 1\nsteps = []\n')
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "linebox", "sim", str(scen), "--config", str(sim.config_path),
                             "--data", str(sim.data), "--json", "--web", f"127.0.0.1:{port}", "--realtime"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = proc.stdout.readline()                    # the first ring, at real time
        assert b'"event": "ring"' in first or b'"event": "incoming"' in first
        assert time.monotonic() - t0 >= 2.0
        proc.send_signal(signal.SIGTERM)                  # long before the second call
        # communicate drains both pipes: a child blocked on a full stderr pipe never exits.
        out, err = proc.communicate(timeout=60)           # a bound for a loaded machine
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        assert b'"call": 2' not in out                    # the second call never came
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
