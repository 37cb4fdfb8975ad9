"""Line audio behind one small interface: 20 ms frames of 8 kHz signed 16-bit mono.

``AlsaAudio`` is a sound card through pyalsaaudio, capture and playback open together;
its capture paces the line (a read blocks until the card has 20 ms). Over- and underruns
are recovered and counted; a card that stops answering raises ``AudioGone``, which the
FXO line turns into a fault. ``SimAudio`` plays the line's side from an array and records
what was played.
"""

import logging
import sys
from abc import ABC, abstractmethod
from array import array
from collections.abc import Iterable

from linebox import FRAME, FRAME_BYTES, RATE
from linebox.hw.line import SILENT_FRAME

log = logging.getLogger(__name__)

# Playback is started this many periods ahead of capture, so a late write is not an
# underrun at once; the card's buffer holds PERIODS periods (4 x 20 ms = 80 ms).
PERIODS = 4
PREFILL = 2
# Overruns in a row after which a read gives up and the card counts as gone.
MAX_XRUN_RETRIES = 3


class AudioGone(Exception):
    """The sound card cannot be used (unplugged, missing, failing); the message says why."""


class AudioPort(ABC):
    """One line's audio: ``read_frame`` blocks until the next 20 ms have been heard."""

    @abstractmethod
    def read_frame(self) -> array:
        """The next 160 samples heard (``array('h')``). Raises AudioGone."""

    @abstractmethod
    def write_frame(self, samples) -> None:
        """Queue 160 samples to play. Raises AudioGone."""

    def close(self) -> None:
        """Release the device."""
        return None  # optional: nothing to do by default


def _to_bytes(samples) -> bytes:
    a = samples if isinstance(samples, array) and samples.typecode == "h" else array("h", samples)
    if len(a) != FRAME:
        a = a[:FRAME]
        a.extend(SILENT_FRAME[: FRAME - len(a)])
    if sys.byteorder == "big":
        a = array("h", a)
        a.byteswap()
    return a.tobytes()


def _from_bytes(data: bytes) -> array:
    data = data[:FRAME_BYTES]
    a = array("h")
    a.frombytes(data[: len(data) & ~1])
    if sys.byteorder == "big":
        a.byteswap()
    if len(a) < FRAME:
        a.extend(SILENT_FRAME[: FRAME - len(a)])
    return a


