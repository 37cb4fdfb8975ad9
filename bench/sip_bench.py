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
import resource
import sys
import tempfile
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import test_sip_sipp as scenarios  # noqa: E402
from linebox.sip import server as sipserver  # noqa: E402
from linebox.wavfile import read_wav  # noqa: E402
from sipkit import PASSWORDS, SipDaemon, free_port, write_config  # noqa: E402

SPEECH = ROOT.parent / "shared" / "data" / "speech" / "fsdd-george.wav"


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


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
            speech = read_wav(SPEECH) if SPEECH.exists() else array("h", [3000, -3000] * 4000)
            loops = int(args.speak * 8000 / len(speech)) + 1
            scenarios._ulaw_wav(tmp / "speech.wav", (speech * loops)[:int(args.speak * 8000)])
            scenario = (scenarios.UAC.replace("PASSWORD", PASSWORDS["201"])
                        .replace("SPEECH_FILE", str(tmp / "speech.wav"))
                        .replace("GREETING_MS", "11500").replace("SPEECH_MS", str(int(args.speak * 1000) + 500)))
            idle0, w0 = cpu_seconds(), time.monotonic()
            time.sleep(3.0)
            idle = (cpu_seconds() - idle0) / (time.monotonic() - w0)
            c0, w0 = cpu_seconds(), time.monotonic()
            res = scenarios._sipp(tmp, server, scenario, "-s", "101", "-m", str(args.calls), "-l",
                                  str(args.calls), "-r", str(args.calls), "-auth_uri",
                                  f"101@127.0.0.1:{server.port}", timeout=int(args.speak) + 90)
            wall = time.monotonic() - w0
            cpu = cpu_seconds() - c0 - idle * wall
            saved = len(server.store.messages("101"))
        finally:
            server.stop()
    call_seconds = sum(len(line.lateness) for line in lines) * 0.02
    late = sorted(x for line in lines for x in line.lateness)
    p = (lambda q: late[min(len(late) - 1, int(q * len(late)))] * 1000) if late else (lambda q: float("nan"))
    print(f"SIP voicemail calls: {args.calls} at once, {args.speak:.0f} s of speech each "
          f"(sipp exit {res.returncode}, {saved} messages saved)")
    print(f"  idle server: {100 * idle:.2f} % of a core")
    print(f"  CPU per call: {100 * cpu / max(call_seconds, 1e-9):.2f} % of a core "
          f"({cpu:.2f} s CPU over {call_seconds:.0f} call-seconds)   goal < 1 %")
    print(f"  outgoing RTP lateness: p50 {p(0.5):.2f} ms, p99 {p(0.99):.2f} ms, max {p(1.0):.2f} ms "
          f"({len(late)} packets)   goal p99 < 10 ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
