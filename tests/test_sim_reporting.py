"""`linebox sim` with [mqtt] and [email]: the office's dashboard and inbox see the story,
through a real mosquitto and a real SMTP server."""

import json

from conftest import run_linebox
from linebox.voicemail.pins import hash_pin
from simkit import speech_wav
from test_email import Inbox, Server
from test_mqtt import Broker, Watcher, wait_until

CONFIG = """
[device]
id = "office"
name = "Office"
data_dir = "{data}"
[[line]]
id = 1
driver = "sim"
rings = 2
route = "100"
[[box]]
number = "100"
name = "Main office"
pin_hash = "{pin_hash}"
email = "office@example.com"
email_on_new = true
[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
[email]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
starttls = false
from = "linebox@example.com"
"""

SCENARIO = """
[[call]]
line = 1
at = 1
caller = {{ number = "5551234567", name = "JOHN DOE" }}
steps = [ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]
"""


def test_sim_reports_to_mqtt_and_mails_the_message(tmp_path, speech_files):
    broker = Broker(tmp_path / "broker").start()
    inbox = Inbox()
    smtp = Server(inbox).start()
    watcher = Watcher(broker.port)
    try:
        cfg = tmp_path / "linebox.toml"
        cfg.write_text(CONFIG.format(data=tmp_path / "data", pin_hash=hash_pin("1234"),
                                     mqtt_port=broker.port, smtp_port=smtp.port))
        scen = tmp_path / "s.toml"
        scen.write_text(SCENARIO.format(voice=speech_wav(tmp_path, speech_files[0], 3.0)))
        res = run_linebox("sim", scen, "--config", cfg, "--data", tmp_path / "data", "--json")
        assert res.returncode == 0, res.stderr.decode()
        saved = [json.loads(x) for x in res.stdout.decode().splitlines()
                 if json.loads(x)["event"] == "message_saved"][0]

        # The events were acknowledged before `linebox sim` ended.
        wait_until(lambda: any(e["type"] == "message_saved" for e in watcher.events()), what="event")
        events = watcher.events()
        types = [e["type"] for e in events]
        assert types.index("call") < types.index("message_saved")
        msg_ev = events[types.index("message_saved")]
        assert msg_ev["box"] == "100" and msg_ev["message"] == saved["id"]
        assert msg_ev["caller_number"] == "5551234567" and msg_ev["caller_name"] == "JOHN DOE"
        assert len({e["id"] for e in events}) == len(events)
        state = json.loads(watcher.last("linebox/office/box/100/state"))
        assert state["new"] == 1 and state["name"] == "Main office"
        assert watcher.last("linebox/office/status") == "offline"   # clean stop at the end
        assert watcher.of("homeassistant/device/office/config")

        # The mail went out with the WAV attached.
        wait_until(lambda: inbox.mails, what="the e-mail")
        (mail,) = inbox.parsed()
        assert mail["To"] == "office@example.com"
        wav = [p for p in mail.iter_attachments() if p.get_content_type() == "audio/wav"]
        assert wav and wav[0].get_content()[:4] == b"RIFF"
    finally:
        watcher.close()
        smtp.stop()
        broker.stop()
