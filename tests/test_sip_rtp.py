"""A SIP call's media as a Line: RTP over a real loopback socket into the call engine.
Keys come as RFC 4733 events when negotiated (the listener then does not hear them a
second time), as in-band tones otherwise; 30 s without RTP ends the call."""

import socket
import struct
import threading
import time

from linebox import FRAME
from linebox.caller import CallerId
from linebox.calls.engine import LineRunner
from linebox.dsp import g711, gen
from linebox.events import Bus
from linebox.hw.line import HungUp
from linebox.sip.rtp import RTP_TIMEOUT, SipLine, receive_all
from linebox.sip.sdp import Media


def _pair(dtmf_payload):
    ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ours.bind(("127.0.0.1", 0))
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    media = Media("127.0.0.1", phone.getsockname()[1], "PCMU", 0, dtmf_payload, "sendrecv")
    return SipLine(ours, media, "127.0.0.1"), phone, ours.getsockname()


def _send_audio(phone, to, samples, pt=0, seq0=0, ts0=5000):
    for i in range(0, len(samples) - FRAME + 1, FRAME):
        n = i // FRAME
        phone.sendto(struct.pack("!BBHII", 0x80, pt, seq0 + n, ts0 + i, 77) + g711.ulaw_encode(samples[i:i + FRAME]), to)
        time.sleep(0.02)


def _run(line, flow, seconds):
    bus = Bus()
    events = []
    bus.subscribe(events.append)
    runner = LineRunner(line, None, "us", bus, flow, rings_needed=lambda: 0)
    runner.start_call(flow, CallerId(number="201"))
    deadline = time.monotonic() + seconds
    while runner.flow is not None and time.monotonic() < deadline:
        runner.process(line.tick(runner.out))
    return events


def _wait_key(call):
    key = yield from call.wait_key(8.0)
    call.publish("got", key=key)


def test_in_band_dtmf_is_heard_when_rfc4733_was_not_negotiated():
    line, phone, to = _pair(None)
    assert line.reports_dtmf is False
    tone = gen.silence(0.3) + gen.dtmf("5", on=0.12) + gen.silence(0.3)
    threading.Thread(target=_send_audio, args=(phone, to, tone), daemon=True).start()
    events = _run(line, _wait_key, 6)
    assert [e["key"] for e in events if e["event"] == "got"] == ["5"]


def test_rfc4733_events_are_one_key_each_and_the_tone_is_not_heard_twice():
    line, phone, to = _pair(101)
    assert line.reports_dtmf is True

    def send():
        tone = gen.dtmf("7", on=0.12)
        # The phone sends the event (three end packets, RFC 4733 §2.5.1.4) and, as some
        # do, the tone in-band too.
        for i in range(6):
            end = 0x80 if i >= 3 else 0
            phone.sendto(struct.pack("!BBHII", 0x80, 101, i, 9000, 77)
                         + struct.pack("!BBH", 7, end | 10, 160 * (i + 1)), to)
            time.sleep(0.02)
        _send_audio(phone, to, tone, seq0=10, ts0=9000 + 960)
    threading.Thread(target=send, daemon=True).start()

    def two_keys(call):
        first = yield from call.wait_key(3.0)
        second = yield from call.wait_key(1.5)
        call.publish("got", keys=[first, second])
    events = _run(line, two_keys, 8)
    assert [e["keys"] for e in events if e["event"] == "got"] == [["7", None]]


def test_thirty_seconds_without_rtp_hang_up():
    class Clock:
        t = 100.0

        def __call__(self):
            return self.t

        def sleep(self, s):
            self.t += s
    clock = Clock()
    ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ours.bind(("127.0.0.1", 0))
    line = SipLine(ours, Media("127.0.0.1", 9, "PCMU", 0, None, "sendrecv"), "127.0.0.1",
                   clock=clock, sleep=clock.sleep)
    line.sending = False                  # nothing to send to in this test
    facts = []
    for _ in range(int((RTP_TIMEOUT + 1) / 0.02)):
        facts += line.tick(None).events
    assert facts == [HungUp("rtp_timeout")]
    # On hold with a=inactive the phone sends nothing, and that is no reason to hang up.
    held = SipLine(ours, Media("127.0.0.1", 9, "PCMU", 0, None, "inactive"), "127.0.0.1",
                   clock=clock, sleep=clock.sleep)
    assert not any(held.tick(None).events for _ in range(int((RTP_TIMEOUT + 1) / 0.02)))


def test_receive_all_empties_every_socket_and_keeps_each_phone_s_packets_in_order():
    lines = [_pair(None) for _ in range(3)]
    tones = [gen.tone(f, 0.1) for f in (400, 1000, 2000)]
    # Phone 0 sent two frames (a burst), phone 1 one, phone 2 none; and a stranger
    # writes to phone 1's port.
    for k, (_, phone, to) in enumerate(lines[:2]):
        for n in range(2 - k):
            frame = tones[k][n * FRAME:(n + 1) * FRAME]
            phone.sendto(struct.pack("!BBHII", 0x80, 0, n, 5000 + n * FRAME, 77) + g711.ulaw_encode(frame), to)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))
    stranger.sendto(struct.pack("!BBHII", 0x80, 0, 9, 99999, 1) + bytes(160), lines[1][2])
    time.sleep(0.05)
    receive_all([line for line, _, _ in lines])
    for line, _, _ in lines:                      # nothing left for a later drain
        assert line._receive_one() is False
    heard = [[line.take_frame(drained=True).audio for _ in range(2)] for line, _, _ in lines]
    decode = [g711.ulaw_decode(g711.ulaw_encode(t[:2 * FRAME])) for t in tones]
    assert heard[0] == [decode[0][:FRAME], decode[0][FRAME:]]
    assert heard[1][0] == decode[1][:FRAME]       # the stranger's packet was not taken as audio
    assert heard[1][1] == heard[2][0] == heard[2][1] == gen.silence(0.02)
