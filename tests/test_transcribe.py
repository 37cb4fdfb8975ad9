"""Transcription: a real Wyoming server (the wyoming library's, with PocketSphinx) on
loopback, up, down, slow, refusing and answering garbage; the durable queue; the whole
path from a simulated call to `linebox messages --json`."""

import json
import logging
import socket
import subprocess
import sys
import time
from array import array
from pathlib import Path

import pytest

from conftest import run_linebox
from linebox.config import TranscriptionConfig
from linebox.report.transcribe import (
    PocketsphinxEngine,
    Transcriber,
    TranscriptionError,
    WyomingEngine,
    upsample2,
)
from linebox.wavfile import read_wav, write_wav
from simkit import Sim, of, speech_wav

SERVER = Path(__file__).with_name("wyoming_stt_server.py")
CALLER = 'caller = { number = "5551234567", name = "JOHN DOE" }'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SttServer:
    """The test Wyoming server in its own process, on a free loopback port."""

    def __init__(self, tmp: Path, mode: str = "ok") -> None:
        self.port = free_port()
        self.log = tmp / f"stt-{self.port}.jsonl"
        self.uri = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, str(SERVER), str(self.port), "--mode", mode,
                                      "--log", str(self.log)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("the Wyoming test server did not start") from None
                time.sleep(0.1)
        raise RuntimeError("the Wyoming test server did not listen within 30 s")

    def requests(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def server(tmp_path):
    s = SttServer(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def speech(speech_files) -> array:
    return read_wav(speech_files[2])[8000 * 20:8000 * 23]


def _cfg(**kw) -> TranscriptionConfig:
    base = {"engine": "wyoming", "uri": "tcp://127.0.0.1:9", "timeout_seconds": 20.0,
            "give_up_hours": 1.0, "email_wait_seconds": 60.0}
    base.update(kw)
    return TranscriptionConfig(**base)


def test_a_real_wyoming_server_transcribes_the_speech_it_was_sent(server, speech):
    text = WyomingEngine(server.uri, timeout=30).transcribe(speech, "en")
    words = text.split()
    assert words and all(w.isalpha() or "'" in w for w in words)
    (req,) = server.requests()
    # What went over the wire: the box's language and exactly our audio, 8 kHz 16-bit mono.
    assert req["language"] == "en"
    assert req["format"] == {"rate": 8000, "width": 2, "channels": 1}
    assert req["bytes"] == 2 * len(speech)


@pytest.mark.parametrize("mode, says", [("error", "the server said: model not loaded"),
                                        ("garbage", "sent no Wyoming event"),
                                        ("badtext", "the transcript is not text"),
                                        ("close", "closed the connection")])
def test_a_refusing_or_broken_server_is_a_clear_error(tmp_path, speech, mode, says):
    s = SttServer(tmp_path, mode)
    try:
        with pytest.raises(TranscriptionError, match=says):
            WyomingEngine(s.uri, timeout=10).transcribe(speech, "en")
    finally:
        s.stop()


def test_a_slow_server_times_out(tmp_path, speech):
    s = SttServer(tmp_path, "slow")
    try:
        with pytest.raises(TranscriptionError, match="no transcript within 1 s"):
            WyomingEngine(s.uri, timeout=1).transcribe(speech, "en")
    finally:
        s.stop()


def test_a_server_that_is_down_is_a_clear_error(speech):
    with pytest.raises(TranscriptionError, match="127.0.0.1"):
        WyomingEngine(f"tcp://127.0.0.1:{free_port()}", timeout=5).transcribe(speech, "en")


def _queue(tmp_path, engine, clock, wav):
    t = Transcriber(_cfg(), tmp_path / "q", engine, read_wav, clock=clock)
    t.enqueue("000001", str(wav), "en")
    return t


class Flaky:
    """An engine that fails ``n`` times, then answers."""

    name = "flaky"

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def transcribe(self, samples, language):
        self.calls += 1
        if self.calls <= self.n:
            raise TranscriptionError("connection refused")
        return "call me back"


def test_the_queue_retries_with_backoff_and_survives_a_restart(tmp_path, speech):
    wav = tmp_path / "m.wav"
    write_wav(wav, speech)
    now = [1000.0]
    q = _queue(tmp_path, Flaky(2), lambda: now[0], wav)
    assert q.pump() == 0 and q.pending() == ["000001"]
    assert q.pump() == 0                      # not due again yet (backoff)
    # A restart: a new queue over the same folder still has the job.
    engine = Flaky(2)
    engine.calls = 1                          # it already failed once
    q2 = Transcriber(_cfg(), tmp_path / "q", engine, read_wav, clock=lambda: now[0])
    assert q2.pending() == ["000001"]
    now[0] += 5.0
    assert q2.pump() == 0                     # second failure
    now[0] += 10.0
    assert q2.pump() == 1
    assert q2.take_results() == [("000001", "call me back", "flaky")]
    assert q2.pending() == []


def test_the_queue_gives_up_after_the_configured_time_with_a_log_line(tmp_path, speech, caplog):
    wav = tmp_path / "m.wav"
    write_wav(wav, speech)
    now = [1000.0]
    q = _queue(tmp_path, Flaky(10**6), lambda: now[0], wav)
    q.pump()
    now[0] += 3600.0
    with caplog.at_level(logging.WARNING, logger="linebox.report.transcribe"):
        assert q.pump() == 1
    assert q.pending() == []
    ((msg, text, why),) = q.take_results()
    assert msg == "000001" and text is None and why.startswith("given up")
    assert any("given up after 2 tries" in r.getMessage() for r in caplog.records)


def test_a_job_file_that_is_not_json_is_dropped_not_fatal(tmp_path, speech):
    q = Transcriber(_cfg(), tmp_path / "q", Flaky(0), read_wav)
    (tmp_path / "q" / "000007.json").write_text("[[[")
    assert q.pump() == 0 and q.pending() == []


def test_pocketsphinx_runs_on_the_pi_side_with_the_model_its_wheel_carries(speech):
    text = PocketsphinxEngine().transcribe(speech, "en")
    assert text and text == " ".join(text.split())
    with pytest.raises(TranscriptionError, match="no model for language 'de'"):
        PocketsphinxEngine().transcribe(speech, "de")


def test_upsampling_keeps_every_sample_and_interpolates_between():
    assert list(upsample2(array("h", [0, 100, -100]))) == [0, 50, 100, 0, -100, -100]


def test_a_message_left_by_phone_gets_its_transcript_everywhere(tmp_path, speech_files, server):
    sim = Sim(tmp_path)
    cfg = sim.config_path.read_text() + (
        f'\n[transcription]\nengine = "wyoming"\nuri = "{server.uri}"\ntimeout_seconds = 30\n')
    sim.config_path.write_text(cfg)
    voice = speech_wav(tmp_path, speech_files[0], 3.0)
    scen = sim.write_scenario(f'[[call]]\nline = 1\nat = 1.0\n{CALLER}\nsteps = [\n'
                              f'{{ wait = "beep" }}, {{ say = "{voice}" }}, {{ hangup = "busy" }}\n]\n')
    done = run_linebox("sim", scen, "--config", sim.config_path, "--data", sim.data, "--json",
                       timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    (saved,) = of(events, "message_saved")
    (heard,) = of(events, "message_transcribed")
    assert heard["id"] == saved["id"] and heard["engine"] == "wyoming" and heard["transcript"]
    listed = run_linebox("messages", "--config", sim.config_path, "--data", sim.data, "--json")
    (msg,) = [json.loads(line) for line in listed.stdout.decode().splitlines()]
    assert msg["transcript"] == heard["transcript"] and msg["transcript_engine"] == "wyoming"
    # Only the caller's message went out: one request, as long as the saved message.
    (req,) = server.requests()
    assert req["bytes"] == 2 * round(msg["seconds"] * 8000)


def test_transcription_config_is_checked(tmp_path):
    from linebox.config import ConfigError, parse_config

    base = {"line": [{"id": 1, "driver": "sim", "route": "100"}],
            "box": [{"number": "100", "pin_required": False}]}
    cfg = parse_config({**base, "transcription": {"engine": "wyoming", "uri": "tcp://10.0.0.2:10300"}})
    assert cfg.transcription.uri == "tcp://10.0.0.2:10300"
    assert parse_config({**base, "transcription": {"engine": "pocketsphinx", "enabled": False}}).transcription is None
    with pytest.raises(ConfigError, match=r"\[transcription\] key 'uri': missing"):
        parse_config({**base, "transcription": {"engine": "wyoming"}})
    with pytest.raises(ConfigError, match=r"\[transcription\] key 'uri': must be like"):
        parse_config({**base, "transcription": {"engine": "wyoming", "uri": "http://x"}})
    model = parse_config({**base, "transcription": {"engine": "pocketsphinx", "model": str(tmp_path)}})
    assert model.transcription.model == tmp_path
    with pytest.raises(ConfigError, match=r"key 'model': no such folder"):
        parse_config({**base, "transcription": {"engine": "pocketsphinx", "model": str(tmp_path / "x")}})
    with pytest.raises(ConfigError, match=r"\[transcription\] key 'engine'"):
        parse_config({**base, "transcription": {"engine": "whisper"}})
