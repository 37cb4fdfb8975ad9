"""DTMF detector against the ITU-T Q.24 (AT&T) accept and reject figures.

Every signal is built from the standard's own description (two sines, levels in dBm0,
frequency offsets, twist, durations) and fed frame by frame, as the listener does.
"""

import math
import operator
from array import array

import pytest

from conftest import run_detector
from linebox import FRAME, RATE
from linebox.dsp import g711, gen
from linebox.dsp.dtmf import DtmfDetector
from linebox.dsp.levels import mean_square

ALL_KEYS = "0123456789*#ABCD"


def detect(signal, detector=None) -> list[dict]:
    """All events of a DTMF detector over ``signal``."""
    return run_detector(detector or DtmfDetector(), signal)


def digits(events) -> str:
    return "".join(e["digit"] for e in events)


def key(digit, on, lo_db=-7.0, hi_db=-5.0, lo_err=0.0, hi_err=0.0):
    """``on`` seconds of one key, each tone at its own level and frequency error."""
    lo, hi = gen.dtmf_freqs(digit)
    return gen.tone((lo * (1 + lo_err), hi * (1 + hi_err)), on, (lo_db, hi_db))


def keys(seq, on=0.05, off=0.05, lead=0, **kw):
    """``lead`` samples of silence, then every key of ``seq`` as on/off bursts."""
    out = array("h", bytes(2 * lead))
    for d in seq:
        out += key(d, on, **kw) + gen.silence(off)
    return out


def noise_for(lo_db, hi_db, snr_db, seconds, seed):
    """White noise ``snr_db`` below the total power of two tones at these levels."""
    total = mean_square(lo_db) + mean_square(hi_db)
    level = 10.0 * math.log10(total / mean_square(0.0)) - snr_db
    return gen.white_noise(seconds, level, seed=seed)


# --- accept ----------------------------------------------------------------------------


@pytest.mark.parametrize("level", [-4.0, -10.0, -16.0, -22.0, -28.0])
@pytest.mark.parametrize("err", [-0.015, 0.0, 0.015])
def test_every_key_detected_from_minus_4_to_minus_28_dbm0_within_1_5_percent(level, err):
    sig = keys(ALL_KEYS, lead=53, lo_db=level, hi_db=level, lo_err=err, hi_err=err)
    assert digits(detect(sig)) == ALL_KEYS


@pytest.mark.parametrize("twist_db", [8.0, 0.0, -4.0], ids=["reverse8", "flat", "standard4"])
@pytest.mark.parametrize("weaker_db", [-28.0, -16.0])
@pytest.mark.parametrize("lo_err,hi_err", [(0.0, 0.0), (-0.015, -0.015), (-0.015, 0.015),
                                           (0.015, -0.015), (0.015, 0.015)])
def test_twist_edges_with_frequency_offsets_detect_every_key(twist_db, weaker_db, lo_err, hi_err):
    # twist_db > 0: low group louder (reverse twist); < 0: high group louder (standard).
    lo_db = weaker_db + max(twist_db, 0.0)
    hi_db = weaker_db + max(-twist_db, 0.0)
    sig = keys(ALL_KEYS, lead=101, lo_db=lo_db, hi_db=hi_db, lo_err=lo_err, hi_err=hi_err)
    assert digits(detect(sig)) == ALL_KEYS


# (low dBm0, high dBm0, frequency error of both tones): the corners of the accept region.
CORNERS = [(-4.0, -4.0, 0.0), (-28.0, -28.0, 0.0), (-20.0, -28.0, 0.015),
           (-28.0, -24.0, -0.015), (-4.0, -12.0, -0.015), (-8.0, -4.0, 0.015)]


@pytest.mark.parametrize("lead", [0, 19, 40, 80, 117, 159])
@pytest.mark.parametrize("lo_db,hi_db,err", CORNERS)
def test_40ms_on_40ms_off_every_key_once_in_order(lead, lo_db, hi_db, err):
    sig = keys(ALL_KEYS * 2, on=0.04, off=0.04, lead=lead, lo_db=lo_db, hi_db=hi_db,
               lo_err=err, hi_err=err)
    assert digits(detect(sig)) == ALL_KEYS * 2


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("lo_db,hi_db", [(-10.0, -8.0), (-28.0, -28.0), (-20.0, -28.0),
                                         (-28.0, -24.0)])
def test_keys_detected_in_white_noise_at_15_db_snr(seed, lo_db, hi_db):
    sig = keys(ALL_KEYS, on=0.05, off=0.05, lead=33, lo_db=lo_db, hi_db=hi_db)
    noisy = gen.mix(sig, noise_for(lo_db, hi_db, 15.0, len(sig) / RATE, seed))
    assert digits(detect(noisy)) == ALL_KEYS


