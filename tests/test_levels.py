"""Frame energies and autocorrelations (dsp/levels.py) and the packed correlations built
on them stay exact: the listener's speed-ups must not change a single decision."""

import math
import operator
import random
import struct
from array import array

import pytest

from linebox.dsp import fsk, levels
from linebox.dsp.fsk import STANDARDS
from linebox.dsp.progress import ProgressDetector

_mul = operator.mul


def _frames(seed=4, n=160):
    r = random.Random(seed)
    yield [-32768] * n
    yield [32767] * n
    yield [(-32768, 32767)[i % 2] for i in range(n)]
    yield [0] * n
    for k in range(400):
        kind = k % 4
        if kind == 0:
            yield [r.randint(-32768, 32767) for _ in range(n)]
        elif kind == 1:
            yield [r.choice((-32768, 32767, -1, 0, 1)) for _ in range(n)]
        elif kind == 2:
            yield [r.randint(-3, 3) for _ in range(n)]
        else:
            f = r.uniform(50, 3950)
            yield [int(32767 * math.sin(2 * math.pi * f * i / 8000 + k)) for i in range(n)]


@pytest.mark.parametrize("n", [160, 80, 40, 20, 3, 1, 4096, 5000])
def test_energy_and_lags_are_the_exact_integer_sums(n):
    for frame in _frames(n=n):
        e = sum(x * x for x in frame)
        got = levels.energy(frame)
        assert type(got) is int and got == e
        assert levels.energy(array("h", frame)) == e
        assert levels.lag1(frame, e) == sum(map(_mul, frame, frame[1:]))
        assert levels.lag2(frame, e) == sum(map(_mul, frame, frame[2:]))
        if n >= 4096:
            break


def _reference_ratio(mark, space, frame, energy):
    """The band check as first written: 160 table entries, each with all 48 lanes."""
    bits, q = 32, 2048
    freqs = (mark, (mark + space) / 2, space)
    table = []
    for i in range(160):
        j, lane, packed = i % 20, 6 * (i // 20), 0
        for f in freqs:
            w = 2 * math.pi * f * j / 8000
            packed += int(round(math.cos(w) * q)) << (bits * lane)
            packed += int(round(math.sin(w) * q)) << (bits * (lane + 1))
            lane += 2
        table.append(packed)
    bias = sum(1 << (bits * k + bits - 1) for k in range(48))
    total = sum(map(_mul, frame, table)) + bias
    v = [u - 0x80000000 for u in struct.unpack("<48I", total.to_bytes(192, "little"))]
    return sum(map(_mul, v, v)) / (q * q * 20 / 2.0 * energy)


@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_band_check_by_slices_gives_the_ratio_of_the_full_table(standard):
    std = STANDARDS[standard]
    band = fsk.BandCheck(std.mark, std.space)
    for frame in _frames(seed=7):
        e = sum(x * x for x in frame)
        if e:
            want = _reference_ratio(std.mark, std.space, frame, e)
            assert band.ratio(frame, e) == want
            assert band.ratio(array("h", frame), e) == want


@pytest.mark.parametrize("plan", ["us", "de", "uk"])
def test_tone_first_look_gate_agrees_with_exact_integers(plan):
    corr = ProgressDetector(plan)._corr
    nb = corr.nb
    decided = 0
    for frame in _frames(seed=11):
        e = sum(x * x for x in frame)
        even = corr.first_look(frame)
        acc = (even[0] + (even[1] << corr._shift) + corr._bias) ^ corr._bias
        lanes = corr._unpack(acc.to_bytes(corr._nbytes, "little"))
        best = max(sum(lanes[k] ** 2 for k in (2 * i, 2 * i + 1, 2 * nb + 2 * i, 2 * nb + 2 * i + 1))
                   for i in range(nb))
        gate = corr._gate_even * e
        if abs(best - gate) <= 1e-12 * gate:
            continue           # within rounding of the gate: classify() decides those
        decided += 1
        assert corr.first_look_quiet(even, e) == (best < gate)
    assert decided > 300


def test_the_first_look_gate_hands_on_the_correlations_decode_gives():
    # progress.py takes the first look's correlations from the gate's own unpacked lanes:
    # they must be exactly decode()'s, and None exactly where the gate says quiet.
    from linebox.dsp.cadence import plan_tones
    from linebox.dsp.plans import get_plan
    from linebox.dsp.tonecorr import ToneCorrelator

    for plan in ("us", "uk", "de"):
        corr = ToneCorrelator(plan_tones(get_plan(plan))[0])
        passed = 0
        for frame in _frames(seed=12):
            e = sum(x * x for x in frame)
            even = corr.first_look(frame)
            got = corr.first_look_vals(even, e)
            if corr.first_look_quiet(even, e):
                assert got is None
            else:
                passed += 1
                assert got == corr.decode(*even)
        assert passed > 20, plan
