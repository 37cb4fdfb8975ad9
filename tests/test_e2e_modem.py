"""The whole firmware on a USB voice modem: the real driver and pyserial on a pty, a
USR-like emulator as the modem. The modem never reports the busy tone: the firmware's own
listener hears it in the received audio and ends the recording."""

import time
import tomllib

from linebox.app import Appliance
from linebox.config import parse_config
from linebox.dsp import gen
from linebox.dsp.plans import tone_signal
from linebox.events import Bus
from linebox.hw.modem import ModemLine
from linebox.wavfile import read_wav, write_wav
from modem_emulator import ModemEmulator

CONFIG = """
[device]
data_dir = "{data}"
[[line]]
id = 1
driver = "modem"
port = "/dev/null"
rings = 1
route = "100"
[[box]]
number = "100"
pin_required = false
"""


def test_a_message_is_taken_through_a_voice_modem_and_busy_tone_ends_it(tmp_path, speech_files):
    data = tmp_path / "data"
    (data / "greetings").mkdir(parents=True)
    write_wav(data / "greetings" / "100.wav", gen.tone(600.0, 0.3, -15.0))   # a short greeting
    cfg = parse_config(tomllib.loads(CONFIG.format(data=data)), "modem.toml")
    bus = Bus()
    events = []
    bus.subscribe(events.append)
    app = Appliance(cfg, bus)
    app.open()
    speech = read_wav(speech_files[2])[8000 * 20:8000 * 22]
    with ModemEmulator("usr", tmp_path / "ttyModem") as emu:
        line = ModemLine(1, emu.path, "us", rtscts=False, command_timeout=0.5, reset_timeout=0.5,
                         callerid_quiet=0.15)
        runner = app.add_line(line, cfg.lines[0])
        try:
            runner.step()
            emu.feed_audio(gen.silence(1.2) + speech + tone_signal("us", "busy", 6.0))
            emu.ring(1)
            deadline = time.monotonic() + 30
            while not any(e["event"] == "onhook" for e in events) and time.monotonic() < deadline:
                runner.step()
        finally:
            line.close()
            app.close()
    kinds = [e["event"] for e in events]
    assert "answer" in kinds and "onhook" in kinds
    assert [e["cause"] for e in events if e["event"] == "hangup_detected"] == ["busy"]
    (saved,) = [e for e in events if e["event"] == "message_saved"]
    assert 1.8 <= saved["seconds"] <= 3.0
    assert "AT+VLS=1" in emu.commands
    # The greeting and the beep went out through the modem.
    assert len(emu.received_audio()) >= 0.7 * 8000