@pytest.mark.parametrize("level", [-4.0, -16.0, -28.0])
@pytest.mark.parametrize("err", [-0.015, 0.015])
def test_keys_detected_after_mulaw_round_trip(level, err):
    sig = keys(ALL_KEYS, on=0.04, off=0.04, lead=77, lo_db=level, hi_db=level,
               lo_err=err, hi_err=err)
    assert digits(detect(g711.ulaw_roundtrip(sig))) == ALL_KEYS


# --- reject ----------------------------------------------------------------------------


@pytest.mark.parametrize("err", [-0.05, -0.04, -0.035, 0.035, 0.04, 0.05])
@pytest.mark.parametrize("which", ["low", "high", "both"])
@pytest.mark.parametrize("level,twist", [(-10.0, 0.0), (-20.0, 8.0), (-20.0, -4.0)])
def test_tones_3_5_percent_or_more_off_nominal_are_rejected(err, which, level, twist):
    lo_err = err if which in ("low", "both") else 0.0
    hi_err = err if which in ("high", "both") else 0.0
    sig = keys(ALL_KEYS, on=0.1, off=0.05, lead=29, lo_db=level + max(twist, 0.0),
               hi_db=level + max(-twist, 0.0), lo_err=lo_err, hi_err=hi_err)
    assert detect(sig) == []


@pytest.mark.parametrize("on_ms", [10, 15, 20, 22])
@pytest.mark.parametrize("lead", [0, 8, 25, 40, 56, 79, 100, 150])
def test_keys_shorter_than_23_ms_are_rejected(on_ms, lead):
    sig = keys("159#D", on=on_ms / 1000, off=0.06, lead=lead, lo_db=-4.0, hi_db=-4.0)
    assert detect(sig) == []


@pytest.mark.parametrize("level", [-4.0, -28.0])
@pytest.mark.parametrize("freq", gen.DTMF_LOW + gen.DTMF_HIGH)
def test_a_single_tone_is_not_a_key(level, freq):
    assert detect(gen.tone(freq, 0.3, level)) == []


@pytest.mark.parametrize("group", [gen.DTMF_LOW, gen.DTMF_HIGH], ids=["low", "high"])
def test_two_tones_of_one_group_are_not_a_key(group):
    pairs = [(a, b) for i, a in enumerate(group) for b in group[i + 1:]]
    for level in (-4.0, -20.0):
        sig = array("h")
        for a, b in pairs:
            sig += gen.tone((a, b), 0.1, level) + gen.silence(0.05)
        assert detect(sig) == [], (group, level)


@pytest.mark.parametrize("lo_db,hi_db", [(-46.0, -46.0), (-50.0, -50.0), (-45.5, -41.0),
                                         (-41.0, -45.5), (-60.0, -60.0)])
def test_keys_below_minus_45_dbm0_are_rejected(lo_db, hi_db):
    sig = keys(ALL_KEYS, on=0.1, off=0.05, lo_db=lo_db, hi_db=hi_db)
    assert detect(sig) == []


def test_silence_and_quiet_noise_give_nothing():
    assert detect(gen.silence(1.0)) == []
    assert detect(gen.white_noise(1.0, -30.0, seed=5)) == []


# --- timing ----------------------------------------------------------------------------


@pytest.mark.parametrize("gap_at", [0.030, 0.0437, 0.0501, 0.0666])
@pytest.mark.parametrize("lead", [0, 45, 120])
@pytest.mark.parametrize("lo_db,hi_db,err", CORNERS[:4])
def test_a_10_ms_dropout_does_not_split_a_key(gap_at, lead, lo_db, hi_db, err):
    # The tone resumes with a fresh phase, as a keypad's oscillator restarting would.
    kw = {"lo_db": lo_db, "hi_db": hi_db, "lo_err": err, "hi_err": err}
    sig = (gen.silence(lead / RATE) + key("7", gap_at, **kw) + gen.silence(0.010)
           + key("7", 0.12 - gap_at, **kw) + gen.silence(0.1))
    events = detect(sig)
    assert digits(events) == "7"
    assert events[0]["dur"] == pytest.approx(0.13, abs=0.02)


@pytest.mark.parametrize("lead", [0, 33, 80, 150])
@pytest.mark.parametrize("lo_db,hi_db,err", CORNERS[:4])
def test_40_ms_pause_between_two_presses_of_one_key_gives_two(lead, lo_db, hi_db, err):
    sig = gen.silence(lead / RATE) + keys("88", on=0.05, off=0.04, lo_db=lo_db, hi_db=hi_db,
                                          lo_err=err, hi_err=err)
    assert digits(detect(sig)) == "88"


