"""How long from a message being saved to its MQTT event reaching a subscriber.

A real store saves short messages one after another; the clock starts when the store
publishes ``message_saved`` on the bus and stops when a subscriber of ``<base>/event``
on a private mosquitto receives the event. In between: the outbox write (fsync), the
sender thread, the broker. Prints the median and the 99th percentile; asserts nothing.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "firmware"))

import paho.mqtt.client as paho  # noqa: E402

from linebox.config import BoxConfig, DeviceConfig, MqttConfig  # noqa: E402
from linebox.events import Bus  # noqa: E402
from linebox.report.mqtt import MqttReporter  # noqa: E402
from linebox.report.outbox import Outbox  # noqa: E402
from linebox.voicemail.store import Store  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_broker(folder: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    + ("user root\n" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("mosquitto did not start") from None
            time.sleep(0.02)


class _State:
    def __init__(self, store: Store) -> None:
        self.store = store

    def line_states(self):
        return {1: "idle"}

    def box_counts(self):
        return {b: self.store.counts(b) for b in self.store.boxes}

    def line_settings(self):
        return {1: {"answering": True, "rings": 4}}


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def bench_latency(n: int = 200) -> dict:
    """Save ``n`` messages one at a time; returns and prints latency figures in ms."""
    with tempfile.TemporaryDirectory(prefix="linebox-bench-") as tmp:
        tmp = Path(tmp)
        broker, port = _start_broker(tmp)
        saved_at: dict[str, float] = {}
        arrived: dict[str, float] = {}
        got = threading.Condition()

        def on_message(client, userdata, msg):
            ev = json.loads(msg.payload)
            with got:
                arrived.setdefault(ev.get("message"), time.perf_counter())
                got.notify_all()

        sub = paho.Client(paho.CallbackAPIVersion.VERSION2)
        subscribed = threading.Event()
        sub.on_connect = lambda c, *a: c.subscribe("linebox/bench/event", qos=1)
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.on_message = on_message
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        bus = Bus()
        # First subscriber: the clock starts when the store publishes the fact.
        bus.subscribe(lambda ev: ev["event"] == "message_saved"
                      and saved_at.setdefault(ev["id"], time.perf_counter()))
        box = BoxConfig(number="100", name="Bench", pin_required=False, max_messages=n + 10)
        store = Store(tmp / "data", {"100": box}, bus=bus)
        store.open()
        reporter = MqttReporter(MqttConfig(host="127.0.0.1", port=port, discovery=False),
                                DeviceConfig(id="bench"), bus, Outbox(tmp / "data" / "outbox"),
                                _State(store), None)
        reporter.start()
        try:
            if not subscribed.wait(10):
                raise RuntimeError("bench subscriber did not subscribe")
            deadline = time.monotonic() + 10
            while not reporter.connected:
                if time.monotonic() > deadline:
                    raise RuntimeError("reporter did not connect")
                time.sleep(0.01)
            audio = array("h", [1000, -1000] * 400)          # 0.1 s
            latencies = []
            for _ in range(n):
                pending = store.start_recording("100", 1, "5551234567", "BENCH")
                pending.write(audio)
                rec = pending.finish()
                with got:
                    if not got.wait_for(lambda rec=rec: rec["id"] in arrived, timeout=10):
                        raise RuntimeError(f"event for message {rec['id']} never arrived")
                latencies.append((arrived[rec["id"]] - saved_at[rec["id"]]) * 1000)
        finally:
            reporter.stop()
            sub.disconnect()
            sub.loop_stop()
            store.close()
            broker.terminate()
            broker.wait(10)
    result = {"n": n, "median_ms": round(statistics.median(latencies), 2),
              "p99_ms": round(_percentile(latencies, 99), 2),
              "max_ms": round(max(latencies), 2)}
    print(f"report latency (message saved -> MQTT event at a subscriber, {n} messages, "
          f"outbox fsync included): median {result['median_ms']:.2f} ms, "
          f"p99 {result['p99_ms']:.2f} ms, max {result['max_ms']:.2f} ms")
    return result


if __name__ == "__main__":
    bench_latency(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
