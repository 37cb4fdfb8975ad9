"""Recording: a message streamed to disk stays a valid WAV up to the last second."""

import errno
import os
import struct
import threading
from array import array

import pytest

from linebox.voicemail import recorder
from linebox.voicemail.recorder import SYNCER, Recording, repair_partial
from linebox.wavfile import read_wav, read_wav_info, wav_header


def _ramp(n, start=0):
    """Distinct samples, so a test can tell exactly which ones were kept."""
    return array("h", (((start + i) * 7) % 65536 - 32768 for i in range(n)))


def _header_sizes(path):
    """(RIFF size, data size) fields of a canonical 44-byte header."""
    raw = path.read_bytes()[:44]
    return struct.unpack_from("<I", raw, 4)[0], struct.unpack_from("<I", raw, 40)[0]


def _write_frames(rec, n_samples, frame=160):
    for start in range(0, n_samples, frame):
        rec.write(_ramp(min(frame, n_samples - start), start))


def test_new_recording_is_a_valid_empty_wav(tmp_path):
    rec = Recording(tmp_path / "000001.wav")
    part = tmp_path / "000001.wav.part"
    assert part.stat().st_size == 44
    assert _header_sizes(part) == (36, 0)
    assert len(read_wav(part)) == 0
    rec.abort()


def test_header_is_rewritten_every_second_of_audio(tmp_path):
    rec = Recording(tmp_path / "m.wav")
    part = tmp_path / "m.wav.part"
    _write_frames(rec, 7999)
    assert _header_sizes(part) == (36, 0)
    rec.write(_ramp(1, 7999))
    assert _header_sizes(part) == (36 + 16000, 16000)
    _write_frames(rec, 8000 + 4000)
    assert _header_sizes(part) == (36 + 32000, 32000)     # 2.5 s taken: 2 s on disk
    assert part.stat().st_size == 44 + 2 * 16000          # the rest is held for its block
    assert (rec.samples, rec.written) == (20000, 16000)
    rec.abort()


def test_audio_is_written_in_one_block_a_second_and_fsynced_off_the_caller(tmp_path, monkeypatch):
    writes, syncs = [], []
    real_write = os.write
    monkeypatch.setattr(recorder.os, "write", lambda fd, b: writes.append(len(b)) or real_write(fd, b))
    monkeypatch.setattr(SYNCER, "submit", lambda fd, pending=None: syncs.append(fd))
    rec = Recording(tmp_path / "m.wav")
    writes.clear()
    _write_frames(rec, 3 * 8000 + 800)                    # 3.1 s in 20 ms frames
    assert writes == [16000, 16000, 16000]                # not 155 writes of 320 bytes
    assert len(syncs) == 3
    assert rec.finish() == 3 * 8000 + 800                 # finish writes what was held
    assert read_wav(tmp_path / "m.wav") == _ramp(3 * 8000 + 800)


def test_the_background_fsync_survives_the_recording_being_finished(tmp_path):
    rec = Recording(tmp_path / "m.wav")
    _write_frames(rec, 8000 * 4)                          # four fsyncs asked for
    rec.finish()
    assert SYNCER.drain()                                 # all done, none failed on a closed fd
    assert read_wav(tmp_path / "m.wav") == _ramp(8000 * 4)


def test_a_writer_faster_than_the_disk_has_one_fsync_waiting_not_one_a_second(tmp_path, monkeypatch):
    release, calls = threading.Event(), []
    real_fsync, real_dup = os.fsync, os.dup
    dups = []

    def slow_fsync(fd):
        calls.append(fd)
        release.wait(5)
        real_fsync(fd)
    rec = Recording(tmp_path / "m.wav")
    monkeypatch.setattr(recorder.os, "fsync", slow_fsync)
    monkeypatch.setattr(recorder.os, "dup", lambda fd: dups.append(fd) or real_dup(fd))
    _write_frames(rec, 8000 * 30)                # 30 s of audio, as fast as the simulator
    assert len(dups) <= 2                        # the one being served and one waiting
    release.set()
    assert SYNCER.drain()
    _write_frames(rec, 8000)                     # served: the next second asks again
    assert SYNCER.drain() and len(dups) <= 3 and len(calls) == len(dups)
    monkeypatch.setattr(recorder.os, "fsync", real_fsync)
    rec.finish()


def test_a_full_disk_keeps_what_reached_it_and_the_next_block_follows_it(tmp_path, monkeypatch):
    rec = Recording(tmp_path / "m.wav")
    real_write = os.write
    state = {"left": 16000 + 5}                           # room for 1 s and two and a half samples

    def write(fd, data):
        if state["left"] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = min(len(data), state["left"])
        state["left"] -= n
        return real_write(fd, bytes(data[:n]))
    monkeypatch.setattr(recorder.os, "write", write)
    _write_frames(rec, 8000)                              # the first block fits
    with pytest.raises(OSError) as e:
        rec.write(_ramp(8000, 8000))                      # the second does not
    assert e.value.errno == errno.ENOSPC
    assert (rec.samples, rec.written) == (8002, 8002)
    monkeypatch.setattr(recorder.os, "write", real_write)
    rec.write(_ramp(100, 50000))                          # room again: right after the 8002
    assert rec.finish() == 8102
    assert read_wav(tmp_path / "m.wav") == _ramp(8002) + _ramp(100, 50000)


