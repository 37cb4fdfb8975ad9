"""The whole firmware on a USB voice modem: the real driver and pyserial on a pty, the USR
and Conexant modems of linebox.hw.modem.emulator (built from the chipsets' manuals and
captured logs) as the modem. The modem hears the busy tone and reports it late; the
firmware's listener hears it too, and the message ends at the tone's onset."""

import json
import time
import tomllib

import pytest

from conftest import run_linebox
from daemonkit import linebox_run, modem_config
from linebox.app import Appliance
from linebox.config import parse_config
from linebox.dsp import gen
from linebox.dsp.listener import analyze
from linebox.dsp.plans import tone_signal
from linebox.events import Bus
from linebox.hw.modem import ModemLine
from linebox.hw.modem.emulator import PtyModem
from linebox.wavfile import read_wav, write_wav


def _greeting(data):
    (data / "greetings").mkdir(parents=True)
    write_wav(data / "greetings" / "100.wav", gen.tone(600.0, 0.3, -15.0))   # a short greeting


@pytest.mark.parametrize("chipset,duplex", [("usr", "auto"), ("conexant", "auto"),
                                            ("conexant", "half")])
def test_a_message_through_a_voice_modem_ends_at_the_busy_tones_onset(tmp_path, speech_files,
                                                                      chipset, duplex):
    data = tmp_path / "data"
    _greeting(data)
    cfg = parse_config(tomllib.loads(modem_config(data, "/dev/null", rings=1, duplex=duplex)),
                       "modem.toml")
    bus = Bus()
    events = []
    bus.subscribe(events.append)
    app = Appliance(cfg, bus)
    app.open()
    speech = read_wav(speech_files[2])[8000 * 20:8000 * 22]
    with PtyModem(chipset, tmp_path / "ttyModem") as emu:
        line = ModemLine(1, emu.path, "us", rtscts=False, duplex=duplex, command_timeout=0.5,
                         reset_timeout=0.5, callerid_quiet=0.15)
        runner = app.add_line(line, cfg.lines[0])
        try:
            runner.step()
            emu.feed_audio(gen.silence(2.5) + speech + tone_signal("us", "busy", 8.0))
            emu.ring(1)
            deadline = time.monotonic() + 40
            while not any(e["event"] == "onhook" for e in events) and time.monotonic() < deadline:
                runner.step()
        finally:
            line.close()
            app.close()
        assert "AT+VLS=1" in emu.commands
        assert len(emu.received_audio()) >= 0.7 * 8000     # the greeting and the beep went out
    kinds = [e["event"] for e in events]
    assert "answer" in kinds and "onhook" in kinds
    assert [e["cause"] for e in events if e["event"] == "hangup_detected"] == ["busy"]
    (saved,) = [e for e in events if e["event"] == "message_saved"]
    # About 1.5 s of quiet after the beep, 2 s of speech, 0.3 s kept after the last word.
    assert 3.2 <= saved["seconds"] <= 4.1
    (wav,) = (data / "messages").rglob("*.wav")
    heard = [e for e in analyze(read_wav(wav), "us") if e["type"] == "tone"]
    assert heard == [], "busy tone kept in the message"


SCRIPT_KEYS = (0.5, 3.0)     # s of silence before "#" and before "3"


@pytest.mark.parametrize("chipset,duplex", [("usr", "auto"), ("conexant", "auto"),
                                            ("conexant", "half")])
def test_linebox_run_takes_a_whole_call_through_each_chipset(tmp_path, speech_files, chipset,
                                                             duplex):
    data = tmp_path / "data"
    _greeting(data)
    speech = read_wav(speech_files[1])[8000 * 10:8000 * 13]
    with PtyModem(chipset, tmp_path / "ttyModem") as emu:
        cfg = tmp_path / "linebox.toml"
        cfg.write_text(modem_config(data, emu.path, rings=1, duplex=duplex))
        with linebox_run(cfg) as proc:
            assert emu.wait_for(lambda e: "AT+VLS=0" in e.commands, timeout=20)   # set up
            # The caller: greeting and beep, 3 s of speech, "#", the review menu, "3" (send).
            emu.feed_audio(gen.silence(2.5) + speech + gen.silence(SCRIPT_KEYS[0])
                           + gen.dtmf("#", 0.15, 0.1) + gen.silence(SCRIPT_KEYS[1])
                           + gen.dtmf("3", 0.15, 0.1) + gen.silence(12.0)
                           + tone_signal("us", "busy", 6.0))
            emu.ring(1, callerid={"date": "0321", "time": "1405", "number": "5551234567",
                                  "name": "JOHN DOE"})
            assert emu.wait_for(lambda e: "AT+VLS=1" in e.commands, timeout=20)
            answered = emu.commands.index("AT+VLS=1")
            assert emu.wait_for(lambda e: "ATH" in e.commands[answered:], timeout=60)
            assert not emu.offhook
            # The firmware hung up after "3" and its goodbye, before the caller's busy
            # tone was ever on the line: the review menu took the key.
            with emu.lock:
                assert len(emu.core.line.audio) >= 6.0 * 8000
        out = proc.stdout.read().decode() + proc.stderr.read().decode()
        assert proc.returncode == 0, out
        assert "fault" not in out, out
        assert len(emu.received_audio()) >= 0.7 * 8000, "greeting and prompts went out"
    listing = run_linebox("messages", "--config", cfg, "--data", data, "--json")
    (msg,) = [json.loads(x) for x in listing.stdout.decode().splitlines()]
    assert (msg["box"], msg["caller_number"], msg["caller_name"]) == ("100", "5551234567",
                                                                      "JOHN DOE")
    assert 4.3 <= msg["seconds"] <= 5.3, msg      # ~1.5 s of quiet after the beep, 3 s of speech
