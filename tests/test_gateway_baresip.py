"""The gateway with real phones: two Debian baresip phones registered to an in-process
`linebox run` Daemon whose line 1 is a simulated exchange line paced in real time.

A call on line 1 rings both phones; one answers: the caller's 1 kHz arrives in its
recording, its 700 Hz arrives on the line, the other stops ringing, and the caller's
hang-up (busy tone) ends the phone's call within 3.5 s. Nobody answering: the message
is in the shared box and both phones stopped ringing."""

import shutil

import pytest

from gatewaykit import GatewayDaemon, gateway_config
from linebox.hw.fxo import tone_level_dbm0
from linebox.wavfile import read_wav
from simkit import tone_wav
from sipkit import PASSWORDS, Baresip, free_port

pytestmark = [pytest.mark.skipif(shutil.which("baresip") is None, reason="needs baresip"),
              pytest.mark.flaky(reruns=2, reruns_delay=2)]


def peak_level(samples, freq, window=4000):
    return max((tone_level_dbm0(samples[i:i + window], freq)
                for i in range(0, max(1, len(samples) - window + 1), window)), default=-999)


@pytest.fixture
def phones():
    made = []
    yield made
    for p in made:
        p.close()


def _start(tmp_path, monkeypatch, scenario, phones, mics, **cfg):
    port = free_port()
    gw = GatewayDaemon(gateway_config(tmp_path, port, **cfg), scenario, monkeypatch, tmp_path)
    try:
        for ext, mic in mics.items():
            p = Baresip(tmp_path, ext, PASSWORDS[ext], gw.port, mic)
            phones.append(p)
            p.wait_log("[1 binding]", timeout=15)
    except BaseException:
        gw.stop()
        raise
    return gw


def _caller(tmp_path, steps, at=3.0):
    return f"""
[[call]]
line = 1
at = {at}
caller = {{ number = "5551234567", name = "JOHN DOE" }}
steps = {steps}
"""


def test_a_call_rings_two_phones_one_answers_and_tones_pass_both_ways(tmp_path, monkeypatch, phones):
    k1 = tone_wav(tmp_path, 1000, 4.0, "k1.wav")
    mic = tone_wav(tmp_path, 700, 60.0, "h700.wav")
    scenario = _caller(tmp_path, f'[ {{ wait = "answer" }}, {{ silence = 1.5 }}, {{ say = "{k1}" }}, '
                                 f'{{ silence = 1.0 }}, {{ hangup = "busy" }} ]')
    gw = _start(tmp_path, monkeypatch, scenario, phones, {"201": mic, "202": mic}, ring_rings=5)
    alice, bob = phones
    try:
        alice.wait_event("CALL_INCOMING", timeout=15)
        bob.wait_event("CALL_INCOMING", timeout=5)
        # Caller ID comes between the first two rings; the phones ring on meanwhile.
        gw.events.wait("callerid", timeout=10, pump=alice.pump)
        alice.pump(0.5)
        alice.command("accept")
        gw.events.wait("bridged", extension="201", timeout=10, pump=alice.pump)
        bob.wait_event("CALL_CLOSED", timeout=10)            # CANCELled
        gw.events.wait("caller_hangup", timeout=20, pump=alice.pump)
        alice.wait_event("CALL_CLOSED", timeout=10)          # our BYE
        gw.events.wait("onhook", line=1, timeout=5, pump=alice.pump)
    finally:
        gw.stop()
    # The phone's leg ended within 3.5 s of the caller's hang-up (the busy tone's start).
    assert gw.when("onhook", extension="201") - gw.when("caller_hangup") <= 3.5
    assert not gw.events.of("record_start")                   # nobody reached voicemail
    assert gw.events.of("answer")[0]["caller_number"] == "5551234567"
    alice.close()
    (recording,) = alice.recordings()
    heard = read_wav(recording)
    assert peak_level(heard, 1000) > -25, peak_level(heard, 1000)      # sent at -15 dBm0
    assert peak_level(gw.line.played, 700) > -22, peak_level(gw.line.played, 700)


def test_nobody_answering_leaves_the_message_in_the_shared_box_and_stops_both_phones(
        tmp_path, monkeypatch, phones):
    voice = tone_wav(tmp_path, 500, 3.0, "v.wav")
    silent = tone_wav(tmp_path, 700, 0.1, "short.wav")
    scenario = _caller(tmp_path, f'[ {{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }} ]')
    gw = _start(tmp_path, monkeypatch, scenario, phones, {"201": silent, "202": silent}, ring_rings=2)
    alice, bob = phones
    try:
        alice.wait_event("CALL_INCOMING", timeout=15)
        bob.wait_event("CALL_INCOMING", timeout=5)
        gw.events.wait("answer", timeout=20, pump=alice.pump)
        alice.wait_event("CALL_CLOSED", timeout=10)
        bob.wait_event("CALL_CLOSED", timeout=10)
        saved = gw.events.wait("message_saved", timeout=40, pump=alice.pump)
        assert [m["id"] for m in gw.messages("100")] == [saved["id"]]
    finally:
        gw.stop()
    assert gw.events.of("ring_group_end", reason="voicemail")
    assert gw.events.of("answer")[0]["after_rings"] == 2
    assert not gw.events.of("bridged")