def test_flush_interval_is_counted_in_samples_even_for_uneven_blocks(tmp_path):
    rec = Recording(tmp_path / "m.wav", clock_flush_samples=1000)
    part = tmp_path / "m.wav.part"
    rec.write(_ramp(2500))                   # crosses two boundaries at once: one flush
    assert _header_sizes(part)[1] == 5000
    rec.write(_ramp(400))
    assert _header_sizes(part)[1] == 5000
    rec.write(_ramp(100))                    # 3000 reached
    assert _header_sizes(part)[1] == 6000
    rec.abort()


def test_finish_cuts_to_keep_samples_and_renames(tmp_path):
    final = tmp_path / "m.wav"
    rec = Recording(final)
    _write_frames(rec, 20000)
    assert rec.finish(keep_samples=12345) == 12345
    assert not (tmp_path / "m.wav.part").exists()
    assert final.stat().st_size == 44 + 2 * 12345
    assert _header_sizes(final) == (36 + 2 * 12345, 2 * 12345)
    assert read_wav(final) == _ramp(12345)
    info = read_wav_info(final)
    assert (info.rate, info.channels, info.encoding) == (8000, 1, "pcm16")


def test_finish_keeps_everything_by_default_and_clamps_keep(tmp_path):
    rec = Recording(tmp_path / "a.wav")
    _write_frames(rec, 3000)
    assert rec.finish() == 3000
    rec = Recording(tmp_path / "b.wav")
    _write_frames(rec, 3000)
    assert rec.finish(keep_samples=10**6) == 3000
    rec = Recording(tmp_path / "c.wav")
    _write_frames(rec, 3000)
    assert rec.finish(keep_samples=-5) == 0
    assert read_wav(tmp_path / "a.wav") == _ramp(3000)
    assert len(read_wav(tmp_path / "c.wav")) == 0


def test_samples_are_little_endian_on_disk(tmp_path):
    rec = Recording(tmp_path / "m.wav")
    rec.write(array("h", [0x0102, -2]))
    rec.finish()
    assert (tmp_path / "m.wav").read_bytes()[44:] == b"\x02\x01\xfe\xff"


def test_abort_deletes_the_partial_file(tmp_path):
    rec = Recording(tmp_path / "m.wav")
    _write_frames(rec, 9000)
    rec.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        rec.write(_ramp(10))


def test_repair_partial_keeps_all_audio_written_and_drops_an_odd_byte(tmp_path):
    rec = Recording(tmp_path / "m.wav")
    _write_frames(rec, 8000 * 2 + 4321)            # 2 s on disk, the header says 2 s
    part = tmp_path / "m.wav.part"
    with open(part, "ab") as f:
        f.write(_ramp(321, 16000).tobytes() + b"\x7f")   # more, and half a sample cut off
    final = repair_partial(part)
    assert final == tmp_path / "m.wav"
    assert not part.exists()
    assert _header_sizes(final) == (36 + 2 * 16321, 2 * 16321)
    assert read_wav(final) == _ramp(16321)
    rec.abort()                                    # the abandoned writer: nothing left to delete
    assert final.exists()


def test_repair_partial_with_stale_zero_header_uses_file_size(tmp_path):
    part = tmp_path / "000009.wav.part"
    rec = Recording(tmp_path / "000009.wav", clock_flush_samples=7000)
    _write_frames(rec, 7000)
    with open(part, "r+b") as f:                   # as if cut before the header was rewritten
        f.write(wav_header(0))
    assert _header_sizes(part) == (36, 0)
    assert repair_partial(part) == tmp_path / "000009.wav"
    assert read_wav(tmp_path / "000009.wav") == _ramp(7000)
    rec.abort()


def test_repair_partial_drops_fragments_under_half_a_second(tmp_path):
    rec = Recording(tmp_path / "m.wav", clock_flush_samples=160)     # a block a frame
    _write_frames(rec, 3999)
    part = tmp_path / "m.wav.part"
    assert repair_partial(part) is None
    assert list(tmp_path.iterdir()) == []
    rec.abort()
    rec = Recording(tmp_path / "n.wav", clock_flush_samples=160)
    _write_frames(rec, 4000)
    assert repair_partial(tmp_path / "n.wav.part") == tmp_path / "n.wav"
    rec.abort()


def test_repair_partial_of_a_file_shorter_than_its_header_drops_it(tmp_path):
    part = tmp_path / "m.wav.part"
    part.write_bytes(b"RIFF\x00")
    assert repair_partial(part) is None
    assert not part.exists()
