"""Voice-activity detection: real speech in noise, noise alone, tones, and the timing edges."""

import math
import operator
from array import array

import pytest

from linebox import FRAME, RATE
from linebox.dsp import gen
from linebox.dsp.levels import frame_energy
from linebox.dsp.vad import (
    ATTACK_FRAMES,
    HANGOVER_FRAMES,
    MIN_FRAMES,
    VoiceActivityDetector,
)
from linebox.wavfile import read_wav

_mul = operator.mul
CHUNK_S = 8.0        # speech taken from each speaker
GAP_S = 4.0          # noise only, before, between and after


def frames_of(samples) -> list[array]:
    return [samples[i:i + FRAME] for i in range(0, len(samples) - FRAME + 1, FRAME)]


def energy(frame) -> int:
    return sum(map(_mul, frame, frame))


def run(samples, vad=None) -> tuple[list[dict], VoiceActivityDetector, list[bool]]:
    """Feed the whole signal as the listener does; (events, detector, active after each frame)."""
    vad = vad or VoiceActivityDetector()
    events, active = [], []
    for f in frames_of(samples):
        events += vad.feed(f, energy(f))
        active.append(vad.active)
    return events + vad.flush(), vad, active


def covered(events, n_frames) -> list[bool]:
    cov = [False] * n_frames
    for e in events:
        a = round(e["t"] * RATE / FRAME)
        b = round((e["t"] + e["dur"]) * RATE / FRAME)
        cov[a:b] = [True] * (b - a)
    return cov[:n_frames]


def silence(seconds) -> array:
    return gen.silence(seconds)


@pytest.fixture(scope="module")
def speech_track(speech_files):
    """Eight seconds of each speaker, with noise-only gaps: (samples, gap flag per frame)."""
    track, gap = array("h"), []
    for path in speech_files:
        track += silence(GAP_S)
        gap += [True] * int(GAP_S * 50)
        track += read_wav(path)[30 * RATE:int((30 + CHUNK_S) * RATE)]
        gap += [False] * int(CHUNK_S * 50)
    track += silence(GAP_S)
    gap += [True] * int(GAP_S * 50)
    return track, gap


@pytest.fixture(scope="module")
def noise_40(speech_track):
    return gen.white_noise(len(speech_track[0]) / RATE, -40.0, seed=11)


def check_speech_in(track, gap, noisy):
    events, _, _ = run(noisy)
    n = len(gap)
    cov = covered(events, n)
    loud = [energy(f) > frame_energy(-35.0) for f in frames_of(track)]
    voiced_hit = sum(1 for i in range(n) if loud[i] and cov[i]) / sum(loud)
    noise_hit = sum(1 for i in range(n) if gap[i] and cov[i]) / sum(gap)
    return voiced_hit, noise_hit


# ------------------------------------------------------------ real speech

@pytest.mark.parametrize("noise_dbm0", [-60.0, -50.0, -40.0])
def test_speech_in_white_noise_is_found_and_the_noise_is_not(speech_track, noise_40, noise_dbm0):
    track, gap = speech_track
    noise = noise_40 if noise_dbm0 == -40.0 else gen.scale(noise_40, noise_dbm0 + 40.0)
    voiced_hit, noise_hit = check_speech_in(track, gap, gen.mix(track, noise))
    assert voiced_hit >= 0.95
    assert noise_hit < 0.02


def test_speech_over_mains_hum_is_found_and_the_hum_is_not(speech_track):
    track, gap = speech_track
    seconds = len(track) / RATE
    hum = gen.mix(gen.tone((60.0, 180.0), seconds, (-40.0, -50.0)), gen.white_noise(seconds, -60.0))
    voiced_hit, noise_hit = check_speech_in(track, gap, gen.mix(track, hum))
    assert voiced_hit >= 0.95
    assert noise_hit < 0.02


def test_last_voice_end_is_where_the_speech_stopped(speech_files):
    for k, path in enumerate(speech_files):
        clip = read_wav(path)[(10 + 20 * k) * RATE:(13 + 20 * k) * RATE]
        while energy(clip[-FRAME:]) < frame_energy(-45.0):     # trim the quiet tail
            del clip[-FRAME:]
        lead = silence(1.0) + silence(0.005 * k)                # end off the frame grid
        signal = lead + clip + silence(2.0)
        events, vad, _ = run(gen.mix(signal, gen.white_noise(len(signal) / RATE, -60.0, seed=k)))
        ended = (len(lead) + len(clip)) / RATE
        assert abs(vad.last_voice_end - ended) <= 0.06, path.name
        assert not vad.active
        last = events[-1]
        assert round(last["t"] + last["dur"], 4) == vad.last_voice_end


# ------------------------------------------------------------ noise alone, and the floor

@pytest.mark.parametrize("noise_dbm0", [-70.0, -55.0, -40.0, -36.0])
def test_steady_noise_is_never_speech(noise_dbm0):
    events, vad, active = run(gen.white_noise(60.0, noise_dbm0, seed=5))
    assert events == []
    assert not any(active)
    assert noise_dbm0 - 2.0 <= vad.noise_floor_dbm0 <= noise_dbm0


def test_noise_louder_than_the_floor_ceiling_is_activity():
    # The floor stops at -35 dBm0: steady sound 10 dB above that is always activity.
    events, vad, _ = run(gen.white_noise(5.0, -25.0, seed=5))
    assert events == [{"type": "speech", "t": 0.0, "dur": 5.0}]
    assert vad.noise_floor_dbm0 == -35.0


def test_digital_silence_puts_the_floor_at_its_lowest():
    events, vad, _ = run(silence(3.0))
    assert events == [] and vad.noise_floor_dbm0 == -70.0
    assert vad.last_voice_end is None and vad.voiced_seconds == 0.0


