"""`make bench`: speed of the line listener and its detectors, beside multimon-ng.

Prints figures; asserts nothing. The goals: the whole listener at least 300x faster
than real time per line on this 2-core machine (issue 2), 1,000x (issue 14). The
listener is timed as it runs before the answer (ringing: FSK caller ID on) and during a
call (``calls/engine.py`` turns FSK caller ID off when it answers).

``--only listener,callerid,multimon,sim,memory,latency`` runs some parts only.
``bench/ab.py`` times this tree's listener against a git revision's in one process
(steadier than two runs on a busy machine) and checks that their events are the same.
"""

import operator
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mix import CACHE, RATE, build_mix  # noqa: E402

from linebox import FRAME  # noqa: E402
from linebox.dsp.listener import Listener  # noqa: E402

ROOT_DEMO = Path(__file__).resolve().parent.parent / "firmware" / "linebox" / "sim" / "demo_data" / "caller.wav"

_mul = operator.mul


# The listener and its detectors are timed in CPU time of this process (best of two
# runs): on a quiet machine that is the wall time; on a busy one it leaves out the time
# other processes held the CPU.


def frames_of(samples):
    n = len(samples) - len(samples) % FRAME
    return [samples[i:i + FRAME] for i in range(0, n, FRAME)]


def time_listener(frames, plan="us", callerid=True) -> tuple[float, int]:
    lst = Listener(plan, callerid=callerid)
    t0 = time.process_time()
    nev = 0
    for f in frames:
        ev = lst.feed(f)
        if ev:
            nev += len(ev)
    nev += len(lst.flush())
    return time.process_time() - t0, nev


def time_detector(det, frames) -> float:
    energies = [sum(map(_mul, f, f)) for f in frames]
    t0 = time.process_time()
    for f, e in zip(frames, energies, strict=True):
        det.feed(f, e)
    det.flush()
    return time.process_time() - t0


def bench_listener(mix) -> None:
    frames = frames_of(mix)
    audio_s = len(frames) * FRAME / RATE
    print(f"line audio: {audio_s / 60:.1f} min mix of speech, silence, music, keys, tones")
    for plan in ("us", "de"):
        for callerid, when in ((True, "ringing, FSK on"), (False, "in a call, FSK off")):
            best = min(time_listener(frames, plan, callerid)[0] for _ in range(2))
            print(f"  listener ({plan}, {when:<18}): {best:6.2f} s  = {audio_s / best:6.0f}x"
                  f" real time  ({best / len(frames) * 1e6:5.1f} us/frame)")
    from linebox.dsp.alert import AlertToneDetector
    from linebox.dsp.callerid import CallerIdDetector
    from linebox.dsp.dtmf import DtmfDetector
    from linebox.dsp.progress import ProgressDetector
    from linebox.dsp.vad import VoiceActivityDetector
    for name, det in (("dtmf", DtmfDetector()), ("progress", ProgressDetector("us")),
                      ("callerid", CallerIdDetector("bell202")), ("alert", AlertToneDetector()),
                      ("vad", VoiceActivityDetector())):
        t = time_detector(det, frames)
        print(f"    {name:<9} {t:6.2f} s  = {audio_s / t:7.0f}x real time")


