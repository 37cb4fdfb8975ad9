"""On-hook caller ID: FSK bursts (Bell 202, ITU-T V.23) and DTMF caller ID.

``CallerIdDetector`` is a listener detector (``feed(frame, energy)`` every 20 ms frame,
``flush()`` at the end). Almost every frame it hears is not caller ID, so it spends as
little as it can on them:

1. energy gate: frames below ``GATE_DBM0`` cost one comparison;
2. spectral slope: a frame whose lag-1 autocorrelation is above ``LAG1_MAX`` of its
   energy has most of it below the FSK band (voiced speech, hum, music's bass) and cannot
   pass the band check; the lag-1 autocorrelation (one ``math.dist``, which the listener
   shares with DTMF) skips most loud frames that are not caller ID; a frame whose lag-2
   autocorrelation is above ``LAG2_MAX`` of its energy has too little of it in the band
   too (one more ``math.dist``, a seventh of a band check);
3. band check: one packed big-int correlation (``fsk.BandCheck``) measures how much of the
   frame's energy sits at the mark and space frequencies; speech and noise fail here;
4. keys: in the listener, a frame where the DTMF detector has a key down or a run of
   key hits starts no burst (keys fill the FSK band, but are no FSK), and a burst that
   starts is demodulated one frame later, once that frame too is known to be no key;
5. only then the demodulator runs, over the frame and the ``HISTORY`` frames before it,
   so the beginning of the burst is not lost. It keeps running while the band check keeps
   passing, and stops ``END_FRAMES`` frames after it fails or once a message is complete.

A message is reported only when its checksum holds (GR-30-CORE, ETSI EN 300 659-3).
"""

from collections import deque

from linebox import FRAME, RATE
from linebox.dsp import fsk
from linebox.dsp.levels import frame_energy
from linebox.dsp.levels import lag1 as _lag1
from linebox.dsp.levels import lag2 as _lag2

GATE_DBM0 = -42.0          # below the weakest burst we accept (-32 dBm0) with margin
# Share of a frame's energy in the FSK band (fsk.BandCheck): seizure and mark score 0.8-1.0,
# data 0.6-0.9; 99 % of speech frames score under 0.55. A burst starts on a frame above
# BAND_START and lasts until END_FRAMES frames in a row fall under BAND_KEEP.
BAND_START = 0.65
BAND_KEEP = 0.4
# Lag-1 autocorrelation over energy is the energy-weighted mean of cos(2 pi f / 8000).
# The band check's filters cover mark - 400 to space + 400 Hz (cos <= 0.81 from 800 Hz
# up); a frame with BAND_START of its energy there and the rest at 0 Hz stays under
# 0.65 x 0.81 + 0.35 = 0.88. Over every mixture of two tones, frames above 0.8 score at
# most 0.59 (tests/test_callerid.py sweeps them); 0.85 keeps a margin.
LAG1_MAX = 0.85
# Lag 2 over energy is the energy-weighted mean of cos(4 pi f / 8000): the band check's
# 800 to 2600 Hz (900 to 2500 V.23) give at most cos(4 pi 800 / 8000) = 0.31, so a frame
# with BAND_START of its energy there stays under 0.65 x 0.31 + 0.35 = 0.55. Over every
# mixture of two tones that passes the lag-1 screen, frames above 0.3 score at most 0.53
# (bell202; v23 0.46; tests/test_callerid.py sweeps them); 0.35 keeps a margin. It skips
# about 60 % of the band checks the lag-1 screen leaves on the bench mix (speech whose
# energy is mostly below 800 Hz but not enough for lag 1 to tell), each 7x its cost.
LAG2_MAX = 0.35
HISTORY = 3                # frames kept before the band check first passes (60 ms)
END_FRAMES = 3             # frames failing the band check that end a burst (60 ms)
MAX_BURST_SECONDS = 5.0    # seizure + mark + a 255-byte message with gaps, with margin

SDMF = 0x04
MDMF = 0x80
# MDMF parameter types (GR-30-CORE; ETSI EN 300 659-3 §5.4.1 for 0x03).
P_DATETIME = 0x01
P_NUMBER = 0x02
P_DIALABLE_NUMBER = 0x03
P_NUMBER_ABSENT = 0x04
P_NAME = 0x07
P_NAME_ABSENT = 0x08


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def _absence(value: bytes) -> str | None:
    code = _text(value)
    return code if code in ("O", "P") else None