def test_a_noise_step_up_stops_being_speech_within_3_seconds():
    signal = gen.white_noise(10.0, -60.0, seed=1) + gen.white_noise(20.0, -40.0, seed=2)
    events, vad, active = run(signal)
    assert len(events) == 1
    assert events[0]["t"] == 10.0
    assert events[0]["t"] + events[0]["dur"] <= 13.0
    assert not any(active[13 * 50:])
    assert -42.0 <= vad.noise_floor_dbm0 <= -40.0


def test_a_noise_step_down_is_followed_at_once():
    signal = gen.white_noise(5.0, -40.0, seed=1) + gen.white_noise(1.0, -60.0, seed=2)
    events, vad, _ = run(signal)
    assert events == []
    assert -62.0 <= vad.noise_floor_dbm0 <= -60.0


# ------------------------------------------------------------ tones

def test_a_steady_tone_is_activity_for_as_long_as_it_lasts():
    # Hang-up tones are the tone detector's business; to the VAD a loud tone is sound.
    signal = silence(1.0) + gen.tone(1000.0, 10.0, -13.0) + silence(1.0)
    events, _, _ = run(signal)
    assert events == [{"type": "speech", "t": 1.0, "dur": 10.0}]


def test_a_quiet_steady_tone_becomes_floor_like_hum():
    noise = gen.white_noise(8.0, -60.0, seed=4)
    events, _, active = run(gen.mix(noise, silence(1.0) + gen.tone(1000.0, 7.0, -45.0)))
    assert len(events) == 1 and events[0]["t"] == 1.0
    assert events[0]["dur"] <= 2.0
    assert not any(active[4 * 50:])


# ------------------------------------------------------------ timing edges

def burst_signal(*parts) -> array:
    """Alternating silence and -20 dBm0 tone, in frames: (quiet, loud, quiet, loud, ...)."""
    out = array("h")
    for i, n in enumerate(parts):
        out += gen.tone(700.0, n * FRAME / RATE, -20.0) if i % 2 else silence(n * FRAME / RATE)
    return out


@pytest.mark.parametrize("loud_frames, reported, was_active", [
    (ATTACK_FRAMES - 1, False, False),      # 40 ms: a click
    (ATTACK_FRAMES, False, True),           # 60 ms: voice, but too short to report
    (MIN_FRAMES - 1, False, True),
    (MIN_FRAMES, True, True),               # 120 ms: reported
])
def test_attack_and_minimum_length(loud_frames, reported, was_active):
    events, vad, active = run(burst_signal(50, loud_frames, 50))
    want = [{"type": "speech", "t": 1.0, "dur": round(loud_frames * 0.02, 4)}] if reported else []
    assert events == want
    assert any(active) == was_active
    if was_active:                          # active from the frame that confirms it
        assert active.index(True) == 50 + ATTACK_FRAMES - 1


@pytest.mark.parametrize("gap_frames, n_events", [(HANGOVER_FRAMES - 1, 1), (HANGOVER_FRAMES, 2)])
def test_hangover_joins_pauses_shorter_than_it(gap_frames, n_events):
    events, _, _ = run(burst_signal(50, 20, gap_frames, 20, 50))
    assert len(events) == n_events
    assert events[0]["t"] == 1.0
    end = round(events[-1]["t"] + events[-1]["dur"], 4)
    assert end == round((50 + 40 + gap_frames) * 0.02, 4)


def test_stretch_is_reported_when_the_hangover_runs_out():
    vad = VoiceActivityDetector()
    reports = []
    for i, f in enumerate(frames_of(burst_signal(50, 25, 100))):
        if vad.feed(f, energy(f)):
            reports.append(i)
    assert reports == [50 + 25 - 1 + HANGOVER_FRAMES]


def test_flush_reports_the_open_stretch_once():
    vad = VoiceActivityDetector()
    for f in frames_of(burst_signal(10, 30)):
        assert vad.feed(f, energy(f)) == []
    assert vad.active
    assert vad.flush() == [{"type": "speech", "t": 0.2, "dur": 0.6}]
    assert vad.flush() == []


def test_feed_returns_a_fresh_empty_list():
    vad = VoiceActivityDetector()
    f = silence(0.02)
    first = vad.feed(f, 0)
    first.append("x")
    assert vad.feed(f, 0) == []


# ------------------------------------------------------------ what the call flows read

def test_voiced_seconds_counts_from_the_reset_and_includes_the_open_stretch():
    vad = VoiceActivityDetector()
    frames = frames_of(burst_signal(50, 25, 50, 40, 50, 30))
    for f in frames[:125]:                      # first stretch reported
        vad.feed(f, energy(f))
    assert vad.voiced_seconds == 0.5
    vad.reset_counters()
    assert vad.voiced_seconds == 0.0
    for f in frames[125:215]:                   # second stretch reported, third not started
        vad.feed(f, energy(f))
    assert vad.voiced_seconds == 0.8
    for f in frames[215:235]:                   # third open: 20 frames so far
        vad.feed(f, energy(f))
    assert vad.active and vad.voiced_seconds == 1.2
    assert vad.last_voice_end == 4.7


def test_reset_in_the_middle_of_a_stretch_counts_only_what_follows():
    vad = VoiceActivityDetector()
    frames = frames_of(burst_signal(10, 50, 50))
    for f in frames[:30]:
        vad.feed(f, energy(f))
    vad.reset_counters()
    for f in frames[30:]:
        vad.feed(f, energy(f))
    assert vad.voiced_seconds == 0.6
    assert math.isclose(vad.last_voice_end, 1.2)