class AlsaAudio(AudioPort):
    """A sound card (``device``, an ALSA PCM name such as ``plughw:CARD=Device``) as a
    line's audio, 8 kHz mono S16_LE with 20 ms periods.

    ``xruns`` counts over- and underruns recovered; ``reopens`` the times the card was
    closed and opened again after an error. When reopening fails, AudioGone.
    """

    def __init__(self, device: str, periods: int = PERIODS, prefill: int = PREFILL) -> None:
        try:
            import alsaaudio
        except ImportError:
            raise AudioGone("pyalsaaudio is not installed") from None
        self.alsa = alsaaudio
        self.device = device
        self.periods = periods
        self.prefill = prefill
        self.xruns = 0
        self.reopens = 0
        self._cap = None
        self._play = None
        self._open()

    # -- open / close -------------------------------------------------------
    def _pcm(self, kind):
        a = self.alsa
        return a.PCM(type=kind, mode=a.PCM_NORMAL, device=self.device, channels=1, rate=RATE,
                     format=a.PCM_FORMAT_S16_LE, periodsize=FRAME, periods=self.periods)

    def _open(self) -> None:
        try:
            self._cap = self._pcm(self.alsa.PCM_CAPTURE)
            self._play = self._pcm(self.alsa.PCM_PLAYBACK)
            self._prime()
        except self.alsa.ALSAAudioError as e:
            self._close_pcms()
            raise AudioGone(f"audio {self.device}: {_reason(e)}") from None

    def _prime(self) -> None:
        silence = _to_bytes(SILENT_FRAME)
        for _ in range(self.prefill):
            self._play.write(silence)

    def _close_pcms(self) -> None:
        for pcm in (self._cap, self._play):
            if pcm is not None:
                try:
                    pcm.close()
                except Exception:  # noqa: BLE001 - closing a dead card may fail any way
                    pass
        self._cap = self._play = None

    def _reopen(self, why: str) -> None:
        """Close and open the card again after an error that is not an xrun."""
        log.warning("audio %s: %s; reopening", self.device, why)
        self._close_pcms()
        self.reopens += 1
        self._open()

    def close(self) -> None:
        self._close_pcms()

    # -- frames -------------------------------------------------------------
    def read_frame(self) -> array:
        if self._cap is None:
            raise AudioGone(f"audio {self.device}: closed")
        err = self.alsa.ALSAAudioError
        for _ in range(MAX_XRUN_RETRIES + 1):
            try:
                n, data = self._cap.read()
            except err as e:
                self._reopen(f"capture: {_reason(e)}")
                continue
            if n < 0:
                # Overrun (-EPIPE): samples were lost; the next read prepares the stream.
                self.xruns += 1
                continue
            if n == 0:
                continue
            return _from_bytes(data)
        raise AudioGone(f"audio {self.device}: capture keeps failing")

    def write_frame(self, samples) -> None:
        data = _to_bytes(samples)
        err = self.alsa.ALSAAudioError
        for attempt in range(2):
            if self._play is None:
                raise AudioGone(f"audio {self.device}: closed")
            try:
                self._play.write(data)
                return
            except err as e:
                if self._state(self._play) == self.alsa.PCM_STATE_XRUN:
                    # Underrun: a write prepares the stream again; restore the head start.
                    self.xruns += 1
                    try:
                        self._prime()
                    except err:
                        pass
                elif attempt == 0:
                    self._reopen(f"playback: {_reason(e)}")
                else:
                    raise AudioGone(f"audio {self.device}: playback: {_reason(e)}") from None
        raise AudioGone(f"audio {self.device}: playback keeps failing")

    def _state(self, pcm):
        try:
            return pcm.state()
        except Exception:  # noqa: BLE001
            return None


def _reason(e: Exception) -> str:
    """pyalsaaudio's message without the ``[device]`` it appends."""
    text = str(e)
    if text.endswith("]") and " [" in text:
        text = text[: text.rindex(" [")]
    return text or type(e).__name__


class SimAudio(AudioPort):
    """Simulated line audio: reads come from ``line`` (then silence), writes are kept in
    ``played``. With ``loopback_db`` set, each read also returns the frame just written,
    that many dB down, added to the line (a sound card's output wired to its input)."""

    def __init__(self, line: Iterable[int] = (), loopback_db: float | None = None) -> None:
        self.line = array("h", line)
        self.pos = 0
        self.played = array("h")
        self.frames_read = 0
        self.loopback = None if loopback_db is None else 10.0 ** (loopback_db / 20.0)
        self._echo = SILENT_FRAME
        self.gone: str | None = None
        self.closed = False

    def vanish(self, reason: str = "device unplugged") -> None:
        """From now on every read and write raises AudioGone."""
        self.gone = reason

    def read_frame(self) -> array:
        self._check()
        frame = self.line[self.pos:self.pos + FRAME]
        self.pos += FRAME
        if len(frame) < FRAME:
            frame.extend(SILENT_FRAME[: FRAME - len(frame)])
        if self.loopback is not None:
            g = self.loopback
            frame = array("h", (_clip(a + b * g) for a, b in zip(frame, self._echo, strict=True)))
        self.frames_read += 1
        return frame

    def write_frame(self, samples) -> None:
        self._check()
        frame = array("h", samples)
        self.played.extend(frame)
        self._echo = frame

    def close(self) -> None:
        self.closed = True

    def _check(self) -> None:
        if self.gone is not None:
            raise AudioGone(self.gone)
        if self.closed:
            raise AudioGone("closed")


def _clip(x: float) -> int:
    v = int(round(x))
    return 32767 if v > 32767 else -32768 if v < -32768 else v