@pytest.mark.parametrize("on", [0.04, 0.065, 0.1, 0.25])
@pytest.mark.parametrize("lead", [0, 13, 40, 66, 80, 99, 140, 159])
@pytest.mark.parametrize("lo_db,hi_db,err", [(-12.0, -10.0, 0.0), (-20.0, -28.0, 0.015),
                                             (-28.0, -24.0, -0.015)])
def test_onset_within_10_ms_and_duration_within_20_ms(on, lead, lo_db, hi_db, err):
    sig = gen.silence(0.1) + keys("3", on=on, off=0.1, lead=lead, lo_db=lo_db, hi_db=hi_db,
                                  lo_err=err, hi_err=err)
    events = detect(sig)
    assert digits(events) == "3"
    true_t = 0.1 + lead / RATE
    assert abs(events[0]["t"] - true_t) <= 0.010
    assert abs(events[0]["dur"] - on) <= 0.020


def test_event_has_exactly_the_contract_fields_rounded_to_4_decimals():
    (ev,) = detect(gen.silence(0.01234) + key("#", 0.08) + gen.silence(0.1))
    assert set(ev) == {"type", "t", "digit", "dur"}
    assert ev["type"] == "dtmf" and ev["digit"] == "#"
    assert isinstance(ev["t"], float) and isinstance(ev["dur"], float)
    assert ev["t"] == round(ev["t"], 4) and ev["dur"] == round(ev["dur"], 4)


def test_times_count_from_the_start_of_the_stream_across_many_frames():
    sig = gen.silence(3.0) + keys("42", on=0.06, off=0.06)
    events = detect(sig)
    assert digits(events) == "42"
    assert abs(events[0]["t"] - 3.0) <= 0.010
    assert abs(events[1]["t"] - 3.12) <= 0.010


# --- protocol --------------------------------------------------------------------------


def frames_of(signal):
    sig = array("h", signal)
    sig.extend(bytes(2 * (-len(sig) % FRAME)))
    for i in range(0, len(sig), FRAME):
        f = sig[i:i + FRAME]
        yield f, sum(map(operator.mul, f, f))


def test_pressed_goes_down_during_the_key_and_event_comes_at_release():
    det = DtmfDetector()
    seen = []
    for frame, energy in frames_of(gen.silence(0.1) + key("9", 0.2) + gen.silence(0.2)):
        events = det.feed(frame, energy)
        seen.append((det.pressed, events))
    pressed = [p for p, _ in seen]
    first_down = pressed.index("9")
    # Down no later than 40 ms (two frames) after the key began at frame 5.
    assert 5 <= first_down <= 7
    released = [i for i, (_, ev) in enumerate(seen) if ev]
    assert len(released) == 1 and digits(seen[released[0]][1]) == "9"
    assert set(pressed[first_down:released[0]]) == {"9"}
    assert set(pressed[released[0]:]) == {None}
    assert det.flush() == []


def test_pressed_stays_none_for_a_too_short_tone():
    det = DtmfDetector()
    for frame, energy in frames_of(gen.silence(0.05) + key("1", 0.02) + gen.silence(0.1)):
        assert det.feed(frame, energy) == []
        assert det.pressed is None


def test_flush_reports_a_key_still_held_at_the_end():
    det = DtmfDetector()
    for frame, energy in frames_of(gen.silence(0.02) + key("A", 0.3)):
        assert det.feed(frame, energy) == []
    assert det.pressed == "A"
    (ev,) = det.flush()
    assert ev["digit"] == "A" and abs(ev["t"] - 0.02) <= 0.010 and abs(ev["dur"] - 0.3) <= 0.02
    assert det.pressed is None
    assert det.flush() == []


def test_feed_returns_a_fresh_list_every_time():
    det = DtmfDetector()
    quiet = array("h", bytes(2 * FRAME))
    a = det.feed(quiet, 0)
    b = det.feed(quiet, 0)
    assert a == [] and b == [] and a is not b
    a.append("junk")
    assert det.feed(quiet, 0) == []


def test_the_detector_keeps_the_lag2_it_screened_a_frame_with():
    # The listener hands it on to caller ID's lag-2 screen: it must be the exact sum for
    # the frame just fed, and None where the lag-1 screen (or the gate) stopped first.
    det = DtmfDetector()
    key = gen.dtmf("5", 0.02, 0.0)[:FRAME]
    hum = gen.tone((200.0,), 0.02, -10.0)
    for frame, has in ((key, True), (hum, False), (gen.silence(0.02), False), (key, True)):
        assert len(frame) == FRAME
        e = sum(map(operator.mul, frame, frame))
        det.feed(frame, e)
        if has:
            assert det.lag2 == sum(map(operator.mul, frame, frame[2:]))
        else:
            assert det.lag2 is None
