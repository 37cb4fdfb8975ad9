"""Streaming a message to disk while the caller speaks, so a crash keeps what was said.

A recording grows in ``<final name>.part``. Every write goes straight to the kernel
(no user-space buffer), so a killed process loses nothing it had written; every second
of audio the header is rewritten with the current length and the file is fsynced, so
even a power cut leaves a valid WAV up to the last second. ``finish`` cuts the
trailing tone or silence, fixes the header and renames the file to its final name.
"""

import logging
import os
import sys
from array import array
from pathlib import Path

from linebox import RATE
from linebox.fileio import fsync_dir
from linebox.wavfile import data_offset, wav_header

log = logging.getLogger(__name__)

HEADER = data_offset("pcm16")
MIN_RECOVER_SAMPLES = RATE // 2        # a crash-cut fragment shorter than this is noise
_BIG_ENDIAN = sys.byteorder == "big"


def part_path(path: Path) -> Path:
    """Where the recording for final ``path`` grows."""
    return path.with_name(path.name + ".part")


class Recording:
    """A pcm16 8 kHz mono WAV being written; see the module docstring."""

    def __init__(self, path: Path, clock_flush_samples: int = RATE) -> None:
        if clock_flush_samples <= 0:
            raise ValueError(f"clock_flush_samples must be positive, not {clock_flush_samples}")
        self.path = Path(path)
        self.part = part_path(self.path)
        self.samples = 0
        self._flush_every = clock_flush_samples
        self._next_flush = clock_flush_samples
        self._fd: int | None = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            os.write(self._fd, wav_header(0))
            os.fsync(self._fd)
            fsync_dir(self.part.parent)       # the .part must be found after a power cut
        except BaseException:
            self.abort()
            raise

    def write(self, samples: array) -> None:
        """Append samples (signed 16-bit); counted in samples, so flushes follow the audio."""
        if self._fd is None:
            raise ValueError(f"recording {self.path.name} is closed")
        if _BIG_ENDIAN:
            samples = array("h", samples)
            samples.byteswap()
        data = memoryview(samples).cast("B")
        while data:
            data = data[os.write(self._fd, data):]
        self.samples += len(samples)
        if self.samples >= self._next_flush:
            self._sync()
            self._next_flush = (self.samples // self._flush_every + 1) * self._flush_every

    def _sync(self) -> None:
        os.pwrite(self._fd, wav_header(self.samples), 0)
        os.fsync(self._fd)

    def finish(self, keep_samples: int | None = None) -> int:
        """Keep the first ``keep_samples`` (all if None), move the file to its final name
        durably and return how many samples it holds."""
        if self._fd is None:
            raise ValueError(f"recording {self.path.name} is closed")
        n = self.samples if keep_samples is None else max(0, min(keep_samples, self.samples))
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, HEADER + 2 * n)
            os.pwrite(fd, wav_header(n), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.part, self.path)
        fsync_dir(self.path.parent)
        self.samples = n
        return n

    def abort(self) -> None:
        """Throw the recording away."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        self.part.unlink(missing_ok=True)

    @property
    def closed(self) -> bool:
        return self._fd is None


def repair_partial(part: Path) -> Path | None:
    """Turn a ``.part`` left by a crash into its final WAV and return that path.

    The header is rewritten from the file size (a trailing odd byte is dropped). A
    fragment shorter than half a second is deleted and None returned.
    """
    part = Path(part)
    if part.suffix != ".part":
        raise ValueError(f"not a partial recording: {part}")
    final = part.with_suffix("")
    size = part.stat().st_size
    n = max(0, (size - HEADER) // 2)
    if n < MIN_RECOVER_SAMPLES:
        log.info("dropping partial recording %s: %.2f s of audio", part.name, n / RATE)
        part.unlink()
        fsync_dir(part.parent)
        return None
    with open(part, "r+b") as f:
        f.truncate(HEADER + 2 * n)
        f.seek(0)
        f.write(wav_header(n))
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, final)
    fsync_dir(final.parent)
    return final
