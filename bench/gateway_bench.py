"""The gateway's bridge: CPU per bridged call and the latency Linebox adds each way.

1. CPU: one bridged call, both directions, without pacing, in one thread: the analog
   line's runner (a line hearing the project's test speech, the listener on it, the
   echo suppressor) and the phone's leg (RTP in on a loopback socket from a phone
   sending speech, the jitter buffer, G.711, RTP out), both running the `bridged`
   flow. The phone emulation's own sendto/recv is in the figure (an upper bound).
   Goal (issue 12): under 1.5 % of a core per bridged call here.
2. Latency, in real time, three threads as in `linebox run`: the line paced by its own
   20 ms clock (0.01 % fast, as two crystals differ), the phone's leg paced by the RTP
   clock, a phone on a UDP socket. A one-frame 1 kHz marker every half second each way:
   line frame in → the RTP packet at the phone, and the phone's RTP packet out → the
   frame played on the line. Goal: under 60 ms each way, p50 and p99. The phone's leg
   is a `BridgedSipLine`: its packets take the line's latest frame as they leave, and
   the line pulls the phone's frames from its adaptive jitter buffer as it plays them
   (what stays: the wait for the other clock's slot, 0-20 ms, and toward the line the
   frame the line's runner computes a slot ahead, 20 ms). How late the bench's own
   threads woke (the machine's load) is printed with it: a thread woken 100 ms late
   delays that marker by as much.
3. Echo: what the phone user hears of their own voice (the project's test speech)
   through the simulator's hybrid, as return loss in dB, without and with the echo
   suppressor, for hybrids of 12 and 24 dB (`linebox sim` with a scenario phone).

    PYTHONPATH=firmware python bench/gateway_bench.py [--seconds 30] [--latency-seconds 20]
"""

import argparse
import resource
import socket
import struct
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from linebox import FRAME, RATE  # noqa: E402
from linebox.calls.engine import Hangup, LineRunner  # noqa: E402
from linebox.dsp import g711, gen  # noqa: E402
from linebox.events import Bus  # noqa: E402
from linebox.gateway.bridge import Bridge, bridged  # noqa: E402
from linebox.hw.line import SILENT_FRAME, Line, Tick  # noqa: E402
from linebox.sip.sdp import Media  # noqa: E402
from linebox.sip.uac import BridgedSipLine as SipLine  # noqa: E402
from linebox.wavfile import read_wav  # noqa: E402
from speechdata import speech_dir  # noqa: E402

HDR = struct.Struct("!BBHII")
FRAME_S = FRAME / RATE


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class FrameLine(Line):
    """An analog line hearing ``frames`` (cycled); ``on_tick(out)`` sees what is played."""

    def __init__(self, frames, clock=None, rate=1.0, on_tick=None) -> None:
        super().__init__(1)
        self.frames = frames
        self.i = 0
        self.clock = clock
        self.rate = rate
        self.on_tick = on_tick
        self._deadline = None
        self.lateness: list[float] = []      # seconds each paced tick woke after its deadline

    def tick(self, out=None) -> Tick:
        if self.clock is not None:
            now = time.monotonic()
            if self._deadline is None:
                self._deadline = now
            wait = self._deadline - now
            if wait > 0:
                time.sleep(wait)
            self.lateness.append(max(0.0, time.monotonic() - self._deadline))
            self._deadline += FRAME_S / self.rate
        if self.on_tick is not None:
            self.on_tick(out, self.i)
        frame = self.frames[self.i % len(self.frames)]
        self.i += 1
        return Tick(audio=frame)


def _leg(line, bus, end, line_id):
    def flow(call):
        try:
            yield from bridged(call, end)
        except Hangup:
            return
    r = LineRunner(line, line_id, "us", bus, flow, rings_needed=lambda: 0)
    r.start_call(flow, listen=line_id is not None)   # as sip/server.py start_leg: the line listens
    return r


def _sockets():
    ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    ours.bind(("127.0.0.1", 0))
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    phone.bind(("127.0.0.1", 0))
    media = Media("127.0.0.1", phone.getsockname()[1], "PCMU", 0, None, "sendrecv")
    return ours, phone, media


