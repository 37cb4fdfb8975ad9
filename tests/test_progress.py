"""Call-progress tone detector: every plan's tones inside their tolerances, nothing else.

Signals are built here from the plan tables (frequency, cadence and level scaled to the
edge being tested), with white noise and a mu-law channel where the edge says so, and
start at arbitrary sample offsets after real speech.
"""

import math
import operator
import random
import wave
from array import array

import pytest

from conftest import run_detector
from linebox.dsp.g711 import ulaw_roundtrip
from linebox.dsp.levels import amplitude, mean_square
from linebox.dsp.plans import FAX_CED, FAX_CNG, PLAN_NAMES, get_plan, tone_signal
from linebox.dsp.progress import ProgressDetector

RATE = 8000
TONES = ("dial", "busy", "reorder", "ringback", "sit", "fax-cng", "fax-ced")
HANGUP_TONES = ("dial", "busy", "reorder", "sit")

# Longest time from a tone's onset to its event (the brief's figures). French dial tone
# cannot be told from the French ringback's 1.5 s ring before that ring is over.
LATENCY = {"dial": 1.5, "busy": 3.5, "reorder": 2.0, "sit": 1.5, "fax-cng": 4.0,
           "fax-ced": 1.0}
FR_DIAL_LATENCY = 2.0
# Ringback "as soon as sure": after the first ring where the ring's sound is its own
# (us, uk), at the start of the second ring where the plan's other tones share its sound.
RINGBACK_LATENCY = {"us": 2.0, "uk": 1.0, "de": 5.0, "fr": 5.0, "eu": 5.0}
ONSET_TOL = 0.5

# Seconds of tone to play: enough to be declared with cadences 10 % slow, and more.
PLAY = {"dial": 3.0, "busy": 4.5, "reorder": 3.0, "ringback": 7.0, "sit": 2.0,
        "fax-cng": 5.0, "fax-ced": 2.0}


# -- signals ------------------------------------------------------------------------------

def sines(freqs, n, level, phase=0.0):
    """n samples of the sum of sines at ``level`` dBm0 each (floats)."""
    out = [0.0] * n
    for f in freqs:
        a, w = amplitude(level), 2 * math.pi * f / RATE
        p = phase + f  # different phases for the different frequencies
        out = [v + a * math.sin(w * i + p) for i, v in enumerate(out)]
    return out


def to_pcm(samples) -> array:
    return array("h", (max(-32768, min(32767, int(round(v)))) for v in samples))


def tone_spec(plan, name):
    p = get_plan(plan)
    return {"fax-cng": FAX_CNG, "fax-ced": FAX_CED}.get(name) or p.tones[name]


def make_tone(plan, name, seconds, level=-20.0, fscale=1.0, tscale=1.0, phase=0.3):
    """The plan's tone as an exchange would send it, its frequencies scaled by fscale,
    its cadence by tscale, each frequency at ``level`` dBm0 (float samples)."""
    total = int(round(seconds * RATE))
    out: list[float] = []
    if name == "sit":
        sit = get_plan(plan).sit
        for i, seg in enumerate(sit.segments):
            dur = sit.durations[-1] if i == 2 else sit.durations[0]
            out += sines([seg[0] * fscale], int(round(dur * tscale * RATE)), level, phase)
    else:
        spec = tone_spec(plan, name)
        freqs = [f * fscale for f in spec.freqs]
        if not spec.cadence:
            out = sines(freqs, total, level, phase)
        i = 0
        while len(out) < total:
            n = int(round(spec.cadence[i % len(spec.cadence)] * tscale * RATE))
            out += sines(freqs, n, level, phase + i) if i % 2 == 0 else [0.0] * n
            i += 1
    out += [0.0] * (total - len(out))
    return out[:total]


def noise(n, level, seed=7):
    rnd = random.Random(seed)
    sigma = math.sqrt(mean_square(level))
    return [rnd.gauss(0.0, sigma) for _ in range(n)]


def tone_power_dbm0(plan, name, level):
    n = 1 if name in ("sit", "fax-cng", "fax-ced") else len(tone_spec(plan, name).freqs)
    return level + 10 * math.log10(n)


def speech_prefix(path, seconds, offset):
    with wave.open(str(path)) as w:
        w.setpos(offset)
        return array("h", w.readframes(int(seconds * RATE)))


run = run_detector


def detect(plan, samples):
    return run(ProgressDetector(plan), samples)


