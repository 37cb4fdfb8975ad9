"""Running the real firmware on simulated lines inside the test process."""

import tomllib
from array import array
from pathlib import Path

from linebox.config import parse_config
from linebox.dsp import gen
from linebox.sim.runner import build, run
from linebox.sim.scenario import load_scenario
from linebox.voicemail.pins import hash_pin
from linebox.wavfile import read_wav, write_wav

PIN = "4321"
_PIN_HASH = hash_pin(PIN)
START = 1795000000.0   # a fixed virtual wall clock for repeatable runs

BOX = """
[[box]]
number = "{number}"
name = "Box {number}"
pin_hash = "{pin_hash}"
max_messages = {max_messages}
max_message_seconds = {max_seconds}
retract_minutes = 15
"""


def config_text(data_dir: Path, lines=((1, "100", "us"),), boxes=("100",), rings=2,
                toll_saver=0, max_messages=100, max_seconds=60, attendant: str = "",
                line_extra: str = "") -> str:
    out = [f'[device]\nid = "test"\ndata_dir = "{data_dir}"\n']
    for lid, route, plan in lines:
        out.append(f'[[line]]\nid = {lid}\ndriver = "sim"\nplan = "{plan}"\nrings = {rings}\n'
                   f'toll_saver_rings = {toll_saver}\nroute = "{route}"\n{line_extra}\n')
    for b in boxes:
        out.append(BOX.format(number=b, pin_hash=_PIN_HASH, max_messages=max_messages,
                              max_seconds=max_seconds))
    out.append(attendant)
    return "\n".join(out)


class Sim:
    """One data folder, one config; each `run` is one `linebox sim` over a scenario."""

    def __init__(self, tmp_path: Path, **config) -> None:
        self.tmp = tmp_path
        self.data = tmp_path / "data"
        self.config_path = tmp_path / "linebox.toml"
        self.config_path.write_text(config_text(self.data, **config))
        self.config = parse_config(tomllib.loads(self.config_path.read_text()), str(self.config_path))
        self.app = None
        self.runs = 0

    def write_scenario(self, text: str) -> Path:
        self.runs += 1
        path = self.tmp / f"scenario{self.runs}.toml"
        path.write_text(text)
        return path

    def run(self, scenario: str, start: float = START) -> list[dict]:
        path = self.write_scenario(scenario)
        app, exchange, transcript = build(self.config, load_scenario(path), None, True, clock_start=start)
        self.app = app
        try:
            run(app, exchange, transcript)
        finally:
            app.close()
        return transcript.events

    def messages(self, box=None):
        from linebox.voicemail.store import Store
        s = Store(self.data, self.config.boxes)
        s.open()
        try:
            return s.messages(box)
        finally:
            s.close()


def speech_wav(tmp_path: Path, speech_file: Path, seconds: float, offset: float = 5.0,
               name: str = "speech.wav") -> Path:
    """A few seconds of real speech as a caller's WAV."""
    s = read_wav(speech_file)
    start = int(offset * 8000)
    clip = s[start:start + int(seconds * 8000)]
    path = tmp_path / name
    write_wav(path, clip)
    return path


def tone_wav(tmp_path: Path, freq: float, seconds: float, name: str) -> Path:
    path = tmp_path / name
    write_wav(path, gen.tone(freq, seconds, -15.0))
    return path


def of(events, kind, **match) -> list[dict]:
    return [e for e in events if e["event"] == kind and all(e.get(k) == v for k, v in match.items())]


def names(events, kind="prompt") -> list[str]:
    return [e["name"] for e in events if e["event"] == kind]


def silence_array(seconds: float) -> array:
    return gen.silence(seconds)
