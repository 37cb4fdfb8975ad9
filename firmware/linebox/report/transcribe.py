"""Transcription: a saved message's speech as text, for the e-mail, MQTT and the portal.

Saving a message never waits for this. A message that is saved becomes a job in a
durable queue (``data_dir/transcribeq/``, one small JSON file a job, written atomically),
so a restart loses nothing; a worker thread sends the message's own WAV — the caller's
trimmed speech, never a greeting or a PIN — to the engine, retries with backoff while the
engine is down, and gives up after ``give_up_hours`` with one log line. Results come back
to the owner of the store through ``take_results()``, called on the thread that owns the
store (the daemon's housekeeping, the simulator's loop), which records them with
``Store.set_transcript``: the store then publishes ``message_transcribed``.

Engines:
- ``wyoming``: Home Assistant's speech protocol (the ``wyoming`` library from PyPI), to
  a speech-to-text server on the LAN (wyoming-faster-whisper, wyoming-whisper-cpp, the
  Home Assistant Whisper or Vosk add-ons).
- ``pocketsphinx``: on the Pi itself, with the US English model its wheel carries (or a
  model folder given by path). See the README for how good it is on telephone audio.
"""

import asyncio
import json
import logging
import os
import threading
import time
from array import array
from collections.abc import Callable
from pathlib import Path

from linebox import RATE
from linebox.backoff import Backoff
from linebox.errors import LineboxError
from linebox.fileio import write_file_atomic

log = logging.getLogger(__name__)

CHUNK_SAMPLES = 1024            # audio per Wyoming audio-chunk event (128 ms)
MAX_TRANSCRIPT_CHARS = 10_000   # a longer answer is garbage, not a voicemail
FIRST_RETRY = 5.0               # seconds; doubling up to MAX_RETRY
MAX_RETRY = 600.0
JOB_SUFFIX = ".json"


class TranscriptionError(LineboxError):
    """The engine did not give a usable transcript (down, slow, refusing, garbage)."""


# ---------------------------------------------------------------- engines


class WyomingEngine:
    """A Wyoming speech-to-text server at ``tcp://host:port``."""

    name = "wyoming"

    def __init__(self, uri: str, timeout: float = 60.0) -> None:
        self.uri = uri
        self.timeout = timeout

    def transcribe(self, samples: array, language: str | None) -> str:
        try:
            return asyncio.run(asyncio.wait_for(self._transcribe(samples, language), self.timeout))
        except TimeoutError:
            raise TranscriptionError(f"{self.uri}: no transcript within {self.timeout:g} s") from None
        except (OSError, ConnectionError) as e:
            raise TranscriptionError(f"{self.uri}: {e.strerror or e}") from None
        except TranscriptionError:
            raise
        except Exception as e:  # noqa: BLE001 - a broken server sends anything: never crash the worker
            raise TranscriptionError(f"{self.uri}: bad answer ({type(e).__name__}: {e})") from None

    async def _transcribe(self, samples: array, language: str | None) -> str:
        from wyoming.asr import Transcribe, Transcript
        from wyoming.audio import AudioChunk, AudioStart, AudioStop
        from wyoming.client import AsyncClient
        from wyoming.error import Error

        audio = dict(rate=RATE, width=2, channels=1)
        async with AsyncClient.from_uri(self.uri) as client:
            await client.write_event(Transcribe(language=language).event())
            await client.write_event(AudioStart(**audio).event())
            raw = samples.tobytes()
            step = CHUNK_SAMPLES * 2
            for i in range(0, len(raw), step):
                await client.write_event(AudioChunk(audio=raw[i:i + step], **audio).event())
            await client.write_event(AudioStop().event())
            while True:
                event = await client.read_event()
                if event is None:
                    raise TranscriptionError(f"{self.uri}: the server closed the connection "
                                             "without a transcript (or sent no Wyoming event)")
                if Transcript.is_type(event.type):
                    text = Transcript.from_event(event).text
                    return _checked(text, self.uri)
                if Error.is_type(event.type):
                    raise TranscriptionError(f"{self.uri}: the server said: {Error.from_event(event).text}")


