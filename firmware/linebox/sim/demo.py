"""`linebox demo`: a complete story on a simulated line, told as a readable timeline.

A caller with caller ID leaves a message and hangs up into busy tone; the lamp blinks;
the owner calls in, logs in with the PIN, hears the message and saves it; the lamp goes
off. Everything runs through the real firmware: the exchange only makes line audio.
"""

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from linebox.voicemail.pins import hash_pin

DEMO_PIN = "1234"
HERE = Path(__file__).resolve().parent

CONFIG = """
[device]
id = "demo"
name = "Linebox demo"
data_dir = "{data}"

[[line]]
id = 1
driver = "sim"
plan = "us"
rings = 4
toll_saver_rings = 2
route = "100"

[[box]]
number = "100"
name = "Main office"
language = "en"
pin_hash = "{pin_hash}"
"""

SCENARIO = """
start = "2026-11-23T09:41:00-05:00"

[[call]]
line = 1
at = 1.0
caller = {{ number = "5551234567", name = "JOHN DOE" }}
steps = [
  {{ wait = "beep" }},
  {{ say = "{caller_wav}" }},
  {{ silence = 1.0 }},
  {{ hangup = "busy" }},
]

[[call]]
line = 1
after = 90
caller = {{ number = "5559876543", name = "OWNER" }}
steps = [
  {{ wait = "prompt:greeting" }},
  {{ silence = 1.5 }},
  {{ dtmf = "*" }},
  {{ wait = "prompt:pin" }},
  {{ silence = 1.0 }},
  {{ dtmf = "{pin}#" }},
  {{ wait = "prompt:menu" }},
  {{ silence = 1.0 }},
  {{ dtmf = "1" }},
  {{ wait = "prompt:message_menu" }},
  {{ silence = 0.5 }},
  {{ dtmf = "9" }},
  {{ wait = "prompt:no_more_messages" }},
  {{ wait = "prompt:menu" }},
  {{ silence = 0.5 }},
  {{ dtmf = "#" }},
  {{ wait = "prompt:goodbye" }},
  {{ silence = 2.0 }},
  {{ hangup = "dial" }},
]
"""


class Narrator:
    """Turns transcript events into sentences a person reads."""

    def __init__(self, out) -> None:
        self.out = out
        self.last_prompt = None
        self.masking = False

    def __call__(self, rec: dict) -> None:
        text = self.sentence(rec)
        if text:
            self.out.write(f"  {rec['t']:7.2f} s  {text}\n")

    def sentence(self, r: dict) -> str | None:
        e = r["event"]
        if e == "prompt":
            self.last_prompt = r["name"]
            self.masking = r["name"] == "pin"
            return f"Linebox plays \u00ab{r['name']}\u00bb"
        if e == "dtmf":
            digit = "\u2022" if self.masking and r["digit"] != "#" else r["digit"]
            if r["digit"] == "#":
                self.masking = False
            return f"    the caller presses {digit}"
        return {
            "incoming": lambda: f"The phone rings on line {r['line']}: {r.get('caller_name') or ''} {r.get('caller_number') or ''} is calling",
            "ring": lambda: f"  ring {r['n']}",
            "callerid": lambda: f"Caller ID heard between the rings: {r.get('number')} {r.get('name') or ''}",
            "answer": lambda: f"Linebox answers after {r['after_rings']} rings",
            "record_start": lambda: f"Recording a message for box {r['box']}",
            "caller_hangup": lambda: f"  the caller hangs up; the exchange sends {r.get('how')} tone",
            "hangup_detected": lambda: f"Linebox hears {r['cause']} tone: the caller is gone",
            "record_end": lambda: f"Recording ends ({r['reason']})",
            "message_saved": lambda: f"Message {r['id']} saved in box {r['box']}: {r['seconds']:.1f} s, trailing tone cut",
            "message_discarded": lambda: f"Message discarded ({r['reason']})",
            "led": lambda: f"*** The lamp of box {r['box']} is now {r['pattern'].upper()} ***",
            "login": lambda: f"Login to box {r['box']}: {'accepted' if r['ok'] else 'refused'}",
            "message_played": lambda: f"Playing message {r['id']}",
            "message_state": lambda: f"Message {r['id']} is now {r['state']}",
            "onhook": lambda: "Linebox hangs up",
            "call_end": lambda: "Call over",
            "missed_call": lambda: "Missed call",
        }.get(e, lambda: None)()


def main(args) -> int:
    import tomllib

    from linebox.config import parse_config
    from linebox.sim.runner import build, run
    from linebox.sim.scenario import load_scenario

    if args.log_level == "info":
        # The story is the output; the store's own info lines would interrupt it.
        logging.getLogger("linebox").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="linebox-demo-") as tmp:
        tmp_path = Path(tmp)
        data = tmp_path / "data"
        cfg_text = CONFIG.format(data=data, pin_hash=hash_pin(DEMO_PIN))
        config = parse_config(tomllib.loads(cfg_text), "demo.toml")
        scen_path = tmp_path / "demo-scenario.toml"
        scen_path.write_text(SCENARIO.format(caller_wav=HERE / "demo_data" / "caller.wav", pin=DEMO_PIN))
        scenario = load_scenario(scen_path)
        started = time.perf_counter()
        app, exchange, transcript = build(config, scenario, None, as_json=True)
        out = sys.stdout
        if not args.json:
            out.write("Linebox demo: one simulated phone line, box 100 \"Main office\", PIN 1234.\n")
            out.write("Everything below is heard by the real firmware through its DSP listener.\n\n")
            transcript.readers.append(Narrator(out))
        try:
            run(app, exchange, transcript)
            msgs = app.store.messages("100")
        finally:
            app.close()
        elapsed = time.perf_counter() - started
        if args.json:
            for rec in transcript.events:
                out.write(json.dumps(rec) + "\n")
            return 0
        out.write(f"\n{exchange.now:.0f} s of phone calls simulated in {elapsed:.1f} s.\n")
        out.write("Messages in box 100 now:\n")
        for m in msgs:
            out.write(f"  {m['id']}  {m['state']:<6} from {m['caller_number']} ({m['caller_name']}), "
                      f"{m['seconds']:.1f} s, received {m['received']}\n")
    return 0