def latency_limit(plan, name, tscale=1.0):
    if name == "ringback":
        return RINGBACK_LATENCY[plan] * tscale + 0.1
    if name == "dial" and plan == "fr":
        return FR_DIAL_LATENCY
    return LATENCY[name]


def assert_one(events, name, onset, plan, tscale=1.0):
    assert [e["tone"] for e in events] == [name], events
    ev = events[0]
    assert abs(ev["t"] - onset) <= ONSET_TOL, (ev, onset)
    assert onset < ev["at"] <= onset + latency_limit(plan, name, tscale), (ev, onset)


# -- every plan's tones, after speech, at arbitrary offsets ---------------------------------

@pytest.mark.parametrize("plan", PLAN_NAMES)
@pytest.mark.parametrize("name", TONES)
def test_each_tone_after_speech_is_declared_once_in_time(plan, name, speech_files):
    rnd = random.Random(f"{plan}-{name}")
    prefix = speech_prefix(speech_files[rnd.randrange(len(speech_files))],
                           rnd.uniform(1.0, 3.0), rnd.randrange(8000 * 60))
    prefix += array("h", [0] * rnd.randrange(1, 2400))
    onset = len(prefix) / RATE
    sig = prefix + to_pcm(make_tone(plan, name, PLAY[name], -20.0))
    events = detect(plan, sig + array("h", [0] * 8000))
    assert_one(events, name, onset, plan)


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_tone_signal_of_the_simulated_exchange_is_heard(plan):
    for name in TONES:
        events = detect(plan, array("h", [0] * 1234) + tone_signal(plan, name, PLAY[name]))
        assert_one(events, name, 1234 / RATE, plan)


# -- tolerances: accepted edges ---------------------------------------------------------

# (frequency scale, cadence scale, level per frequency): the corners of what must pass.
ACCEPT_EDGES = [(0.99, 0.9, -30.0), (1.01, 1.1, -10.0), (1.01, 0.9, -30.0),
                (0.99, 1.1, -10.0)]


@pytest.mark.parametrize("plan", PLAN_NAMES)
@pytest.mark.parametrize("name", TONES)
def test_tone_at_tolerance_edges_with_noise_after_mu_law_is_declared(plan, name):
    for i, (fscale, tscale, level) in enumerate(ACCEPT_EDGES):
        if name in ("dial", "fax-ced") and i >= 2:
            continue      # no cadence: the first two corners cover frequency and level
        seconds = PLAY[name] * max(tscale, 1.0)
        offset = 500 + 37 * i
        tone = make_tone(plan, name, seconds, level, fscale, tscale, phase=i)
        hiss = noise(offset + len(tone) + 4000, tone_power_dbm0(plan, name, level) - 20.0,
                     seed=i)
        sig = [0.0] * offset + tone + [0.0] * 4000
        pcm = ulaw_roundtrip(to_pcm(map(operator.add, sig, hiss)))
        events = detect(plan, pcm)
        assert_one(events, name, offset / RATE, plan, tscale)


# -- tolerances: rejected edges ---------------------------------------------------------

@pytest.mark.parametrize("plan", PLAN_NAMES)
@pytest.mark.parametrize("fscale", [0.95, 1.05])
def test_tones_five_percent_off_frequency_are_not_declared(plan, fscale):
    for name in TONES:
        events = detect(plan, to_pcm(make_tone(plan, name, PLAY[name], -20.0, fscale)))
        assert events == [], (name, events)


@pytest.mark.parametrize("plan", PLAN_NAMES)
@pytest.mark.parametrize("tscale", [0.8, 1.2])
def test_cadences_twenty_percent_off_are_not_declared(plan, tscale):
    for name in ("busy", "reorder", "ringback", "fax-cng"):
        events = detect(plan, to_pcm(make_tone(plan, name, 8.0, -20.0, 1.0, tscale)))
        assert events == [], (name, tscale, events)


def test_us_busy_at_300_ms_is_neither_busy_nor_reorder():
    # Between reorder (0.25/0.25) and busy (0.5/0.5): 20 % off the one, 40 % the other.
    sig = to_pcm(make_tone("us", "reorder", 6.0, -20.0, tscale=0.3 / 0.25))
    assert detect("us", sig) == []


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_tones_below_minus_40_dbm0_are_not_declared(plan):
    for name in TONES:
        events = detect(plan, to_pcm(make_tone(plan, name, PLAY[name], -40.0)))
        assert events == [], (name, events)


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_busy_and_reorder_are_told_apart(plan):
    for name in ("busy", "reorder"):
        events = detect(plan, to_pcm(make_tone(plan, name, 6.0, -20.0)))
        assert [e["tone"] for e in events] == [name]


