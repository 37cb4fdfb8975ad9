"""The line listener: one object per line, fed 20 ms frames, emitting events.

It runs every detector over each frame (DTMF, call-progress tones, FSK caller ID and, on
V.23 plans, the alert tone before it, voice activity) after reading the frame into a tuple
and computing its energy and lag-1 autocorrelation once for all of them, turns DTMF
digits into DTMF caller ID where a line sends it that way, and keeps voice activity from
reporting the line's own tones as speech. `linebox analyze` runs exactly this object over a recording.
"""

import math
from array import array

from linebox import FRAME, RATE
from linebox.dsp.alert import AlertToneDetector
from linebox.dsp.callerid import GATE_DBM0 as FSK_GATE_DBM0
from linebox.dsp.callerid import CallerIdDetector, DtmfCallerIdParser
from linebox.dsp.dtmf import FRAME_GATE as DTMF_GATE
from linebox.dsp.dtmf import DtmfDetector
from linebox.dsp.levels import frame_energy
from linebox.dsp.plans import get_plan
from linebox.dsp.progress import ProgressDetector
from linebox.dsp.vad import VoiceActivityDetector

_hypot = math.hypot
_dist = math.dist
# The lag-1 autocorrelation (DTMF's and caller ID's spectral-slope screen) is computed once
# per frame, for frames loud enough for either.
_LAG1_GATE = min(DTMF_GATE, frame_energy(FSK_GATE_DBM0))
# A DTMF caller-ID string whose next digit does not come within this long is over.
DTMF_CID_GAP = 1.0
# Caller-ID FSK bursts last well under this; voice activity during one is not speech.
FSK_BURST_SECONDS = 0.8
# A tone is declared up to 4 s after it began (fax CNG; busy 3.5 s): speech stretches are
# held this long so that a tone's first bursts are not reported as someone talking.
SPEECH_HOLD = 4.0
# Exchanges send DTMF caller ID as short machine tones; a longer key is a person typing.
DTMF_CID_MAX_TONE = 0.1
# A number sent without a start code ("...#") is taken as caller ID only from this length on.
DTMF_CID_MIN_DIGITS = 3


