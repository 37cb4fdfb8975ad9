"""An echo suppressor for the gateway's line→phone direction (pure DSP, no I/O).

The FXO hybrid returns part of what Linebox plays on the line (the IP phone user's own
voice) in what it hears. A suppressor in the style of ITU-T G.164 removes it: while the
far end (the phone, heard through the reference = the frames played on the line) talks
and the line brings back clearly less than that, the line's frame is echo and is muted;
when the line is about as loud as the far end or louder, somebody is talking on the line
(double talk, "break-in") and the frame passes.

Per frame it costs two sums of squares and a comparison (no per-sample Python: one C-level
``math.hypot`` each, `levels.energy`): a pure-Python canceller (NLMS over a 16-64 ms tail: 20k-80k
multiply-adds per 20 ms frame) would cost 20-80x the 1.5 % of a core one bridged call
may take on a Pi Zero 2 W (bench/gateway_bench.py prints the figures).

A muted frame is not dead silence: it is comfort noise at the line's background level
(as G.168 echo controllers and common practice do), so the phone user does not hear the
line go dead each time they talk. The background is the quietest the line's frames have
been lately while the far end was quiet (a minimum that follows a rising floor at 3 dB
a second; echo frames do not count), held between
``COMFORT_MIN_DBM0`` and ``COMFORT_MAX_DBM0``; the noise is white, from a fixed bank of
frames made at import and scaled once per 1 dB of level, at a frame's first use (no
per-sample work per frame after that).

Thresholds (G.164 §3 describes the suppression and break-in functions; the figures
here are Linebox's, chosen for the 6-24 dB return loss of real hybrids, ASSUMED).
"""

import math
import random
from array import array
from collections import deque

from linebox import FRAME
from linebox.dsp.levels import energy, frame_energy

#: the far end counts as talking from this level on (quieter: nothing to echo)
FAR_ACTIVE_DBM0 = -45.0
#: the line frame is echo while it stays this far below the far end's level; louder is
#: break-in (someone on the line talks). 6 dB: G.164's suppressors break in on a near-end
#: level within a few dB of the far end; hybrids return at least 6 dB less (ASSUMED).
BREAK_IN_DB = 6.0
#: frames of far-end history compared: the echo path's delay (sound card buffers, the
#: hybrid's tail) stays within this (8 frames = 160 ms, ASSUMED; the simulator's is 0).
ECHO_SPAN_FRAMES = 8
#: once broken in, frames that pass even if quieter (so syllable ends are not chopped)
BREAK_IN_HANG_FRAMES = 3

#: comfort noise is the line's background level, but never louder than this (a noisy
#: line's echo is better muted than replaced by its hiss) nor quieter than this (a
#: digitally quiet line, the simulator's: still a hint that the call is up). ASSUMED.
COMFORT_MAX_DBM0 = -50.0
COMFORT_MIN_DBM0 = -70.0
#: the background estimate may rise this fast (dB a frame: 3 dB a second)
FLOOR_RISE_DB = 0.06
#: frames of noise in the bank (cycled: 1 s, no audible period at these levels)
COMFORT_FRAMES = 50

_SILENT = array("h", bytes(2 * FRAME))
_FAR_ACTIVE = frame_energy(FAR_ACTIVE_DBM0)
_RISE = 10.0 ** (FLOOR_RISE_DB / 10.0)
_SCALED: dict[int, list[array | None]] = {}     # dBm0 (whole) -> the bank's frames at it


def _bank() -> list[list[float]]:
    rnd = random.Random(168)                     # the same noise every run (tests)
    bank = []
    for _ in range(COMFORT_FRAMES):
        f = [rnd.gauss(0.0, 1.0) for _ in range(FRAME)]
        norm = math.sqrt(FRAME / sum(x * x for x in f))
        bank.append([x * norm for x in f])
    return bank


_BANK = _bank()          # unit-power white noise (mean square 1), made once at import


def comfort_frame(dbm0: int, i: int) -> array:
    """Frame ``i`` of the comfort-noise bank at ``dbm0`` (whole dB), scaled at first use."""
    frames = _SCALED.get(dbm0)
    if frames is None:
        frames = _SCALED[dbm0] = [None] * COMFORT_FRAMES
    frame = frames[i]
    if frame is None:
        g = math.sqrt(frame_energy(float(dbm0)) / FRAME)
        frame = frames[i] = array("h", [max(-32768, min(32767, round(x * g))) for x in _BANK[i]])
    return frame


class EchoSuppressor:
    """``reference(frame)`` with each frame played on the line (the far end), then
    ``process(frame)`` with what the line brought for the same slot: returns the frame to
    forward (the same frame, or when it was echo comfort noise at the line's background
    level; ``comfort_noise=False``: digital silence)."""

    def __init__(self, span_frames: int = ECHO_SPAN_FRAMES, break_in_db: float = BREAK_IN_DB,
                 comfort_noise: bool = True) -> None:
        self._far: deque[int] = deque([0] * span_frames, maxlen=span_frames)
        self._break_in = 10.0 ** (-break_in_db / 10.0)
        self._hang = 0
        self.suppressed = 0      # frames muted so far
        self.frames = 0          # frames processed so far
        self.comfort_noise = comfort_noise
        self.floor: float | None = None    # the line's background (a frame's sum of squares)
        self._noise_i = 0

    def reference(self, frame: array | None) -> None:
        """A frame the far end sent, just played on the line (None: silence)."""
        self._far.append(0 if frame is None else energy(frame))

    def process(self, frame: array) -> array:
        """The line's frame, with the echo removed."""
        self.frames += 1
        near = energy(frame)
        far = max(self._far)
        if far < _FAR_ACTIVE:
            # Nothing to echo: the line's own sound, its quietest is the background.
            floor = near if self.floor is None else self.floor * _RISE
            self.floor = near if near < floor else floor
            self._hang = 0
            return frame
        if near >= far * self._break_in:
            self._hang = BREAK_IN_HANG_FRAMES
            return frame
        if self._hang:
            self._hang -= 1
            return frame
        self.suppressed += 1
        if not self.comfort_noise:
            return _SILENT
        return self._comfort()

    @property
    def comfort_dbm0(self) -> int:
        """The comfort noise's level now (whole dBm0)."""
        if self.floor is None:
            return int(COMFORT_MIN_DBM0)
        level = 10.0 * math.log10(max(self.floor, 1e-9) / frame_energy(0.0))
        return int(round(min(COMFORT_MAX_DBM0, max(COMFORT_MIN_DBM0, level))))

    def _comfort(self) -> array:
        self._noise_i = (self._noise_i + 1) % COMFORT_FRAMES
        return comfort_frame(self.comfort_dbm0, self._noise_i)