def parse_message(msg: bytes) -> dict | None:
    """Caller-ID fields of one complete SDMF or MDMF message, or None if it is not valid.

    ``msg`` runs from the message type to the checksum. Returns a dict with ``format``,
    ``datetime``, ``number``, ``name``, ``number_absent``, ``name_absent``.
    """
    if len(msg) < 3 or len(msg) != msg[1] + 3 or sum(msg) & 0xFF:
        return None
    body = msg[2:-1]
    out = {"format": None, "datetime": None, "number": None, "name": None,
           "number_absent": None, "name_absent": None}
    if msg[0] == SDMF:
        if len(body) < 9 or not body[:8].isdigit():
            return None
        out["format"] = "sdmf"
        out["datetime"] = _text(body[:8])
        rest = body[8:]
        if rest in (b"O", b"P"):
            out["number_absent"] = _text(rest)
        else:
            out["number"] = _text(rest)
        return out
    if msg[0] != MDMF:
        return None
    out["format"] = "mdmf"
    i = 0
    while i < len(body):
        if i + 2 > len(body) or i + 2 + body[i + 1] > len(body):
            return None
        ptype, value = body[i], body[i + 2:i + 2 + body[i + 1]]
        i += 2 + body[i + 1]
        if ptype == P_DATETIME and len(value) == 8 and value.isdigit():
            out["datetime"] = _text(value)
        elif ptype == P_NUMBER or (ptype == P_DIALABLE_NUMBER and out["number"] is None):
            out["number"] = _text(value)
        elif ptype == P_NUMBER_ABSENT:
            out["number_absent"] = _absence(value)
        elif ptype == P_NAME:
            out["name"] = _text(value)
        elif ptype == P_NAME_ABSENT:
            out["name_absent"] = _absence(value)
        # Any other parameter (call type, redirecting number, ...) is skipped.
    return out