class Listener:
    """Hears one line: feed() it 20 ms frames (160 samples), read the events it returns.

    The detectors' live state is exposed for the call flows: ``pressed`` (the key held
    now), ``tone`` (the call-progress tone sounding now) and ``vad`` (voice activity).
    """

    def __init__(self, plan: str = "us", callerid: bool = True) -> None:
        self.plan = get_plan(plan)
        self.dtmf = DtmfDetector()
        self.progress = ProgressDetector(self.plan.name)
        self.vad = VoiceActivityDetector()
        self.fsk = CallerIdDetector(self.plan.callerid) if callerid else None
        # The dual-tone alert before caller ID (BT SIN 227, ETSI EN 300 659-1 §6.1.1): sent
        # only before a V.23 burst, so listened for while FSK is on a V.23 plan. Bell 202
        # lines (GR-30-CORE) send caller ID between the rings, after no alert.
        self.alert = (AlertToneDetector()
                      if self.fsk is not None and self.plan.callerid == "v23" else None)
        self.dtmf_cid = DtmfCallerIdParser()
        # Caller ID comes before the call is answered; the call flow turns this off then,
        # so that a caller typing "1234#" is not taken for caller ID.
        self.dtmf_callerid = True
        self._last_digit_t = None
        self.samples = 0
        # Intervals (start, end) of line tones and keys, to keep them out of `speech`.
        self._not_speech: list[list[float]] = []
        self._tone_open: list[float] | None = None
        self._held: list[dict] = []

    @property
    def pressed(self) -> str | None:
        return self.dtmf.pressed

    @property
    def tone(self) -> str | None:
        return self.progress.current

    @property
    def now(self) -> float:
        return self.samples / RATE

    def feed(self, frame: array) -> list[dict]:
        """Process one 160-sample frame; return the events it completed."""
        # The frame is read as a tuple once: every product over it then takes ready-made
        # ints instead of making them anew from the array's 16-bit samples, and the C
        # functions that take the samples (math.hypot, math.dist) take a tuple as it is
        # (a list they would copy into one first). Caller ID's history keeps it uncopied.
        if type(frame) is not tuple:
            frame = tuple(frame.tolist() if type(frame) is array else frame)
        # levels.energy and levels.lag1, inline: the same exact integers for a frame of
        # FRAME samples (both are exact up to levels._EXACT_N).
        energy = round(_hypot(*frame) ** 2)
        # The line's clock after this frame (what ``now`` reads), made once.
        samples = self.samples + FRAME
        self.samples = samples
        now = samples / RATE
        fsk = self.fsk
        if energy >= (_LAG1_GATE if fsk is not None else DTMF_GATE):
            a = frame[0]
            b = frame[-1]
            lag1 = (2 * energy - a * a - b * b - round(_dist(frame[1:], frame[:-1]) ** 2)) >> 1
        else:
            lag1 = None
        dtmf = self.dtmf
        events = dtmf.feed(frame, energy, lag1)
        if events:
            events = self._dtmf_events(events)
        elif self._last_digit_t is not None and now - self._last_digit_t > DTMF_CID_GAP:
            self._last_digit_t = None
            ev = self._plausible(self.dtmf_cid.timeout(now))
            if ev:
                events = [ev]
        progress = self.progress
        tones = progress.feed(frame, energy)
        if tones:
            events = events + tones
            self._tone_open = [tones[-1]["t"], now]
            self._not_speech.append(self._tone_open)
        elif self._tone_open is not None:
            if progress.current is None:
                self._tone_open = None
            else:
                self._tone_open[1] = now
        if fsk is not None:
            # DTMF's lag 2 (when its screens computed one) serves caller ID's screen too;
            # a frame of a key starts no burst (keys are no FSK, but fill its band).
            cid = fsk.feed(frame, energy, lag1, dtmf.lag2, dtmf.keying)
            if cid:
                events = events + cid
                for ev in cid:
                    self._not_speech.append([ev["t"], ev["t"] + FSK_BURST_SECONDS])
            if self.alert is not None:
                alert = self.alert.feed(frame, energy, lag1)
                if alert:
                    events = events + alert
                    self._not_speech.append([alert[0]["t"], alert[0]["t"] + alert[0]["dur"]])
        speech = self.vad.feed(frame, energy)
        held = self._held
        if speech:
            held.extend(speech)
        if held and held[0]["t"] + held[0]["dur"] < now - SPEECH_HOLD:
            ripe = [e for e in held if e["t"] + e["dur"] < now - SPEECH_HOLD]
            self._held = held[len(ripe):]
            events = events + self._speech_only(ripe)
        return events

    def flush(self) -> list[dict]:
        """Events still pending at the end of the input."""
        events = self._dtmf_events(self.dtmf.flush())
        ev = self._plausible(self.dtmf_cid.timeout(self.now + DTMF_CID_GAP + 1))
        if ev:
            events.append(ev)
        events += self.progress.flush()
        if self.fsk is not None:
            events += self.fsk.flush()
            if self.alert is not None:
                events += self.alert.flush()
        events += self._speech_only(self._held + self.vad.flush())
        self._held = []
        return events

    def _dtmf_events(self, events: list[dict]) -> list[dict]:
        out = list(events)
        for ev in events:
            self._not_speech.append([ev["t"], ev["t"] + ev["dur"] + 0.05])
            if not self.dtmf_callerid:
                continue
            if ev["dur"] > DTMF_CID_MAX_TONE:
                self.dtmf_cid = DtmfCallerIdParser()
                self._last_digit_t = None
                continue
            self._last_digit_t = ev["t"]
            cid = self._plausible(self.dtmf_cid.feed(ev["digit"], ev["t"]))
            if cid:
                out.append(cid)
        return out

    @staticmethod
    def _plausible(cid: dict | None) -> dict | None:
        if cid and cid.get("number") is not None and len(cid["number"]) < DTMF_CID_MIN_DIGITS:
            return None
        return cid

    def _speech_only(self, stretches: list[dict]) -> list[dict]:
        """Drop voice-activity stretches that were mostly a tone, a key or caller ID."""
        keep = []
        horizon = self.now - 30.0
        self._not_speech = [iv for iv in self._not_speech if iv[1] >= horizon or iv is self._tone_open]
        for ev in stretches:
            s, e = ev["t"], ev["t"] + ev["dur"]
            covered = sum(max(0.0, min(e, b) - max(s, a)) for a, b in self._not_speech)
            if covered < 0.5 * (e - s):
                keep.append(ev)
        return keep


def analyze(samples: array, plan: str = "us") -> list[dict]:
    """Run a listener over a whole recording; events sorted by time."""
    listener = Listener(plan)
    events: list[dict] = []
    n = len(samples)
    for i in range(0, n - n % FRAME, FRAME):
        ev = listener.feed(samples[i:i + FRAME])
        if ev:
            events.extend(ev)
    if n % FRAME:
        tail = samples[n - n % FRAME:]
        tail.extend([0] * (FRAME - len(tail)))
        ev = listener.feed(tail)
        if ev:
            events.extend(ev)
    events.extend(listener.flush())
    # The alert tone before caller ID is a signal for the line, not one of the events a
    # recording is analysed for (contract §3 lists those).
    events = [e for e in events if e["type"] != "alert"]
    events.sort(key=lambda e: e["t"])
    return events
