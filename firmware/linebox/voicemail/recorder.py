"""Streaming a message to disk while the caller speaks, so a crash keeps what was said.

A recording grows in ``<final name>.part``. The audio is kept in memory for at most a
second of it, then written in one block; with each block the header is rewritten with
the length on disk and an fsync is handed to a background thread, so the thread that
streams the audio (a SIP call's media clock among them) never waits for the card. A
killed process or a power cut leaves a valid WAV up to the last whole second.
``finish`` writes what is left, cuts the trailing tone or silence, fixes the header,
fsyncs and renames the file to its final name.

A block a second rather than a write a frame: a call costs one write, one header write
and one fsync a second, not fifty writes (bench/sip_bench.py).
"""

import logging
import os
import queue
import sys
import threading
from array import array
from pathlib import Path

from linebox import RATE
from linebox.fileio import fsync_dir
from linebox.wavfile import data_offset, wav_header

log = logging.getLogger(__name__)

HEADER = data_offset("pcm16")
MIN_RECOVER_SAMPLES = RATE // 2        # a crash-cut fragment shorter than this is noise
_BIG_ENDIAN = sys.byteorder == "big"


class _Syncer:
    """One daemon thread that fsyncs recordings. Each request is a duplicate of the
    file's descriptor, so the recording may be finished or aborted meanwhile."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fd: int, pending: threading.Event | None = None) -> None:
        """fsync ``fd`` soon. ``pending`` is set until it is done: a recording asks
        again only once its last request was served (one fsync covers everything written
        before it runs), so a fast writer (the simulator) never piles descriptors up."""
        if pending is not None:
            if pending.is_set():
                return
            pending.set()
        self._put((os.dup(fd), pending))

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every fsync asked for so far is done; False on timeout."""
        done = threading.Event()
        self._put(done)
        return done.wait(timeout)

    def _put(self, item) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="recorder-fsync", daemon=True)
                self._thread.start()
        self._queue.put(item)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            fd, pending = item
            if pending is not None:
                pending.clear()          # what is written from here on needs another
            try:
                os.fsync(fd)
            except OSError as e:
                log.warning("recording: fsync failed: %s", e.strerror or e)
            finally:
                os.close(fd)


SYNCER = _Syncer()


def part_path(path: Path) -> Path:
    """Where the recording for final ``path`` grows."""
    return path.with_name(path.name + ".part")


class Recording:
    """A pcm16 8 kHz mono WAV being written; see the module docstring.
    ``clock_flush_samples``: how much audio is held before a block is written."""

    def __init__(self, path: Path, clock_flush_samples: int = RATE) -> None:
        if clock_flush_samples <= 0:
            raise ValueError(f"clock_flush_samples must be positive, not {clock_flush_samples}")
        self.path = Path(path)
        self.part = part_path(self.path)
        self.samples = 0                       # taken in (on disk or still held)
        self.written = 0                       # of them on disk
        self._held = bytearray()
        self._sync_pending = threading.Event()
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
        """Append samples (signed 16-bit); counted in samples, so the blocks follow the
        audio. An OSError (a full disk) leaves on disk what was written before it."""
        if self._fd is None:
            raise ValueError(f"recording {self.path.name} is closed")
        if _BIG_ENDIAN:
            samples = array("h", samples)
            samples.byteswap()
        self._held += memoryview(samples).cast("B")
        self.samples += len(samples)
        if self.samples >= self._next_flush:
            self._next_flush = (self.samples // self._flush_every + 1) * self._flush_every
            self._write_held()
            os.pwrite(self._fd, wav_header(self.written), 0)
            SYNCER.submit(self._fd, self._sync_pending)

    def _write_held(self) -> None:
        data, self._held = bytes(self._held), bytearray()
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:] if done else data)
        except OSError:
            # What did not reach the disk is lost; the count says what is there, and the
            # next block goes right after it (not after half a sample).
            self.written += done // 2
            self.samples = self.written
            os.lseek(self._fd, HEADER + 2 * self.written, os.SEEK_SET)
            raise
        self.written += done // 2

    def finish(self, keep_samples: int | None = None) -> int:
        """Keep the first ``keep_samples`` (all if None), move the file to its final name
        durably and return how many samples it holds."""
        if self._fd is None:
            raise ValueError(f"recording {self.path.name} is closed")
        try:
            self._write_held()
        except OSError as e:
            log.warning("recording %s: the last block was not written: %s", self.path.name,
                        e.strerror or e)
        n = self.written if keep_samples is None else max(0, min(keep_samples, self.written))
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, HEADER + 2 * n)
            os.pwrite(fd, wav_header(n), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self.part, self.path)
        fsync_dir(self.path.parent)
        self.samples = self.written = n
        return n

    def abort(self) -> None:
        """Throw the recording away."""
        self._held.clear()
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
