"""The FXO module and sound card on a real Pi: relay, line voltage, audio, ringing."""

import time
from array import array

from linebox import FRAME
from linebox.hw.audio import AlsaAudio
from linebox.hw.fxo import FxoLine, calibrate
from linebox.hw.line import Tick


def test_the_hook_relay_pin_drives_off_hook_and_back(pins, hook_pin):
    pins.setup_output(hook_pin, False)
    pins.write(hook_pin, True)
    off_hook = pins.read(hook_pin)
    time.sleep(0.3)                          # long enough to hear the relay pull in
    pins.write(hook_pin, False)
    assert (off_hook, pins.read(hook_pin)) == (True, False)


def test_a_connected_line_has_line_voltage(pins, loop_pin):
    pins.setup_input(loop_pin, "up")
    assert pins.read(loop_pin) is False, "no line voltage: line unplugged, or loop_active_low wrong"


def test_the_sound_card_delivers_full_frames(audio_device):
    audio = AlsaAudio(audio_device)
    try:
        got = []
        for _ in range(50):
            audio.write_frame(array("h", bytes(2 * FRAME)))
            got.append(len(audio.read_frame()))
    finally:
        audio.close()
    assert got == [FRAME] * 50


class AudioOnly:
    """Just the sound card, for calibrate() on the loopback rig (no GPIO needed)."""

    rx_gain_db = 0.0

    def __init__(self, audio: AlsaAudio) -> None:
        self.audio = audio

    def tick(self, out=None) -> Tick:
        self.audio.write_frame(out if out is not None else array("h", bytes(2 * FRAME)))
        return Tick(self.audio.read_frame())


def test_a_tone_comes_back_through_the_loopback_rig(loopback_rig):
    audio = AlsaAudio(loopback_rig)
    try:
        result = calibrate(AudioOnly(audio), seconds=1.0, tone_hz=1000.0, tone_dbm0=-10.0)
    finally:
        audio.close()
    # The rig's divider takes about 20 dB; anything above -40 dBm0 is a working path.
    assert result["rx_dbm0"] is not None and result["rx_dbm0"] > -40.0, result


def test_a_call_rings_the_line(pins, hook_pin, ring_pin, audio_device, call_in):
    line = FxoLine(1, pins=pins, audio_factory=lambda: AlsaAudio(audio_device),
                   hook_pin=hook_pin, ring_pin=ring_pin)
    try:
        print("call the line now (60 s)")
        rang = False
        for _ in range(3000):
            if line.tick().ringing:
                rang = True
                break
    finally:
        line.close()
    assert rang, "no ringing seen in 60 s"
