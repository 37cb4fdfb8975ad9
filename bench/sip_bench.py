"""SIP voicemail calls: CPU per concurrent call, and how late outgoing RTP leaves.

The real `linebox run` Daemon (SIP-only configuration) runs in this process; SIPp in
another one places CALLS calls at once to a box, each listening to the greeting and
beep, then speaking for SPEAK seconds (RTP in and out, the listener, the recorder, the
disk). Prints figures; asserts nothing. Goals (issue 11): under 1 % of a core per call
here (a Pi Zero 2 W is 15-20x slower and must hold 8 calls beside its lines), and the
99th percentile of outgoing packet lateness under 10 ms with 8 calls.

    PYTHONPATH=firmware python bench/sip_bench.py [--calls 8] [--speak 20]
"""

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import test_sip_sipp as scenarios  # noqa: E402
from linebox.sip import server as sipserver  # noqa: E402
from linebox.wavfile import read_wav  # noqa: E402
from sipkit import PASSWORDS, SipDaemon, free_port, write_config  # noqa: E402
from speechdata import speech_dir  # noqa: E402 - the project's own test speech

SPEECH = speech_dir() / "fsdd-george.wav"


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sys_seconds() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def thread_seconds() -> dict[str, float]:
    """CPU seconds of each thread of this process so far, by thread name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(tid), "other")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def unpaced_frame_cost(frames: int = 1500) -> float:
    """Seconds of CPU per 20 ms frame of one call, all its work in one thread without
    pacing: RTP in (queued on a loopback socket) and out, G.711, the listener, a prompt
    then hear_caller (the recording loop)."""
    import socket
    import struct

    from linebox.calls.engine import LineRunner
    from linebox.calls.flows import hear_caller
    from linebox.dsp import g711
    from linebox.events import Bus
    from linebox.sip.rtp import SipLine
    from linebox.sip.sdp import Media

    speech = read_wav(SPEECH)
    speech = (speech * (frames * 160 // len(speech) + 1))[:frames * 160]
    ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    ours.bind(("127.0.0.1", 0))
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    line = SipLine(ours, Media("127.0.0.1", phone.getsockname()[1], "PCMU", 0, 101, "sendrecv"),
                   "127.0.0.1", sleep=lambda s: None)
    for i in range(frames):
        phone.sendto(struct.pack("!BBHII", 0x80, 0, i & 0xFFFF, 1000 + 160 * i, 5)
                     + g711.ulaw_encode(speech[i * 160:(i + 1) * 160]), ours.getsockname())

    def flow(call):
        yield from call.play("prompt", speech[:frames * 80])
        yield from hear_caller(call, 3600, 3600)
    runner = LineRunner(line, None, "us", Bus(), flow, rings_needed=lambda: 0)
    runner.start_call(flow, None)
    t0 = time.process_time()
    for _ in range(frames):
        runner.process(line.tick(runner.out))
    return (time.process_time() - t0) / frames


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=8)
    ap.add_argument("--speak", type=float, default=20.0, help="seconds each caller speaks")
    args = ap.parse_args()
    from linebox import log
    log.setup("warning")

    lines = []
    original = sipserver.SipService._start_call

    def measured(self, call, *rest):
        call.line.measure = True
        lines.append(call.line)
        return original(self, call, *rest)
    sipserver.SipService._start_call = measured

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        server = SipDaemon(write_config(tmp, free_port()))
        try:
            speech = read_wav(SPEECH)
            loops = int(args.speak * 8000 / len(speech)) + 1
            scenarios._ulaw_wav(tmp / "speech.wav", (speech * loops)[:int(args.speak * 8000)])
            scenario = (scenarios.UAC.replace("PASSWORD", PASSWORDS["201"])
                        .replace("SPEECH_FILE", str(tmp / "speech.wav"))
                        .replace("TALK_MS", str(int(args.speak * 1000) + 12000)))
            marks = {}

            def steady(ev):
                # While every call records and none has ended: the steady state of a call.
                if ev.get("event") == "record_start":
                    marks["started"] = marks.get("started", 0) + 1
                    if marks["started"] == args.calls:
                        marks["from"] = (cpu_seconds(), time.monotonic())
                elif ev.get("event") == "record_end" and "from" in marks and "to" not in marks:
                    marks["to"] = (cpu_seconds(), time.monotonic())
            server.daemon.app.bus.subscribe(steady)
            time.sleep(3.0)          # the start's own work (loading prompts) is over
            idle0, w0 = cpu_seconds(), time.monotonic()
            time.sleep(3.0)
            idle = (cpu_seconds() - idle0) / (time.monotonic() - w0)
            threads0 = thread_seconds()
            c0, s0, w0 = cpu_seconds(), sys_seconds(), time.monotonic()
            res = scenarios._sipp(tmp, server, scenario, "-s", "101", "-m", str(args.calls), "-l",
                                  str(args.calls), "-r", str(args.calls), "-auth_uri",
                                  f"101@127.0.0.1:{server.port}", timeout=int(args.speak) + 90)
            wall = time.monotonic() - w0
            threads1 = thread_seconds()
            cpu = cpu_seconds() - c0 - idle * wall
            kernel = sys_seconds() - s0
            saved = len(server.store.messages("101"))
        finally:
            server.stop()
    call_seconds = sum(len(line.lateness) for line in lines) * 0.02
    late = sorted(x for line in lines for x in line.lateness)
    p = (lambda q: late[min(len(late) - 1, int(q * len(late)))] * 1000) if late else (lambda q: float("nan"))
    print(f"SIP voicemail calls: {args.calls} at once, {args.speak:.0f} s of speech each "
          f"(sipp exit {res.returncode}, {saved} messages saved)")
    print(f"  idle server: {100 * idle:.2f} % of a core; machine load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs (figures grow with it)")
    frame = unpaced_frame_cost()
    print(f"  one call's own work, unpaced in one thread: {frame * 1e6:.0f} us a frame = "
          f"{100 * frame / 0.02:.2f} % of a core")
    if "from" in marks and "to" in marks:
        (c1, t1), (c2, t2) = marks["from"], marks["to"]
        per = (c2 - c1 - idle * (t2 - t1)) / (t2 - t1) / args.calls
        print(f"  CPU per call while all {args.calls} record: {100 * per:.2f} % of a core "
              f"(over {t2 - t1:.1f} s)   goal < 1 %")
    print(f"  CPU per call, whole calls (set-up, greeting, saving): {100 * cpu / max(call_seconds, 1e-9):.2f} % "
          "of a core "
          f"({cpu:.2f} s CPU, {kernel:.2f} s of it in the kernel, over {call_seconds:.0f} call-seconds)"
          "")
    busy = {n: threads1.get(n, 0.0) - threads0.get(n, 0.0) for n in threads1}
    print("  CPU by thread over the calls: " + ", ".join(
        f"{n} {v:.2f} s" for n, v in sorted(busy.items(), key=lambda kv: -kv[1]) if v >= 0.01))
    print(f"  outgoing RTP lateness: p50 {p(0.5):.2f} ms, p99 {p(0.99):.2f} ms, max {p(1.0):.2f} ms "
          f"({len(late)} packets)   goal p99 < 10 ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