@pytest.mark.parametrize("plan", PLAN_NAMES)
@pytest.mark.parametrize("name", ["busy", "reorder"])
def test_hangup_tones_are_in_time_at_every_phase_of_the_frame(plan, name, speech_files):
    tone = to_pcm(make_tone(plan, name, PLAY[name], -25.0))
    speech = speech_prefix(speech_files[0], 2.0, 8000 * 40)
    for offset in range(0, 160, 23):
        prefix = speech + array("h", [0] * (1000 + offset))
        events = detect(plan, prefix + tone)
        assert_one(events, name, len(prefix) / RATE, plan)


def answer_tone(seconds, reversal=0.45, level=-12.0):
    """V.25 answer tone: 2100 Hz with a phase reversal every 450 ms."""
    a, w, half = amplitude(level), 2 * math.pi * 2100 / RATE, int(reversal * RATE)
    return [a * math.sin(w * i + math.pi * ((i // half) % 2)) for i in range(int(seconds * RATE))]


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_answer_tone_with_phase_reversals_is_fax_ced(plan):
    events = detect(plan, to_pcm([0.0] * 1111 + answer_tone(3.3)))
    assert_one(events, "fax-ced", 1111 / RATE, plan)


@pytest.mark.parametrize("plan", ["us", "eu"])
def test_tones_through_twenty_millisecond_dropouts_are_one_event(plan):
    # A lost packet on a VoIP leg: 20 ms of silence in the middle of each on-period.
    for name in ("busy", "dial"):
        sig = make_tone(plan, name, 8.0, -20.0)
        for start in range(1600, len(sig) - 160, 8000):
            sig[start:start + 160] = [0.0] * 160
        assert [e["tone"] for e in detect(plan, to_pcm(sig))] == [name]


def fsk(bits, mark, space, baud=1200, level=-13.0):
    """Phase-continuous FSK, as caller ID is sent."""
    a, out, phase, per_bit = amplitude(level), [], 0.0, RATE / baud
    for i in range(int(len(bits) * per_bit)):
        f = mark if bits[int(i / per_bit)] else space
        phase += 2 * math.pi * f / RATE
        out.append(a * math.sin(phase))
    return out


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_keys_and_caller_id_are_no_tones(plan):
    from linebox.dsp import gen
    keys = gen.dtmf_string("0123456789*#ABCD")
    for key in "159#D":
        keys += gen.dtmf(key, on=2.0, off=0.3)        # held keys: steady dual tones
    rnd = random.Random(plan)
    bits = [0, 1] * 150 + [1] * 180 + [rnd.randrange(2) for _ in range(400)]
    mark, space = (1200.0, 2200.0) if get_plan(plan).callerid == "bell202" else (1300.0, 2100.0)
    assert detect(plan, keys + to_pcm(fsk(bits, mark, space))) == []


# -- SIT as ITU-T E.180 defines it, on every plan -----------------------------------------

E180_FREQS = (950.0, 1400.0, 1800.0)
E180_SEGMENT = 0.330
E180_BAND = 50.0          # E.180: each frequency +-50 Hz


def e180_sit(freqs=E180_FREQS, lengths=(E180_SEGMENT,) * 3, level=-24.0, offset=700, seed=1):
    """An E.180 SIT (three segments, no gap between them, then 1 s of silence) at the
    E.180 level of -24 dBm0, with white noise 20 dB down, through a mu-law channel."""
    tone = []
    for i, (f, d) in enumerate(zip(freqs, lengths, strict=True)):
        tone += sines([f], int(round(d * RATE)), level, phase=0.7 * i)
    sig = [0.0] * offset + tone + [0.0] * 8000
    hiss = noise(len(sig), level - 20.0, seed=seed)
    return ulaw_roundtrip(to_pcm(map(operator.add, sig, hiss)))


def assert_sit(plan, sig, offset=700):
    events = detect(plan, sig)
    assert [e["tone"] for e in events] == ["sit"], events
    assert abs(events[0]["t"] - offset / RATE) <= 0.03, events


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_e180_sit_is_heard_on_every_plan(plan):
    assert_sit(plan, e180_sit())


@pytest.mark.parametrize("plan", PLAN_NAMES)
@pytest.mark.parametrize("segment", [0, 1, 2])
@pytest.mark.parametrize("delta", [-E180_BAND, E180_BAND])
def test_e180_sit_segment_at_the_edge_of_its_band_is_heard(plan, segment, delta):
    freqs = list(E180_FREQS)
    freqs[segment] += delta
    assert_sit(plan, e180_sit(freqs, seed=segment))


@pytest.mark.parametrize("plan", PLAN_NAMES)
@pytest.mark.parametrize("segment", [0, 1, 2])
@pytest.mark.parametrize("delta", [-E180_BAND - 10.0, E180_BAND + 10.0])
def test_e180_sit_segment_beyond_its_band_is_not_sit(plan, segment, delta):
    # 10 Hz beyond the band (a fifth of its tolerance) is some other tone.
    freqs = list(E180_FREQS)
    freqs[segment] += delta
    assert detect(plan, e180_sit(freqs, seed=segment)) == []


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_sit_segments_at_the_length_edges_are_heard(plan):
    # E.180: 330 +- 70 ms; the us plan also takes GR-1162's 276 / 380 ms +-20 %.
    lo, hi = get_plan(plan).sit.lengths
    assert lo <= 0.260 and hi >= 0.400
    for i, d in enumerate((lo, hi)):
        for segment in range(3):
            lengths = [E180_SEGMENT] * 3
            lengths[segment] = d
            assert_sit(plan, e180_sit(lengths=lengths, offset=700 + 31 * i, seed=segment),
                       offset=700 + 31 * i)


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_sit_segments_beyond_the_length_edges_are_not_sit(plan):
    lo, hi = get_plan(plan).sit.lengths
    for d in (lo - 0.03, hi + 0.03):
        for segment in range(3):
            lengths = [E180_SEGMENT] * 3
            lengths[segment] = d
            assert detect(plan, e180_sit(lengths=lengths, seed=segment)) == [], (d, segment)


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_north_american_sit_is_heard_on_every_plan(plan):
    # GR-1162's frequencies and lengths lie inside E.180's: a us-style intercept is SIT
    # on a line of any plan too.
    na = get_plan("us").sit
    for low in (0, 1):
        freqs = (na.segments[0][low], na.segments[1][1 - low], na.segments[2][0])
        lengths = (na.durations[low], na.durations[1 - low], na.durations[1])
        assert_sit(plan, e180_sit(freqs, lengths))


# -- occurrences ------------------------------------------------------------------------

@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_thirty_seconds_of_busy_is_one_event(plan):
    det = ProgressDetector(plan)
    events = run(det, tone_signal(plan, "busy", 30.0))
    assert [e["tone"] for e in events] == ["busy"]


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_tone_that_stops_and_comes_back_is_a_new_event(plan):
    pieces = [tone_signal(plan, "busy", 4.0), array("h", [0] * 8 * RATE),
              tone_signal(plan, "busy", 4.0), array("h", [0] * 4000),
              tone_signal(plan, "dial", 3.0), array("h", [0] * 8000),
              tone_signal(plan, "dial", 3.0)]
    onsets, sig = [], array("h")
    for piece in pieces:
        if any(piece):
            onsets.append(len(sig) / RATE)
        sig += piece
    events = detect(plan, sig)
    assert [e["tone"] for e in events] == ["busy", "busy", "dial", "dial"]
    for ev, onset in zip(events, onsets, strict=True):
        assert abs(ev["t"] - onset) <= ONSET_TOL


def test_current_is_the_tone_sounding_now():
    det = ProgressDetector("us")
    assert det.current is None
    sig = tone_signal("us", "busy", 3.2)
    for i in range(0, len(sig), 160):
        frame = sig[i:i + 160]
        det.feed(frame, sum(map(operator.mul, frame, frame)))
    assert det.current == "busy"
    for _ in range(100):     # 2 s of silence: longer than busy's off-period
        det.feed(array("h", [0] * 160), 0)
    assert det.current is None


def test_dial_tone_current_ends_when_it_stops():
    det = ProgressDetector("de")
    sig = tone_signal("de", "dial", 2.0)
    for i in range(0, len(sig), 160):
        frame = sig[i:i + 160]
        det.feed(frame, sum(map(operator.mul, frame, frame)))
    assert det.current == "dial"
    for _ in range(25):
        det.feed(array("h", [0] * 160), 0)
    assert det.current is None


def test_busy_that_turns_into_reorder_gives_both():
    sig = tone_signal("us", "busy", 5.0) + tone_signal("us", "reorder", 3.0)
    assert [e["tone"] for e in detect("us", sig)] == ["busy", "reorder"]


# -- the voicemail cut ------------------------------------------------------------------

@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_speech_then_busy_gives_one_busy_at_its_onset(plan, speech_files):
    for i, path in enumerate(speech_files[:2]):
        speech = speech_prefix(path, 6.0 + i * 1.3, 8000 * (20 + 17 * i) + 31 * i)
        sig = ulaw_roundtrip(speech + tone_signal(plan, "busy", 6.0, level_dbm0=-25.0))
        events = detect(plan, sig)
        assert [e["tone"] for e in events] == ["busy"], events
        assert abs(events[0]["t"] - len(speech) / RATE) <= ONSET_TOL


@pytest.mark.parametrize("plan", ["us", "de"])
def test_busy_joined_mid_ring_dates_from_the_cut_short_ring(plan):
    on = tone_spec(plan, "busy").cadence[0]
    full = make_tone(plan, "busy", 6.0, -20.0)
    cut = int(on * 0.6 * RATE)                    # join 60 % into the first on-period
    sig = to_pcm([0.0] * 3000 + full[cut:])
    events = detect(plan, sig)
    assert [e["tone"] for e in events] == ["busy"]
    assert abs(events[0]["t"] - 3000 / RATE) <= 0.05


# -- protocol ---------------------------------------------------------------------------

def test_events_have_exactly_the_contract_fields():
    events = detect("us", array("h", [0] * 4321) + tone_signal("us", "busy", 4.0))
    assert len(events) == 1
    ev = events[0]
    assert set(ev) == {"type", "tone", "t", "at"}
    assert ev["type"] == "tone" and ev["tone"] == "busy"
    for key in ("t", "at"):
        assert isinstance(ev[key], float) and ev[key] == round(ev[key], 4)


def test_feed_returns_a_fresh_empty_list_each_time():
    det = ProgressDetector("us")
    quiet = array("h", [0] * 160)
    first = det.feed(quiet, 0)
    first.append("x")
    assert det.feed(quiet, 0) == []
    assert det.flush() == []


def test_busy_completed_by_the_end_of_the_input_is_reported_by_flush():
    det = ProgressDetector("us")
    sig = tone_signal("us", "busy", 2.5)          # on off on off on, ending in the third on
    events = []
    for i in range(0, len(sig), 160):
        frame = sig[i:i + 160]
        events += det.feed(frame, sum(map(operator.mul, frame, frame)))
    assert events == []
    assert [e["tone"] for e in det.flush()] == ["busy"]


def test_unknown_plan_is_refused():
    with pytest.raises(ValueError, match="unknown tone plan"):
        ProgressDetector("xx")


# -- talk-off ---------------------------------------------------------------------------

def test_no_tone_in_any_of_the_recorded_speech_for_any_plan(speech_files):
    # One pass over the 17 minutes, feeding every plan's detector each frame.
    heard = []
    for path in speech_files:
        with wave.open(str(path)) as w:
            speech = array("h", w.readframes(w.getnframes()))
        dets = {p: ProgressDetector(p) for p in PLAN_NAMES}
        mul = operator.mul
        for i in range(0, len(speech) - 159, 160):
            frame = speech[i:i + 160]
            energy = sum(map(mul, frame, frame))
            for plan, det in dets.items():
                for ev in det.feed(frame, energy):
                    heard.append((path.name, plan, ev))
        heard += [(path.name, p, ev) for p, d in dets.items() for ev in d.flush()]
    assert heard == []


def note(freq, seconds, level=-15.0, harmonics=(1.0,), vibrato=0.0, rate_hz=5.5,
         decay=0.0, phase=0.0):
    """A played note: partials at the harmonic amplitudes, a vibrato of +-vibrato
    (fraction of the frequency), an exponential decay (per second)."""
    n = int(round(seconds * RATE))
    a0 = amplitude(level)
    out = [0.0] * n
    for h, amp in enumerate(harmonics, start=1):
        if not amp:
            continue
        w = 2 * math.pi * freq * h / RATE
        dev = vibrato * freq * h / rate_hz          # peak phase deviation (radians)
        wv = 2 * math.pi * rate_hz / RATE
        out = [v + a0 * amp * math.exp(-decay * i / RATE)
               * math.sin(w * i + dev * math.sin(wv * i) + phase * h)
               for i, v in enumerate(out)]
    return out


def rhythm(make, on, off, seconds):
    out = []
    i = 0
    while len(out) < seconds * RATE:
        out += make(on, i) + [0.0] * int(off * RATE)
        i += 1
    return out


CLARINET = (1.0, 0.0, 0.6, 0.0, 0.4, 0.0, 0.25)     # odd harmonics
STRINGS = (1.0, 0.5, 0.35, 0.25, 0.15)
FLUTE = (1.0, 0.2, 0.05)                            # nearly pure: its vibrato gives it away


def music() -> list[float]:
    """Held and rhythmic notes at the plans' frequencies, with harmonics and vibrato,
    and chords: what hold music and a caller's radio sound like."""
    parts = []
    for f in (425.0, 440.0, 400.0, 480.0):
        parts.append(note(f, 3.0, harmonics=STRINGS, vibrato=0.006))    # held, dial-like
        parts.append(note(f, 3.0, harmonics=CLARINET))                  # held, no vibrato
        parts.append(note(f, 3.0, harmonics=FLUTE, vibrato=0.008))      # flute with vibrato
        for on, off in ((0.5, 0.5), (0.25, 0.25), (0.48, 0.48), (1.0, 4.0)):
            parts.append(rhythm(lambda d, i, f=f: note(f, d, harmonics=STRINGS,
                                                       vibrato=0.005, phase=i), on, off, 3.5))
            parts.append(rhythm(lambda d, i, f=f: note(f, d, harmonics=CLARINET, decay=2.0,
                                                       phase=i), on, off, 3.5))
    # Chords on the dual-tone pairs and a triad on A.
    for chord in ((350.0, 440.0), (480.0, 620.0), (440.0, 480.0), (350.0, 450.0),
                  (440.0, 554.4, 659.3)):
        notes = [note(f, 3.0, level=-18.0, harmonics=STRINGS, vibrato=0.005, phase=j)
                 for j, f in enumerate(chord)]
        parts.append([sum(v) for v in zip(*notes, strict=True)])
        notes = [note(f, 0.5, level=-18.0, harmonics=FLUTE, vibrato=0.008, phase=j)
                 for j, f in enumerate(chord)]
        parts.append(rhythm(lambda d, i, notes=notes: [sum(v) for v in zip(*notes, strict=True)],
                            0.5, 0.5, 4.0))
    out = []
    for p in parts:
        out += p + [0.0] * 1200
    return out


def test_no_tone_in_synthetic_music_for_any_plan():
    pcm = to_pcm(music())
    heard = {plan: detect(plan, pcm) for plan in PLAN_NAMES}
    assert heard == {plan: [] for plan in PLAN_NAMES}


def test_music_notes_without_harmonics_or_vibrato_would_be_tones():
    # The control for the music test: the same rhythm on a pure, steady note is a busy
    # tone, so it is the harmonics and the vibrato that keep music from being one.
    pure = rhythm(lambda d, i: note(425.0, d, phase=i), 0.5, 0.5, 4.0)
    assert [e["tone"] for e in detect("eu", to_pcm(pure))] == ["busy"]


# -- plan tables ------------------------------------------------------------------------

def test_plan_tables_follow_the_national_specifications():
    us, uk, de = get_plan("us"), get_plan("uk"), get_plan("de")
    assert us.tones["busy"].freqs == (480.0, 620.0) and us.tones["busy"].cadence == (0.5, 0.5)
    assert us.tones["reorder"].cadence == (0.25, 0.25)
    assert us.tones["ringback"].freqs == (440.0, 480.0)
    assert us.sit.durations == (0.276, 0.380)
    assert uk.tones["dial"].freqs == (350.0, 450.0)
    assert uk.tones["reorder"].cadence == (0.4, 0.35, 0.225, 0.525)
    assert de.tones["busy"].cadence == (0.48, 0.48)
    assert de.tones["reorder"].cadence == (0.24, 0.24)
    assert get_plan("fr").tones["ringback"].cadence == (1.5, 3.5)
    assert get_plan("eu").tones["busy"].freqs == (425.0,)
