"""Shared fixtures: the shared speech recordings and helpers to run the CLI."""

import logging
import operator
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from linebox import FRAME
from speechdata import speech_dir

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def speech_files() -> list[Path]:
    """The project's recorded speech (tests/data/speech) as WAV files."""
    folder = speech_dir()
    files = sorted(folder.glob("*.wav"))
    if not files:
        pytest.fail(f"no speech recordings in {folder}")
    return files


def run_linebox(*args, input=None, check=False, timeout=120) -> subprocess.CompletedProcess:
    """Run the real `linebox` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "linebox", *map(str, args)],
        input=input, capture_output=True, timeout=timeout, check=check,
    )


def run_detector(detector, samples) -> list[dict]:
    """Feed ``samples`` to a DSP detector in 160-sample frames (the last one zero-padded)
    with each frame's energy, as the listener does; return feed() and flush() events."""
    sig = array("h", samples)
    sig.extend([0] * (-len(sig) % FRAME))
    events = []
    for i in range(0, len(sig), FRAME):
        frame = sig[i:i + FRAME]
        events += detector.feed(frame, sum(map(operator.mul, frame, frame)))
    return events + detector.flush()


class LogRecords(logging.Handler):
    """Every record a logger emits, by level."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def at(self, level):
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture
def store_log():
    """What the store logs, every module of ``linebox.voicemail`` (attached to that
    logger itself: immune to propagate=False)."""
    handler = LogRecords()
    logger = logging.getLogger("linebox.voicemail")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)
