"""AlsaAudio with the real pyalsaaudio and alsa-lib, through alsa-lib's ``file`` plugin:
capture reads a prepared file (the line's audio), playback writes one.

``alsa_file_pcm`` (also used by test_fxo.py and test_hwcheck.py) writes an ALSA
configuration in a temp folder and points ALSA_CONFIG_PATH at it; alsa-lib notices the
new path at the next open, so each test gets its own device.
"""

import errno
import os
from array import array
from pathlib import Path

import pytest

from linebox import FRAME
from linebox.hw import audio as audio_mod
from linebox.hw.audio import PREFILL, AlsaAudio, AudioGone, SimAudio

ALSA_CONF = Path("/usr/share/alsa/alsa.conf")
DEVICE = "linebox_test"


def alsa_file_pcm(folder: Path, line_audio, pad_seconds: float = 10.0, monkeypatch=None,
                  played: Path | None = None) -> tuple[str, Path, Path]:
    """Define the ALSA PCM ``linebox_test`` in ``folder``: capture reads ``line.raw``
    (``line_audio`` then ``pad_seconds`` of silence: reads past the end of the file are
    undefined), playback writes ``played.raw`` (or ``played``), both S16_LE 8 kHz mono.
    Sets ALSA_CONFIG_PATH (through ``monkeypatch`` when given). Returns (device, line
    file, played file)."""
    folder.mkdir(parents=True, exist_ok=True)
    line_path = folder / "line.raw"
    played = played or folder / "played.raw"
    samples = array("h", line_audio)
    samples.extend(array("h", bytes(2 * int(pad_seconds * 8000))))
    line_path.write_bytes(samples.tobytes())
    conf = folder / "asound.conf"
    conf.write_text(
        f"<{ALSA_CONF}>\n"
        f"pcm.{DEVICE} {{\n"
        f"  type asym\n"
        f'  playback.pcm {{ type file; slave.pcm "null"; file "{played}"; format "raw" }}\n'
        f'  capture.pcm {{ type file; slave.pcm "null"; file "/dev/null"; infile "{line_path}"; format "raw" }}\n'
        f"}}\n")
    if monkeypatch is not None:
        monkeypatch.setenv("ALSA_CONFIG_PATH", str(conf))
    else:
        os.environ["ALSA_CONFIG_PATH"] = str(conf)
    return DEVICE, line_path, played


def ramp(frames: int) -> array:
    """Distinct samples, so a frame out of place shows."""
    return array("h", ((i * 7) % 65536 - 32768 for i in range(frames * FRAME)))


def raw(path: Path) -> array:
    a = array("h")
    a.frombytes(path.read_bytes())
    return a


def test_alsa_audio_reads_the_line_file_back_exactly(tmp_path, monkeypatch):
    line = ramp(25)
    device, _, _ = alsa_file_pcm(tmp_path, line, monkeypatch=monkeypatch)
    audio = AlsaAudio(device)
    heard = array("h")
    for _ in range(25):
        frame = audio.read_frame()
        assert len(frame) == FRAME
        heard.extend(frame)
    audio.close()
    assert heard == line


def test_what_is_played_lands_in_the_file_after_the_prefill(tmp_path, monkeypatch):
    device, _, played = alsa_file_pcm(tmp_path, [], monkeypatch=monkeypatch)
    audio = AlsaAudio(device)
    sent = ramp(12)
    for i in range(12):
        audio.write_frame(sent[i * FRAME:(i + 1) * FRAME])
        audio.read_frame()
    audio.close()
    assert raw(played) == array("h", bytes(2 * FRAME * PREFILL)) + sent
    assert (audio.xruns, audio.reopens) == (0, 0)


def test_a_short_frame_is_played_padded_with_silence(tmp_path, monkeypatch):
    device, _, played = alsa_file_pcm(tmp_path, [], monkeypatch=monkeypatch)
    audio = AlsaAudio(device, prefill=0)
    audio.write_frame([1000, -1000, 5])
    audio.close()
    assert raw(played) == array("h", [1000, -1000, 5] + [0] * (FRAME - 3))


def test_a_missing_device_raises_audio_gone_naming_it(tmp_path, monkeypatch):
    alsa_file_pcm(tmp_path, [], monkeypatch=monkeypatch)
    with pytest.raises(AudioGone) as err:
        AlsaAudio("linebox_nowhere")
    assert str(err.value) == "audio linebox_nowhere: No such file or directory"


def test_a_missing_line_file_is_a_missing_card(tmp_path, monkeypatch):
    device, line_path, _ = alsa_file_pcm(tmp_path, [], monkeypatch=monkeypatch)
    line_path.unlink()
    with pytest.raises(AudioGone, match=f"^audio {device}: "):
        AlsaAudio(device)


