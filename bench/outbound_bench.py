"""Calls out through a line (gateway/outbound.py): CPU per phase and the delays a phone
user notices, on the virtual clock against the simulated exchange.

One call at a time, in one thread, unpaced: the line's runner (its listener, the
outbound flow, the bridge and the echo suppressor) and the phone's leg reduced to what
it costs besides RTP sockets (G.711 encode and decode of every frame, pull and push on
the bridge). The exchange's own work (dial tone, DTMF decoding, callee audio, hybrid
echo, noise) is timed apart and left out of the figures. The callee speaks the
project's test speech; the phone speaks it too.

Figures: CPU in % of one core per call while waiting for dial tone, dialling, in
call progress (ringback) and talking; the delays on the line's clock: off-hook to 183
(dial tone heard), 183 to the last digit, the callee's answer to the 200 OK, a busy
callee to the 486, the callee's busy-tone hang-up to the phone's BYE. Goal (issue 12):
under 1.5 % of a core per bridged call here. Prints; asserts nothing.

    PYTHONPATH=firmware python bench/outbound_bench.py [--talk 60] [--plan us]
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from linebox import FRAME, RATE  # noqa: E402
from linebox.calls.engine import LineRunner  # noqa: E402
from linebox.config import ExtensionConfig, GatewayConfig  # noqa: E402
from linebox.dsp import g711  # noqa: E402
from linebox.events import Bus  # noqa: E402
from linebox.gateway.outbound import Outbound  # noqa: E402
from linebox.sim.exchange import SimExchange  # noqa: E402
from linebox.sim.scenario import parse_scenario  # noqa: E402
from linebox.wavfile import read_wav, write_wav  # noqa: E402
from speechdata import speech_dir  # noqa: E402 - the project's own test speech

SPEECH = speech_dir() / "fsdd-george.wav"


class _Config:
    gateway = GatewayConfig()


class TimedLine:
    """Wraps the exchange's line: the time its tick takes is the exchange's, not ours."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.spent = 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def tick(self, out=None):
        t0 = time.perf_counter()
        tick = self.inner.tick(out)
        self.spent += time.perf_counter() - t0
        return tick

    def set_hook(self, off_hook: bool) -> None:
        self.inner.set_hook(off_hook)


def one_call(tmp: Path, plan: str, result: str, talk: float, speech) -> dict:
    loops = int(talk * RATE / len(speech)) + 2
    long_speech = (speech * loops)[:int(talk * RATE)]
    write_wav(tmp / "callee.wav", long_speech)
    callee = {"number": "5551234", "result": result}
    if result == "answer":
        callee.update(answer_after_rings=1, steps=[{"say": "callee.wav"}, {"hangup": "busy"}])
    sc = parse_scenario({"callee": [callee]}, tmp, "bench")
    bus = Bus()
    events: list[dict] = []
    bus.subscribe(lambda e: events.append(e) if e["event"] in (
        "outbound_start", "callee_answer", "callee_hangup", "dialled") else None)
    ex = SimExchange(sc, {1: plan}, bus)
    line = TimedLine(ex.line(1))
    runner = LineRunner(line, 1, plan, bus, lambda call: iter(()), rings_needed=lambda: 4)
    out = Outbound(_Config(), lambda: [runner])
    ext = ExtensionConfig(number="201", name="Bench", ha1="0" * 32, lines=(1,))
    oc = out.place(ext, "5551234")
    marks: dict[str, float] = {}
    oc.on_change(lambda c: marks.setdefault(c.state, ex.now))
    phone_voice = g711.ulaw_encode(long_speech)
    cpu: dict[str, list[float]] = {}
    i = 0
    t_end = talk + 40.0
    while ex.now < t_end and not (oc.state in ("failed", "ended") and runner.idle):
        phase = {"seizing": "dial tone", "early": "progress", "answered": "talk"}.get(oc.state, "end")
        if phase == "progress" and "dialled" not in {e["event"] for e in events}:
            phase = "dialling"
        spent0 = line.spent
        t0 = time.perf_counter()
        runner.step()
        end = oc.phone_end
        if not end.closed:
            # The phone's leg besides its sockets: decode what came, encode what goes.
            g711.ulaw_encode(end.pull())
            end.push(g711.ulaw_decode(phone_voice[i:i + FRAME] or bytes(FRAME)) if oc.state == "answered"
                     else g711.ulaw_decode(bytes([0xFF]) * FRAME))
            i = (i + FRAME) % max(FRAME, len(phone_voice) - FRAME)
        ours = time.perf_counter() - t0 - (line.spent - spent0)
        cpu.setdefault(phase, []).append(ours)
        ex.advance()
    ev = {}
    for e in events:
        ev.setdefault(e["event"], e["t"])
    return {"marks": marks, "events": ev, "cpu": cpu, "status": oc.status, "result": oc.result,
            "exchange": line.spent}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--talk", type=float, default=60.0, help="seconds the callee talks")
    ap.add_argument("--plan", default="us")
    args = ap.parse_args()
    import tempfile

    speech = read_wav(SPEECH)
    with tempfile.TemporaryDirectory() as tmp:
        r = one_call(Path(tmp), args.plan, "answer", args.talk, speech)
        busy = one_call(Path(tmp), args.plan, "busy", 5.0, speech)
    frame_s = FRAME / RATE
    print(f"outbound call, plan {args.plan}, callee talking {args.talk:.0f} s (virtual clock)")
    print("CPU per call, % of one core (line runner + listener + flow + bridge + echo "
          "suppressor + G.711 both ways; the exchange excluded):")
    for phase in ("dial tone", "dialling", "progress", "talk"):
        v = r["cpu"].get(phase)
        if v:
            v = sorted(v)
            mean = sum(v) / len(v)
            p99 = v[int(0.99 * (len(v) - 1))]
            print(f"  {phase:<10} {100 * mean / frame_s:6.2f} %  ({len(v)} frames, "
                  f"mean {1e6 * mean:.0f} us, p99 {1e6 * p99:.0f} us a frame)")
    m, e = r["marks"], r["events"]
    t0 = e.get("outbound_start", 0.0)
    print("delays on the line's clock:")
    print(f"  off-hook -> 183 (dial tone heard):        {m.get('early', float('nan')) - t0:6.2f} s")
    print(f"  183 -> number complete at the exchange:   {e.get('dialled', float('nan')) - m.get('early', 0):6.2f} s")
    print(f"  callee answers -> 200 OK:                 {m.get('answered', float('nan')) - e.get('callee_answer', 0):6.2f} s"
          "  (no answer supervision: the end of ringback is heard)")
    print(f"  callee hangs up (busy) -> BYE:            {m.get('ended', float('nan')) - e.get('callee_hangup', 0):6.2f} s")
    bm, be = busy["marks"], busy["events"]
    print(f"  busy callee: number complete -> {busy['status']}:     "
          f"{bm.get('failed', float('nan')) - be.get('dialled', 0):6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