class CallerIdDetector:
    """Finds FSK caller-ID bursts of one standard ("bell202" or "v23") in a line's frames.

    Emits ``{"type": "callerid", "t", "standard", "format", "datetime", "number", "name",
    "number_absent", "name_absent"}`` once per message whose checksum holds; ``t`` is the
    start of the burst (of its channel seizure when there is one).
    """

    def __init__(self, standard: str) -> None:
        self.std = fsk.get_standard(standard)
        self._band = fsk.BandCheck(self.std.mark, self.std.space)
        self._gate = frame_energy(GATE_DBM0, FRAME)
        self._history: deque = deque(maxlen=HISTORY)
        self._samples = 0           # samples fed so far (the detector's clock)
        self._demod: fsk.Discriminator | None = None
        self._rx: fsk.AsyncReceiver | None = None
        self._base = 0              # stream index of the receiver's decision 0
        self._burst_t = 0.0
        self._fails = 0
        self._rearm = False         # after a message: wait for the band check to fail once
        self._msg = bytearray()
        # A burst begun on the last frame (its frames: the history), waiting one frame
        # (see feed) to be demodulated.
        self._pending = False
        self.frames_demodulated = 0   # frames the demodulator ran on (the rest were cheap)

    def feed(self, frame, energy: int, lag1: int | None = None,
             lag2: int | None = None, keying: bool = False) -> list[dict]:
        """Take one frame and its energy (and, if the caller has them, its lag-1 and lag-2
        autocorrelations ``sum(frame[i] * frame[i + 1])``, ``... frame[i + 2]``, and
        whether a DTMF detector has a key down or a run of key hits in it); return
        complete messages.

        A burst whose start frame or the frame after it is ``keying`` is not caller ID:
        a DTMF hit is a 10 ms block with 72 % of its energy in two tones, the low-group
        one (697-941 Hz) within 6 dB of the high-group one, and neither standard's FSK
        has any of its energy below 1100 Hz (Bell 202 1200/2200 Hz, V.23 1300/2100 Hz:
        GR-30-CORE, ETSI EN 300 659-1 §6.1). Keys light up the band check (their high
        tones lie between mark and space), and the demodulator would run on each; so the
        demodulation of a new burst waits one frame for the key detector's word.
        """
        start = self._samples
        self._samples = start + FRAME
        events = []
        if self._rx is not None:
            if not self._pending:
                return self._keep(start, frame, energy)
            self._pending = False
            if keying:
                # Its start was a key's onset: back to hunting (this frame included).
                self._demod = self._rx = None
            else:
                # The start frame and the history before it, as they would have been
                # demodulated one frame ago; then this frame, as any in a burst.
                events = self._demodulate(list(self._history))
                if self._rx is not None:
                    return events + self._keep(start, frame, energy)
        # Outside a burst: does one start here? History keeps copies: the caller may reuse
        # its frame buffer.
        if energy < self._gate:
            self._rearm = False
            self._history.append((start, frame[:], energy))
            return events
        if lag1 is None:
            lag1 = _lag1(frame, energy)
        in_band = (not keying and lag1 <= LAG1_MAX * energy
                   and (_lag2(frame, energy) if lag2 is None else lag2) <= LAG2_MAX * energy
                   and self._band.ratio(frame, energy) >= BAND_START)
        if not in_band or self._rearm:
            self._rearm = self._rearm and in_band
            self._history.append((start, frame[:], energy))
            return events
        self._begin(start, frame, energy)
        self._pending = True
        return events

    def _keep(self, start: int, frame, energy: int) -> list[dict]:
        """A frame inside a burst: demodulate it; end the burst when the band is lost."""
        in_band = energy >= self._gate and self._band.ratio(frame, energy) >= BAND_KEEP
        self._fails = 0 if in_band else self._fails + 1
        events = self._demodulate([(start, frame, energy)])
        if self._rx is not None and (self._fails >= END_FRAMES
                                     or self._samples - self._base > MAX_BURST_SECONDS * RATE):
            self._end(rearm=in_band)
        return events

    def flush(self) -> list[dict]:
        """End of the input: a burst that began on the last frame is demodulated (only
        complete messages are reported, and those already were)."""
        if not self._pending:
            return []
        self._pending = False
        return self._demodulate(list(self._history))

    def _begin(self, start: int, frame, energy: int) -> None:
        self._history.append((start, frame[:], energy))
        self._demod = fsk.Discriminator(self.std.mark, self.std.space)
        self._rx = fsk.AsyncReceiver(self.std.baud)
        self._base = self._history[0][0]
        self._burst_t = self._onset() / RATE
        self._fails = 0
        self._msg = bytearray()

    def _onset(self) -> int:
        """Stream index where the signal in the history began (2.5 ms resolution)."""
        slices = []
        for start, frame, _ in self._history:
            for k, e in enumerate(fsk.slice_energies(frame)):
                slices.append((start + 20 * k, e))
        # The burst's level is that of the latest frame; its onset is the first slice of
        # the final run of slices above a quarter of it.
        level = sum(e for _, e in slices[-8:]) / 8
        onset = slices[-1][0]
        for idx, e in reversed(slices):
            if e < level / 4:
                break
            onset = idx
        return onset

    def _end(self, rearm: bool) -> None:
        self._demod = self._rx = None
        self._pending = False
        self._history.clear()
        self._rearm = rearm

    def _demodulate(self, frames) -> list[dict]:
        events = []
        self.frames_demodulated += len(frames)
        for _, frame, _ in frames:
            chars = self._rx.feed(self._demod.process(frame))
            for value, _, first in chars:
                ev = self._char(value, first)
                if ev is not None:
                    events.append(ev)
                    self._end(rearm=True)
                    return events
        return events

    def _char(self, value: int, first: bool) -> dict | None:
        msg = self._msg
        if first:
            msg.clear()
            if value not in (SDMF, MDMF):
                return None
        elif not msg:
            return None
        msg.append(value)
        if len(msg) < 2 or len(msg) < msg[1] + 3:
            return None
        fields = parse_message(bytes(msg))
        msg.clear()
        if fields is None:
            return None
        return {"type": "callerid", "t": round(self._burst_t, 4), "standard": self.std.name,
                **fields}