def bench_memory() -> None:
    """What one more line costs in memory, and the whole firmware's peak in `linebox sim`."""
    import os
    import tracemalloc

    import linebox.dsp.listener  # noqa: F401 - module tables are shared by every line

    Listener("us")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = [Listener("us") for _ in range(8)]
    per_line = (tracemalloc.get_traced_memory()[0] - before) / len(keep)
    tracemalloc.stop()
    print(f"  memory: {per_line / 1024:.0f} KiB per line's listener (module tables shared)")
    del keep
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        (tmp / "c.toml").write_text(f'[device]\ndata_dir = "{tmp / "d"}"\n[[line]]\nid = 1\ndriver = "sim"\n'
                                    'rings = 2\nroute = "100"\n[[box]]\nnumber = "100"\npin_required = false\n')
        (tmp / "s.toml").write_text('[[call]]\nline = 1\nat = 1\nsteps = [ { wait = "beep" }, '
                                    '{ say = "' + str(ROOT_DEMO) + '" }, { hangup = "busy" } ]\n')
        # This child's own peak (os.wait4), not RUSAGE_CHILDREN's: that is the largest of
        # every child this bench ran before (the caller-ID bench's tools, 68 MiB).
        proc = subprocess.Popen([sys.executable, "-m", "linebox", "sim", str(tmp / "s.toml"), "--config",
                                 str(tmp / "c.toml"), "--data", str(tmp / "d")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"linebox sim failed ({proc.returncode})")
    peak = usage.ru_maxrss
    print(f"  memory: `linebox sim` (one call, one message) peaks at {peak / 1024:.0f} MiB RSS")


def bench_callerid() -> None:
    from linebox.dsp.callerid import CallerIdDetector
    from linebox.dsp.fskmod import callerid_burst, encode_mdmf

    for std in ("bell202", "v23"):
        burst = callerid_burst(std, encode_mdmf("5551234567", "JOHN DOE", "11221030"))
        sig = burst * 20
        frames = frames_of(sig)
        det = CallerIdDetector(std)
        t = time_detector(det, frames)
        secs = len(frames) * FRAME / RATE
        print(f"  caller-ID demodulator ({std}) during bursts: {secs / t:6.0f}x real time"
              f" ({t / len(frames) * 1e6:.0f} us/frame)")


def bench_multimon(mix) -> None:
    mm = shutil.which("multimon-ng")
    sox = shutil.which("sox")
    if not mm or not sox:
        print("  multimon-ng: not installed (apt-get install multimon-ng sox)")
        return
    src = CACHE / "mix10.wav"
    with tempfile.TemporaryDirectory() as td:
        raw = Path(td) / "mix.raw"
        # multimon-ng reads raw 16-bit audio at 22050 Hz.
        subprocess.run([sox, str(src), "-t", "raw", "-r", "22050", "-e", "signed", "-b", "16",
                        "-c", "1", str(raw)], check=True)
        audio_s = len(mix) / RATE
        for demods in (["DTMF"], ["DTMF", "CLIPFSK"]):
            args = [mm, "-q", "-t", "raw"]
            for d in demods:
                args += ["-a", d]
            t0 = time.perf_counter()
            subprocess.run(args + [str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t = time.perf_counter() - t0
            print(f"  multimon-ng ({'+'.join(demods)}, C, 22.05 kHz): {t:5.2f} s"
                  f" = {audio_s / t:6.0f}x real time")


def bench_sim() -> None:
    """A 10-minute scenario of busy calls through `linebox sim` (in process)."""
    import tomllib

    from mix import _speech

    from linebox.config import parse_config
    from linebox.sim.runner import build, run
    from linebox.sim.scenario import load_scenario
    from linebox.voicemail.pins import hash_pin
    from linebox.wavfile import write_wav

    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        write_wav(tmp / "talk.wav", _speech(40.0, 3.0))
        cfg = parse_config(tomllib.loads(
            f'[device]\ndata_dir = "{tmp / "data"}"\n'
            '[[line]]\nid = 1\ndriver = "sim"\nrings = 2\nroute = "100"\n'
            f'[[box]]\nnumber = "100"\npin_hash = "{hash_pin("1234")}"\n'), "bench.toml")
        call = ('[[call]]\nline = 1\nafter = 2\ncaller = {{ number = "555000{i:04d}" }}\n'
                'steps = [ { wait = "beep" }, { say = "talk.wav" }, { silence = 2 }, { hangup = "busy" } ]\n')
        listen = ('[[call]]\nline = 1\nafter = 2\nsteps = [ { wait = "prompt:greeting" }, { dtmf = "*" }, '
                  '{ wait = "prompt:pin" }, { dtmf = "1234#" }, { wait = "prompt:menu" }, { dtmf = "1" }, '
                  '{ wait = { seconds = 60 } }, { hangup = "busy" } ]\n')
        (tmp / "s.toml").write_text("".join(call.replace("{i:04d}", f"{i:04d}").replace("{{", "{").replace("}}", "}")
                                            for i in range(9)) + listen)
        app, exchange, transcript = build(cfg, load_scenario(tmp / "s.toml"), None, True)
        t0 = time.perf_counter()
        run(app, exchange, transcript)
        t = time.perf_counter() - t0
        app.close()
        saved = sum(1 for e in transcript.events if e["event"] == "message_saved")
        print(f"  linebox sim: {exchange.now / 60:.1f} virtual minutes ({saved} messages, a login)"
              f" in {t:.2f} s = {exchange.now / t:.0f}x real time")


PARTS = ("listener", "callerid", "multimon", "sim", "memory", "latency")


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(PARTS),
                    help="comma-separated parts to run (" + ", ".join(PARTS) + ")")
    only = set(ap.parse_args(argv).only.split(","))
    if only - set(PARTS):
        ap.error(f"unknown part(s): {', '.join(sorted(only - set(PARTS)))}")
    mix = build_mix() if only & {"listener", "multimon"} else None
    if only & {"listener", "callerid", "multimon"}:
        print("== line listener (issues 2 and 14)")
    if "listener" in only:
        bench_listener(mix)
    if "callerid" in only:
        bench_callerid()
    if "multimon" in only:
        bench_multimon(mix)
    if only & {"sim", "memory"}:
        print("== simulator (issue 3)")
    if "sim" in only:
        bench_sim()
    if "memory" in only:
        bench_memory()
    if "latency" in only:
        print("== reporting (issue 5): message saved -> MQTT event at a subscriber")
        from report_latency import bench_latency
        bench_latency()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
