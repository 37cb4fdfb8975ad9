"""An echo suppressor for the gateway's line→phone direction (pure DSP, no I/O).

The FXO hybrid returns part of what Linebox plays on the line (the IP phone user's own
voice) in what it hears. A suppressor in the style of ITU-T G.164 removes it: while the
far end (the phone, heard through the reference = the frames played on the line) talks
and the line brings back clearly less than that, the line's frame is echo and is muted;
when the line is about as loud as the far end or louder, somebody is talking on the line
(double talk, "break-in") and the frame passes.

Per frame it costs two sums of squares and a comparison (no per-sample Python beyond
``sum(map(mul))``): a pure-Python canceller (NLMS over a 16-64 ms tail: 20k-80k
multiply-adds per 20 ms frame) would cost 20-80x the 1.5 % of a core one bridged call
may take on a Pi Zero 2 W (bench/gateway_bench.py prints the figures).

Thresholds (G.164 §3 describes the suppression and break-in functions; the figures
here are Linebox's, chosen for the 6-24 dB return loss of real hybrids, ASSUMED).
"""

import operator
from array import array
from collections import deque

from linebox import FRAME
from linebox.dsp.levels import frame_energy

_mul = operator.mul

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

_SILENT = array("h", bytes(2 * FRAME))
_FAR_ACTIVE = frame_energy(FAR_ACTIVE_DBM0)


class EchoSuppressor:
    """``reference(frame)`` with each frame played on the line (the far end), then
    ``process(frame)`` with what the line brought for the same slot: returns the frame to
    forward (the same frame, or silence when it was echo)."""

    def __init__(self, span_frames: int = ECHO_SPAN_FRAMES, break_in_db: float = BREAK_IN_DB) -> None:
        self._far: deque[int] = deque([0] * span_frames, maxlen=span_frames)
        self._break_in = 10.0 ** (-break_in_db / 10.0)
        self._hang = 0
        self.suppressed = 0      # frames muted so far
        self.frames = 0          # frames processed so far

    def reference(self, frame: array | None) -> None:
        """A frame the far end sent, just played on the line (None: silence)."""
        self._far.append(0 if frame is None else sum(map(_mul, frame, frame)))

    def process(self, frame: array) -> array:
        """The line's frame, with the echo removed."""
        self.frames += 1
        far = max(self._far)
        if far < _FAR_ACTIVE:
            self._hang = 0
            return frame
        near = sum(map(_mul, frame, frame))
        if near >= far * self._break_in:
            self._hang = BREAK_IN_HANG_FRAMES
            return frame
        if self._hang:
            self._hang -= 1
            return frame
        self.suppressed += 1
        return _SILENT
