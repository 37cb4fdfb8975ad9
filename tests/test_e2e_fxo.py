"""The whole firmware on an FXO line: ring pulses on a simulated GPIO pin, the line's
audio from a file through the real pyalsaaudio and alsa-lib's `file` plugin."""

import tomllib
from array import array

from linebox.app import Appliance
from linebox.calls.prompts import Prompts
from linebox.calls.speech import spoken_name
from linebox.config import parse_config
from linebox.dsp import gen
from linebox.dsp.fskmod import callerid_burst, encode_mdmf
from linebox.dsp.plans import tone_signal
from linebox.events import Bus
from linebox.wavfile import read_wav
from test_fxo import HOOK_PIN, RING_PIN, RingSignal, make_file_fxo_line

CONFIG = """
[device]
data_dir = "{data}"
[[line]]
id = 1
driver = "fxo"
audio = "linebox_test"
hook_pin = 17
ring_pin = 27
loop_pin = 22
rings = 2
route = "100"
[[box]]
number = "100"
pin_required = false
"""


def test_a_message_is_taken_from_an_fxo_line_through_alsa(tmp_path, monkeypatch, speech_files):
    # The line as the sound card will hear it, from power-on: two US rings (2 s on, 4 s
    # off) with caller ID in the gap; the firmware answers when ring 2 ends (8 s). Then the
    # system greeting and the beep play; the caller talks 4 s, then the exchange's busy tone.
    answer_at = 8.0
    p = Prompts("en")
    # The system greeting says the box's name ("Box 100", spoken by espeak-ng at load).
    name = read_wav(spoken_name(tmp_path / "data" / "names", "en", "Box 100"))
    beep_end = answer_at + (len(p.with_name(name)) + len(p.clip("beep"))) / 8000
    speech = read_wav(speech_files[1])[8000 * 10:8000 * 14]
    line_audio = gen.silence(2.5) + callerid_burst("bell202", encode_mdmf("5551230000", "ACME CORP"))
    line_audio += gen.silence(beep_end + 0.6 - len(line_audio) / 8000) + speech + gen.silence(0.5)
    busy_at = len(line_audio) / 8000
    line_audio += tone_signal("us", "busy", 8.0)
    line_audio = gen.mix(line_audio, gen.white_noise(len(line_audio) / 8000, -65.0))

    line, pins, played_path = make_file_fxo_line(tmp_path, line_audio, monkeypatch=monkeypatch)
    cfg = parse_config(tomllib.loads(CONFIG.format(data=tmp_path / "data")), "e2e.toml")
    bus = Bus()
    events = []
    bus.subscribe(lambda ev: events.append(ev))
    app = Appliance(cfg, bus, clock=line.clock)
    app.open()
    runner = app.add_line(line, cfg.lines[0])
    ring = RingSignal(pins, RING_PIN, line.clock, "us")
    ring.start()
    for _ in range(int((busy_at + 8.0) / 0.02)):
        if line.off_hook and ring.start_t is not None:
            ring.stop()
        ring.advance(0.02)
        runner.step()
        if any(e["event"] == "onhook" for e in events):
            break
    line.close()
    app.close()

    kinds = [e["event"] for e in events]
    assert [e["n"] for e in events if e["event"] == "ring"] == [1, 2]
    cid = [e for e in events if e["event"] == "callerid"]
    assert cid and cid[0]["number"] == "5551230000" and cid[0]["name"] == "ACME CORP"
    assert kinds.index("answer") < kinds.index("record_start") < kinds.index("hangup_detected")
    assert [e["cause"] for e in events if e["event"] == "hangup_detected"] == ["busy"]
    (saved,) = [e for e in events if e["event"] == "message_saved"]
    assert 4.4 <= saved["seconds"] <= 5.0     # 0.6 s before the voice, 4 s of it, 0.3 s kept after
    # The relay went off-hook at the answer and back on-hook at the end.
    assert [lvl for _, lvl in pins.changes(HOOK_PIN)][-2:] == [True, False]
    # What the firmware played went out through ALSA: the greeting reached the file.
    played = array("h", played_path.read_bytes())
    assert max(abs(v) for v in played) > 3000
