"""Voice-activity detection on 20 ms frames, against an adaptive noise floor.

The floor is a minimum-statistics estimate: the quietest 40 ms seen over the last
1.5-1.8 s. Between words and syllables speech always dips to the line's own noise, so
the minimum is the noise (line hiss, hum) even while somebody talks; a louder noise
is taken as the floor once it has lasted the whole window ("rises slowly"), a quieter
moment is taken at once ("falls fast"). The floor is kept between -70 and -35 dBm0:
anything steadily louder than about -30 dBm0 is activity, which includes a steady
tone (telling hang-up tones apart from voice is the tone detector's job).

A frame is voiced when its energy is VOICE_DB above the floor. ATTACK_FRAMES voiced
frames in a row start a stretch, dated back to the first of them; it ends after
HANGOVER_FRAMES unvoiced frames, so pauses between syllables and words do not split
it, and its reported end is the end of its last voiced frame (no hangover). Stretches
shorter than MIN_FRAMES are dropped.

Costs per frame: a handful of comparisons; no logarithm, no per-sample work (the
listener hands over each frame's energy).
"""

import math

from linebox import FRAME, RATE
from linebox.dsp.levels import frame_energy

FRAME_SECONDS = FRAME / RATE

VOICE_DB = 5.0             # above the floor (the floor sits ~1 dB under the mean of white noise)
FLOOR_MIN_DBM0 = -70.0     # a quieter line is treated as this quiet
FLOOR_MAX_DBM0 = -35.0     # the floor never rises above this: louder steady sound is activity
SUB_FRAMES = 15            # floor window: WINDOW_BLOCKS blocks of SUB_FRAMES (0.3 s each) ...
WINDOW_BLOCKS = 5          # ... plus the block being filled: 1.5-1.8 s
ATTACK_FRAMES = 3          # 60 ms of voice confirms a stretch
HANGOVER_FRAMES = 18       # 360 ms without voice ends it
MIN_FRAMES = 6             # stretches under 120 ms are not reported

# The floor is tracked on the energy of two consecutive frames, so that one lost
# frame (a dropout, a digital-silence glitch) cannot pull it down on its own.
_FLOOR_LO = 2.0 * frame_energy(FLOOR_MIN_DBM0, FRAME)
_FLOOR_HI = 2.0 * frame_energy(FLOOR_MAX_DBM0, FRAME)
# Voiced: 2 * energy > floor2 * _VOICE_RATIO, floor2 being the two-frame floor.
_VOICE_RATIO = 10.0 ** (VOICE_DB / 10.0)


class VoiceActivityDetector:
    """Finds stretches of voice in a stream of frames (the listener's detector protocol).

    ``feed(frame, energy)`` for every 20 ms frame; it returns
    ``[{"type": "speech", "t": start, "dur": seconds}]`` when a stretch ends, else ``[]``.
    The call flows also read ``active``, ``last_voice_end`` and ``voiced_seconds``.
    """

    def __init__(self) -> None:
        self._n = 0                     # frames fed so far
        self._prev = None               # energy of the previous frame
        self._cur_min = math.inf        # minimum of the block being filled
        self._left = SUB_FRAMES         # frames until that block is complete
        self._blocks: list[float] = []  # minima of the last WINDOW_BLOCKS blocks
        self._block_min = math.inf      # min(self._blocks)
        self._floor2 = _FLOOR_LO        # current two-frame floor, clamped
        self._run = 0                   # voiced frames in a row while not active
        self._run_start = 0
        self._active = False
        self._start = 0                 # first frame of the current stretch
        self._last = -1                 # last voiced frame of the current or last stretch
        self._voiced_done = 0           # frames in reported stretches since the reset
        self._count_from = 0            # frame where voiced_seconds started counting

    # ------------------------------------------------------------ protocol

    def feed(self, frame, energy: int) -> list[dict]:
        """Take the next frame (``energy`` = its sum of squares); events of stretches that ended."""
        n = self._n
        self._n = n + 1
        # _track_floor(energy), inline (it runs on every frame of the line).
        prev = self._prev
        self._prev = energy
        if prev is None:
            prev = energy               # the very first frame stands for two
        pair = energy + prev
        cur = self._cur_min
        if pair < cur:
            self._cur_min = cur = pair
        self._left -= 1
        if not self._left:
            self._close_block()
        floor2 = self._block_min if self._block_min < cur else cur
        if floor2 < _FLOOR_LO:
            floor2 = _FLOOR_LO
        elif floor2 > _FLOOR_HI:
            floor2 = _FLOOR_HI
        self._floor2 = floor2
        if 2 * energy > floor2 * _VOICE_RATIO:
            self._voiced(n)
            return []
        if self._active:
            if n - self._last >= HANGOVER_FRAMES:
                return self._end()
        else:
            self._run = 0
        return []

    def flush(self) -> list[dict]:
        """End of input: the stretch still open, if any."""
        return self._end() if self._active else []

    # ------------------------------------------------------------ read by the call flows

    @property
    def active(self) -> bool:
        """Voice now (from the confirmation of a stretch to the end of its hangover)."""
        return self._active

    @property
    def last_voice_end(self) -> float | None:
        """Seconds from the start to the end of the last voiced frame (no hangover), or None."""
        return None if self._last < 0 else round((self._last + 1) * FRAME_SECONDS, 4)

    @property
    def voiced_seconds(self) -> float:
        """Voice since the last :meth:`reset_counters` (reported stretches and the open one)."""
        frames = self._voiced_done
        if self._active:
            current = self._last + 1 - max(self._start, self._count_from)
            if self._last + 1 - self._start >= MIN_FRAMES and current > 0:
                frames += current
        return round(frames * FRAME_SECONDS, 4)

    @property
    def noise_floor_dbm0(self) -> float:
        """The noise floor now, in dBm0 (the mean of white noise reads about 1 dB higher)."""
        return round(10.0 * math.log10(self._floor2 / 2.0 / frame_energy(0.0, FRAME)), 2)

    def reset_counters(self) -> None:
        """Count ``voiced_seconds`` from here (a recording starts)."""
        self._voiced_done = 0
        self._count_from = self._n

    # ------------------------------------------------------------ inside

    def _close_block(self) -> None:
        blocks = self._blocks
        blocks.append(self._cur_min)
        if len(blocks) > WINDOW_BLOCKS:
            del blocks[0]
        self._block_min = min(blocks)
        self._cur_min = math.inf
        self._left = SUB_FRAMES

    def _voiced(self, n: int) -> None:
        if self._active:
            self._last = n
            return
        if not self._run:
            self._run_start = n
        self._run += 1
        if self._run >= ATTACK_FRAMES:
            self._active = True
            self._start = self._run_start
            self._last = n
            self._run = 0

    def _end(self) -> list[dict]:
        self._active = False
        frames = self._last + 1 - self._start
        if frames < MIN_FRAMES:
            return []
        counted = self._last + 1 - max(self._start, self._count_from)
        if counted > 0:
            self._voiced_done += counted
        return [{"type": "speech", "t": round(self._start * FRAME_SECONDS, 4),
                 "dur": round(frames * FRAME_SECONDS, 4)}]