# DTMF caller ID (sent before the first ring in Denmark, the Netherlands, Sweden, Finland,
# Brazil, India, Taiwan and others). No single standard covers it; two families are in use
# (as Asterisk's callerid_get_dtmf() and spandsp's adsi.c read them):
#
#   C-terminated: fields led by a letter, "A<number>" the calling number, "D<number>" a
#     redirecting number, "B<code>" special information, the whole closed by "C":
#     A<number>C, A<number>D<redirect>C, B00C. Special information "00" is number
#     unavailable ("O"), "10" presentation restricted ("P"), as Asterisk maps them.
#   #-terminated (Denmark): "A<number>#" or plain "<number>#"; "D<code>#" with 1 = private
#     ("P"), 2 = international call, number unavailable ("O"), 3 = unavailable ("O").
#
# A lone "D<code>C" with a one- or two-digit code is read like the Danish D codes, leading
# zeros ignored (so D1C/D01C private, D00C unavailable) and "D10C" like "B10C" (private);
# "D<number>C" with three digits or more is a calling number (Taiwan, Kuwait).
DTMF_DIGIT_GAP = 1.0     # seconds between digits after which a partial message is dropped
_SPECIAL_C = {"00": "O", "10": "P"}
_ABSENCE_D = {"0": "O", "00": "O", "1": "P", "01": "P", "2": "O", "02": "O", "3": "O", "03": "O",
              "10": "P"}


class DtmfCallerIdParser:
    """Assembles DTMF caller ID from the digits the DTMF detector reports.

    ``feed(digit, t)`` returns the caller-ID event when ``digit`` (a terminator, C or #)
    completes a message. ``timeout(t)``, called when no digit came for a while, ends what
    is pending: an unterminated "A<number>" of at least ``MIN_UNTERMINATED`` digits is
    reported (some exchanges stop sending at the first ring), anything else is dropped.
    Digits more than ``DTMF_DIGIT_GAP`` seconds apart start over. The event's ``t`` is the
    first digit's.

    Only feed it digits heard on hook, before the call is answered: "<number>#" is also
    what a caller keys in as a PIN.
    """

    MIN_UNTERMINATED = 3
    MAX_DIGITS = 40          # longer than any caller-ID message: junk, start over

    def __init__(self) -> None:
        self._digits = ""
        self._t0 = 0.0
        self._last: float | None = None

    def feed(self, digit: str, t: float) -> dict | None:
        digit = digit.upper()
        if self._last is not None and t - self._last > DTMF_DIGIT_GAP:
            self._digits = ""
        self._last = t
        if not self._digits or len(self._digits) >= self.MAX_DIGITS:
            self._digits = ""
            if digit in "C#*":
                return None     # a terminator cannot start a message
            self._t0 = t
        self._digits += digit
        if digit not in "C#":
            return None
        text, self._digits = self._digits, ""
        return self._event(parse_dtmf(text))

    def timeout(self, t: float) -> dict | None:
        text, self._digits, self._last = self._digits, "", None
        if text[:1] == "A" and text[1:].isdigit() and len(text) > self.MIN_UNTERMINATED:
            return self._event({"number": text[1:], "number_absent": None})
        return None

    def _event(self, fields: dict | None) -> dict | None:
        if fields is None:
            return None
        return {"type": "callerid", "t": round(self._t0, 4), "standard": "dtmf",
                "format": "dtmf", "datetime": None, "number": fields["number"], "name": None,
                "number_absent": fields["number_absent"], "name_absent": None}


def parse_dtmf(text: str) -> dict | None:
    """``number``/``number_absent`` of a complete DTMF caller-ID string (with terminator)."""
    end, body = text[-1], text[:-1]
    if not body or end not in "C#":
        return None
    fields: dict[str, str] = {}
    key = "" if body[0].isdigit() else body[0]
    if not key and end != "#":
        return None         # only the #-terminated form may omit the start code
    value = ""
    for ch in body[1:] if key else body:
        if ch in "ABD":
            if key in fields:
                return None
            fields[key] = value
            key, value = ch, ""
        elif ch.isdigit():
            value += ch
        else:
            return None     # '*', or 'C' in the middle
    if key in fields:
        return None
    fields[key] = value
    number = fields.get("A") or fields.get("")
    absent = None
    if "B" in fields:
        absent = _SPECIAL_C.get(fields["B"])
        if absent is None:
            return None
    elif "D" in fields and not number:
        code = fields["D"]
        if len(code) > 2:
            number = code
        else:
            absent = _ABSENCE_D.get(code)
            if absent is None:
                return None
    if number:
        return {"number": number, "number_absent": None}
    if absent:
        return {"number": None, "number_absent": absent}
    return None
