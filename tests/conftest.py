"""Shared fixtures: the shared speech recordings and helpers to run the CLI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEECH_DIR = Path(os.environ.get("LINEBOX_SPEECH_DIR", ROOT.parent / "shared" / "data" / "speech"))


@pytest.fixture(scope="session")
def speech_files() -> list[Path]:
    files = sorted(SPEECH_DIR.glob("*.wav"))
    if not files:
        pytest.fail(f"no speech recordings in {SPEECH_DIR}")
    return files


def run_linebox(*args, input=None, check=False, timeout=120) -> subprocess.CompletedProcess:
    """Run the real `linebox` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "linebox", *map(str, args)],
        input=input, capture_output=True, timeout=timeout, check=check,
    )