class FifoSink:
    """Playback into a named pipe whose reader the test can take away: alsa-lib's next
    write to it fails, as a write to an unplugged card does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    def pull_the_plug(self) -> None:
        # Unlink first: reopening must create a plain file, not block on a reader-less pipe.
        self.path.unlink()
        os.close(self.fd)


def _play_until_reopened(audio: AlsaAudio, limit: int = 200) -> int:
    for n in range(limit):
        audio.write_frame(ramp(1))
        if audio.reopens:
            return n
        audio.read_frame()
    raise AssertionError(f"no write failed in {limit} frames")


def test_a_card_failing_mid_stream_is_reopened_and_plays_on(tmp_path, monkeypatch):
    fifo = tmp_path / "played.fifo"
    device, _, _ = alsa_file_pcm(tmp_path, ramp(400), monkeypatch=monkeypatch, played=fifo)
    sink = FifoSink(fifo)
    audio = AlsaAudio(device)
    sink.pull_the_plug()
    _play_until_reopened(audio)
    # After the reopen the card works again: capture starts over at the file's beginning.
    assert audio.reopens == 1
    assert audio.read_frame() == ramp(1)
    audio.write_frame(ramp(1))
    audio.close()
    assert fifo.is_file()


def test_a_card_gone_for_good_raises_audio_gone(tmp_path, monkeypatch):
    fifo = tmp_path / "played.fifo"
    device, line_path, _ = alsa_file_pcm(tmp_path, ramp(400), monkeypatch=monkeypatch, played=fifo)
    sink = FifoSink(fifo)
    audio = AlsaAudio(device)
    sink.pull_the_plug()
    line_path.rename(tmp_path / "line.away")
    with pytest.raises(AudioGone, match=f"^audio {device}: No such file or directory$"):
        _play_until_reopened(audio)


# -- xrun recovery, with a stand-in for pyalsaaudio: the file plugin never runs late ------

class FakePCM:
    """Plays back a script of results for read() and write()."""

    def __init__(self, module, kind, reads=(), writes=()):
        self.module, self.kind = module, kind
        self.reads = list(reads)
        self.writes = list(writes)
        self.written = []
        self._state = 2

    def read(self):
        r = self.reads.pop(0) if self.reads else (FRAME, bytes(2 * FRAME))
        if isinstance(r, Exception):
            raise r
        return r

    def write(self, data):
        r = self.writes.pop(0) if self.writes else "ok"
        if r == "xrun":
            self._state = self.module.PCM_STATE_XRUN
            raise self.module.ALSAAudioError("Broken pipe [fake]")
        self._state = 3
        self.written.append(bytes(data))
        return len(data) // 2

    def state(self):
        return self._state

    def close(self):
        pass


class FakeAlsa:
    PCM_CAPTURE, PCM_PLAYBACK, PCM_NORMAL, PCM_FORMAT_S16_LE, PCM_STATE_XRUN = 1, 0, 0, 2, 4

    class ALSAAudioError(Exception):
        pass

    def __init__(self, reads=(), writes=()):
        self.script = {self.PCM_CAPTURE: reads, self.PCM_PLAYBACK: writes}
        self.opened = []

    def PCM(self, type, **kw):  # noqa: N802 - pyalsaaudio's name
        pcm = FakePCM(self, type, reads=self.script[type] if type == self.PCM_CAPTURE else (),
                      writes=self.script[type] if type == self.PCM_PLAYBACK else ())
        self.opened.append((type, kw))
        return pcm


def fake_alsa_audio(monkeypatch, **script) -> tuple[AlsaAudio, FakeAlsa]:
    fake = FakeAlsa(**script)
    monkeypatch.setitem(__import__("sys").modules, "alsaaudio", fake)
    return AlsaAudio("fake"), fake


def test_alsa_audio_opens_both_directions_at_8khz_mono_with_20ms_periods(monkeypatch):
    _, fake = fake_alsa_audio(monkeypatch)
    settings = dict(mode=0, device="fake", channels=1, rate=8000, format=2, periodsize=160,
                    periods=audio_mod.PERIODS)
    assert fake.opened == [(FakeAlsa.PCM_CAPTURE, settings), (FakeAlsa.PCM_PLAYBACK, settings)]


def test_an_overrun_is_counted_and_the_next_period_returned(monkeypatch):
    frame = ramp(1)
    audio, _ = fake_alsa_audio(monkeypatch, reads=[(-errno.EPIPE, b""), (FRAME, frame.tobytes())])
    assert audio.read_frame() == frame
    assert (audio.xruns, audio.reopens) == (1, 0)


def test_an_underrun_is_counted_and_the_head_start_restored(monkeypatch):
    audio, _ = fake_alsa_audio(monkeypatch, writes=["ok", "ok", "xrun"])
    audio.write_frame(ramp(1))
    silence = bytes(2 * FRAME)
    assert audio._play.written == [silence, silence, silence, silence, ramp(1).tobytes()]
    assert (audio.xruns, audio.reopens) == (1, 0)


def test_overruns_that_never_end_mean_the_card_is_gone(monkeypatch):
    audio, _ = fake_alsa_audio(monkeypatch, reads=[(-errno.EPIPE, b"")] * 10)
    with pytest.raises(AudioGone, match="^audio fake: capture keeps failing$"):
        audio.read_frame()


# -- the simulated audio -------------------------------------------------------------------

def test_sim_audio_reads_the_line_then_silence_and_records_what_was_played():
    sim = SimAudio(ramp(1)[:100])
    assert sim.read_frame() == ramp(1)[:100] + array("h", [0] * 60)
    assert sim.read_frame() == array("h", [0] * FRAME)
    sim.write_frame(ramp(1))
    assert sim.played == ramp(1)


def test_sim_audio_loopback_returns_the_played_frame_attenuated():
    sim = SimAudio(loopback_db=-20.0)
    sim.write_frame([1000] * FRAME)
    assert sim.read_frame() == array("h", [100] * FRAME)


def test_a_vanished_sim_audio_raises_audio_gone():
    sim = SimAudio()
    sim.vanish("unplugged")
    with pytest.raises(AudioGone, match="^unplugged$"):
        sim.read_frame()