def cpu_per_call(seconds: float) -> dict:
    speech = read_wav(sorted(speech_dir().glob("*.wav"))[0])
    n = int(seconds * RATE / FRAME)
    frames = [speech[i:i + FRAME] for i in range(0, len(speech) - FRAME + 1, FRAME)]
    packets = [g711.ulaw_encode(f) for f in frames[len(frames) // 2:] + frames[:len(frames) // 2]]
    ours, phone, media = _sockets()
    to = ours.getsockname()
    fake = [0.0]
    sip = SipLine(ours, media, "127.0.0.1", clock=lambda: fake[0], sleep=lambda s: None)
    bus = Bus()
    bridge = Bridge()
    line_runner = _leg(FrameLine(frames), bus, bridge.line_end, 1)
    phone_runner = _leg(sip, bus, bridge.phone_end, None)
    phone.setblocking(False)
    t0 = cpu_seconds()
    for k in range(n):
        phone.sendto(HDR.pack(0x80, 0, k & 0xFFFF, 1000 + k * FRAME, 7) + packets[k % len(packets)], to)
        line_runner.step()
        fake[0] += FRAME_S
        phone_runner.process(sip.tick(phone_runner.out))
        try:
            while True:
                phone.recv(2048)
        except BlockingIOError:
            pass
    cpu = cpu_seconds() - t0
    # The line side alone (its listener and the suppressor), for the split.
    b2 = Bridge()
    lr = _leg(FrameLine(frames), bus, b2.line_end, 1)
    t1 = cpu_seconds()
    for _ in range(n):
        b2.phone_end.push(frames[_ % len(frames)])
        lr.step()
        b2.phone_end.pull()
    line_cpu = cpu_seconds() - t1
    return {"seconds": seconds, "cpu": cpu, "line_cpu": line_cpu, "stats": bridge.stats()}


def _marker_frame():
    return gen.tone([1000], FRAME_S, -10.0)


def _is_marker(samples) -> bool:
    return sum(abs(s) for s in samples[::5]) > 32 * 2000


def latency(seconds: float) -> dict:
    marker = _marker_frame()
    every = int(0.5 / FRAME_S)
    ours, phone, media = _sockets()
    sip = SipLine(ours, media, "127.0.0.1")
    sip.measure = True
    bus = Bus()
    bridge = Bridge()
    line_in: dict[int, float] = {}     # marker k -> when its frame arrived from the "sound card"
    line_out: list[float] = []         # when a phone marker was played on the line
    stop = threading.Event()

    frames_in = [marker if i % every == 0 else SILENT_FRAME for i in range(every)]

    def on_tick(out, i):
        now = time.monotonic()
        if out is not None and _is_marker(out):
            line_out.append(now)
        if i % every == 0:
            line_in[i // every] = now              # this tick returns the marker frame

    line = FrameLine(frames_in, clock=True, rate=1.0001, on_tick=on_tick)
    line_runner = _leg(line, bus, bridge.line_end, 1)
    phone_runner = _leg(sip, bus, bridge.phone_end, None)

    def run(runner, ln):
        while not stop.is_set() and runner.flow is not None:
            tick = ln.tick(runner.out)
            runner.process(tick)

    phone_sent: dict[int, float] = {}
    phone_got: list[float] = []
    to = ours.getsockname()

    def fake_phone():
        phone.settimeout(0.005)
        seq, t_next, k = 0, time.monotonic(), 0
        silence = g711.ulaw_encode(SILENT_FRAME)
        mark = g711.ulaw_encode(marker)
        while not stop.is_set():
            now = time.monotonic()
            if now >= t_next:
                is_mark = seq % every == every // 2
                phone.sendto(HDR.pack(0x80, 0, seq & 0xFFFF, 1000 + seq * FRAME, 9)
                             + (mark if is_mark else silence), to)
                if is_mark:
                    phone_sent[k] = time.monotonic()
                    k += 1
                seq += 1
                t_next += FRAME_S
            try:
                data = phone.recv(2048)
            except TimeoutError:
                continue
            if _is_marker(g711.ulaw_decode(data[12:])):
                phone_got.append(time.monotonic())

    threads = [threading.Thread(target=run, args=(line_runner, line), daemon=True),
               threading.Thread(target=run, args=(phone_runner, sip), daemon=True),
               threading.Thread(target=fake_phone, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(2)
    up = _pair(sorted(line_in.values()), phone_got)
    down = _pair(sorted(phone_sent.values()), line_out)
    jb = sip.jb
    return {"up": up, "down": down, "stats": bridge.stats(), "line_late": line.lateness,
            "sip_late": sip.lateness,
            "jb": f"keeps {jb.keep} frame(s), RFC 3550 jitter {1000 * jb.jitter:.1f} ms, "
                  f"{jb.underruns} underruns, {jb.lost} lost, {jb.late} late, {jb.trimmed} trimmed"}


def _pair(sent: list[float], got: list[float]) -> list[float]:
    """Each marker sent, with the first arrival after it (and before the next one)."""
    out = []
    j = 0
    for i, t in enumerate(sent):
        nxt = sent[i + 1] if i + 1 < len(sent) else float("inf")
        while j < len(got) and got[j] < t:
            j += 1
        if j < len(got) and got[j] < nxt:
            out.append(got[j] - t)
    return out[2:]                       # the first markers cross a filling jitter buffer


def _pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def echo_figures(erls=(12, 24)) -> list[tuple[int, float, float]]:
    """(hybrid ERL, ERL the phone user hears without, with the suppressor)."""
    import math
    import tempfile

    import linebox.gateway.phones as phones_mod
    from linebox.sip.auth import ha1
    from simkit import Sim, speech_wav

    sip = (f'[sip]\nlisten = "127.0.0.1:5099"\nrealm = "office"\n[[extension]]\nnumber = "201"\n'
           f'ha1 = "{ha1("201", "office", "x")}"\n')
    speech_file = sorted(speech_dir().glob("*.wav"))[1]

    def power(x):
        return 10 * math.log10(max(sum(s * s for s in x) / max(1, len(x)), 1e-3))

    out = []
    original = phones_mod.Bridge
    for erl in erls:
        heard = {}
        for with_es in (False, True):
            phones_mod.Bridge = original if with_es else (lambda: original(echo=None))
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    tmp = Path(tmp)
                    voice = speech_wav(tmp, speech_file, 8.0)
                    sim = Sim(tmp, rings=2, attendant=sip, line_extra='ring = ["201"]\n')
                    sim.run(f"""
echo_return_loss_db = {erl}
[[call]]
line = 1
at = 1.0
steps = [ {{ wait = "answer" }}, {{ silence = 12.0 }}, {{ hangup = "busy" }} ]
[[phone]]
extension = "201"
answer_after = 1.0
steps = [ {{ silence = 1.0 }}, {{ say = "{voice}" }} ]
""")
                    heard[with_es] = sim.app.phones.by_extension["201"].heard[8800:8000 * 9 - 800]
                    sent = read_wav(voice)
            finally:
                phones_mod.Bridge = original
        out.append((erl, power(sent) - power(heard[False]), power(sent) - power(heard[True])))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="call audio for the CPU figure")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    args = ap.parse_args()
    c = cpu_per_call(args.seconds)
    share = 100 * c["cpu"] / c["seconds"]
    print(f"gateway: CPU per bridged call: {1000 * c['cpu'] / (c['seconds'] * 50):.3f} ms a frame, "
          f"{share:.2f} % of a core (goal < 1.5 %); the line side alone (listener, echo "
          f"suppressor, FIFO): {100 * c['line_cpu'] / c['seconds']:.2f} %")
    lat = latency(args.latency_seconds)
    for name, vals in (("line frame in -> RTP out", lat["up"]), ("RTP in -> line frame out", lat["down"])):
        print(f"gateway: added latency {name}: p50 {1000 * _pct(vals, 50):.1f} ms, "
              f"p99 {1000 * _pct(vals, 99):.1f} ms over {len(vals)} markers (goal < 60 ms)")
    s = lat["stats"]
    print(f"gateway: bridge FIFO over {args.latency_seconds:.0f} s with a 0.01 % clock difference: "
          f"{s['line_drops']} frame(s) dropped toward the line, {s['phone_drops']} toward the phone, "
          f"{s['line_underruns']}/{s['phone_underruns']} underruns; the phone leg's jitter buffer "
          f"{lat['jb']}")
    print(f"gateway: the bench's threads woke late (machine load): line p99 "
          f"{1000 * _pct(lat['line_late'], 99):.1f} ms, max {1000 * max(lat['line_late'], default=0):.1f}; "
          f"RTP leg p99 {1000 * _pct(lat['sip_late'], 99):.1f} ms, "
          f"max {1000 * max(lat['sip_late'], default=0):.1f}")
    for erl, plain, with_es in echo_figures():
        print(f"gateway: echo the phone user hears, hybrid return loss {erl} dB: {plain:.1f} dB "
              f"down without the suppressor, {with_es:.1f} dB down with it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