class PocketsphinxEngine:
    """CMU PocketSphinx on the Pi itself (offline). Its model is for 16 kHz speech, so the
    8 kHz line audio is interpolated to 16 kHz first."""

    name = "pocketsphinx"

    def __init__(self, model: Path | None = None) -> None:
        self.model = model
        self._decoder = None

    def transcribe(self, samples: array, language: str | None) -> str:
        if language not in (None, "en"):
            raise TranscriptionError(f"pocketsphinx has no model for language {language!r}")
        try:
            decoder = self._get_decoder()
            decoder.start_utt()
            decoder.process_raw(upsample2(samples).tobytes(), full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
        except TranscriptionError:
            raise
        except Exception as e:  # noqa: BLE001 - a model problem is a transcription failure
            raise TranscriptionError(f"pocketsphinx: {e}") from None
        return _checked(hyp.hypstr if hyp is not None else "", "pocketsphinx")

    def _get_decoder(self):
        if self._decoder is None:
            try:
                from pocketsphinx import Decoder
            except ImportError:
                raise TranscriptionError("pocketsphinx is not installed (pip install pocketsphinx)") from None
            kwargs = {"samprate": 16000, "loglevel": "FATAL"}
            if self.model is not None:
                kwargs.update(hmm=str(self.model / "acoustic-model"),
                              lm=str(self.model / "language-model.lm.bin"),
                              dict=str(self.model / "pronounciation-dictionary.dict"))
            self._decoder = Decoder(**kwargs)
        return self._decoder


def upsample2(samples: array) -> array:
    """8 kHz to 16 kHz: every sample, then the mean of it and the next (linear
    interpolation; the telephone band ends at 3.4 kHz, where its loss is under 2 dB)."""
    out = array("h", bytes(4 * len(samples)))
    out[0::2] = samples
    nxt = samples[1:]
    nxt.append(samples[-1] if samples else 0)
    out[1::2] = array("h", map(lambda a, b: (a + b) >> 1, samples, nxt))
    return out


def _checked(text, where: str) -> str:
    if not isinstance(text, str):
        raise TranscriptionError(f"{where}: the transcript is not text")
    text = " ".join(text.split())
    if len(text) > MAX_TRANSCRIPT_CHARS:
        raise TranscriptionError(f"{where}: a {len(text)}-character transcript is not believable")
    if any(ord(ch) < 32 for ch in text):
        raise TranscriptionError(f"{where}: the transcript holds control characters")
    return text


def make_engine(cfg):
    """The engine a [transcription] table names (a one-line error if its library is
    missing: they are optional extras, `pip install linebox[transcribe]`)."""
    import importlib.util

    module = "wyoming" if cfg.engine == "wyoming" else "pocketsphinx"
    if importlib.util.find_spec(module) is None:
        raise LineboxError(f"[transcription] engine {cfg.engine!r} needs the Python package "
                           f"{module!r} (pip install {module})")
    if cfg.engine == "wyoming":
        return WyomingEngine(cfg.uri, timeout=cfg.timeout_seconds)
    return PocketsphinxEngine(cfg.model)


# ---------------------------------------------------------------- the queue


class Transcriber:
    """The durable queue and its worker. ``read_audio(path)`` reads a message's WAV."""

    def __init__(self, cfg, folder: Path, engine, read_audio: Callable[[Path], array],
                 clock: Callable[[], float] = time.time,
                 lookup: Callable[[str], dict | None] | None = None,
                 language_of: Callable[[str], str | None] = lambda box: None) -> None:
        self.cfg = cfg
        self.lookup = lookup
        self.language_of = language_of
        self.folder = Path(folder)
        self.engine = engine
        self.read_audio = read_audio
        self.clock = clock
        self._results: list[tuple[str, str | None, str]] = []   # (message, text or None, why)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.folder.mkdir(parents=True, exist_ok=True)

    # -- what the firmware calls --------------------------------------------------------
    def handle(self, ev: dict) -> None:
        """Bus subscriber: a saved message becomes a job (its WAV and its box's language)."""
        if ev.get("event") != "message_saved" or self.lookup is None:
            return
        rec = self.lookup(ev["id"])
        if rec is not None and rec.get("file"):
            self.enqueue(rec["id"], rec["file"], self.language_of(rec["box"]))

    def enqueue(self, message: str, file: str, language: str | None) -> None:
        job = {"message": message, "file": str(file), "language": language,
               "queued": self.clock(), "tries": 0, "next_try": 0.0}
        write_file_atomic(self._job_path(message), json.dumps(job).encode())
        self._wake.set()

    def take_results(self) -> list[tuple[str, str | None, str]]:
        """What finished since the last call: ``(message, transcript, engine)`` for a
        transcript, ``(message, None, reason)`` for one given up."""
        with self._lock:
            out, self._results = self._results, []
        return out

    def pending(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*" + JOB_SUFFIX))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="transcribe", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the jobs due now; True if none is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = self.clock()
            if not any((job := self._load(n)) and job["next_try"] <= now for n in self.pending()):
                return not self.pending()
            self._wake.set()
            time.sleep(0.05)
        return not self.pending()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the worker ----------------------------------------------------------------------
    def pump(self, now: float | None = None) -> int:
        """Try every job that is due; how many finished (transcribed or given up)."""
        done = 0
        for name in self.pending():
            if self._stopping.is_set():
                break
            now = self.clock() if now is None else now
            job = self._load(name)
            if job is None or job["next_try"] > now:
                continue
            done += self._try(job, now)
        return done

    def _try(self, job: dict, now: float) -> int:
        message = job["message"]
        try:
            samples = self.read_audio(Path(job["file"]))
        except Exception as e:  # noqa: BLE001 - a missing or unreadable file is final
            self._finish(message, None, f"message audio unreadable: {e}")
            return 1
        try:
            text = self.engine.transcribe(samples, job.get("language"))
        except TranscriptionError as e:
            job["tries"] += 1
            if now - job["queued"] >= self.cfg.give_up_hours * 3600.0:
                log.warning("transcription of message %s given up after %d tries: %s",
                            message, job["tries"], e)
                self._finish(message, None, f"given up: {e}")
                return 1
            delay = Backoff(FIRST_RETRY, MAX_RETRY).after(job["tries"])
            job["next_try"] = now + delay
            log.warning("transcription of message %s failed (try %d, again in %g s): %s",
                        message, job["tries"], delay, e)
            write_file_atomic(self._job_path(message), json.dumps(job).encode())
            return 0
        self._finish(message, text, self.engine.name)
        return 1

    def _finish(self, message: str, text: str | None, why: str) -> None:
        with self._lock:
            self._results.append((message, text, why))
        try:
            os.unlink(self._job_path(message))
        except FileNotFoundError:
            pass

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.pump()
            except Exception:  # noqa: BLE001 - the worker must outlive any one job
                log.exception("transcription worker")
            self._wake.wait(self._next_wait())
            self._wake.clear()

    def _next_wait(self) -> float:
        now = self.clock()
        waits = [job["next_try"] - now for name in self.pending() if (job := self._load(name))]
        return max(0.05, min(waits, default=60.0))

    def _load(self, name: str) -> dict | None:
        try:
            job = json.loads(self._job_path(name).read_bytes())
            if not isinstance(job, dict) or not isinstance(job.get("message"), str):
                raise ValueError("not a job")
            job.setdefault("tries", 0)
            job.setdefault("next_try", 0.0)
            job.setdefault("queued", self.clock())
            return job
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("transcription job %s is unreadable (%s); dropped", name, e)
            self._job_path(name).unlink(missing_ok=True)
            return None

    def _job_path(self, message: str) -> Path:
        if not message.isascii() or not message.isdigit():
            raise ValueError(f"not a message id: {message!r}")
        return self.folder / (message + JOB_SUFFIX)
