import math
from array import array

from linebox.dsp import g711
from linebox.dsp.levels import DBM0_MEAN_SQUARE


def test_ulaw_expand_matches_g191_segment_ends():
    # Codes 0x80 and 0x00 are the largest magnitudes, 0xFF / 0x7F are +/- zero.
    assert g711.ulaw_expand(0x80) == 32124
    assert g711.ulaw_expand(0x00) == -32124
    assert g711.ulaw_expand(0xFF) == 0
    assert g711.ulaw_expand(0x7F) == 0


def test_every_ulaw_code_survives_a_round_trip_except_negative_zero():
    bad = [c for c in range(256) if g711.ulaw_compress(g711.ulaw_expand(c)) != c]
    assert bad == [0x7F]  # -0 encodes as +0, as in the reference


def test_every_alaw_code_survives_a_round_trip():
    assert all(g711.alaw_compress(g711.alaw_expand(c)) == c for c in range(256))


def test_alaw_extremes_match_g191():
    assert g711.alaw_expand(0xAA) == 32256
    assert g711.alaw_expand(0x2A) == -32256
    assert g711.alaw_expand(0xD5) == 8
    assert g711.alaw_expand(0x55) == -8


def test_encoder_is_monotonic_and_agrees_with_the_reference_on_every_sample():
    samples = array("h", range(-32768, 32768))
    ulaw = g711.ulaw_encode(samples)
    alaw = g711.alaw_encode(samples)
    for i in range(0, 65536, 7):
        x = samples[i]
        assert ulaw[i] == g711.ulaw_compress(x)
        assert alaw[i] == g711.alaw_compress(x)
    dec = g711.ulaw_decode(ulaw)
    assert all(a <= b for a, b in zip(dec, dec[1:], strict=False))


def _power_dbm0(samples) -> float:
    ms = sum(v * v for v in samples) / len(samples)
    return 10 * math.log10(ms / DBM0_MEAN_SQUARE)


def test_digital_milliwatt_decodes_to_zero_dbm0():
    assert abs(_power_dbm0(g711.ulaw_decode(g711.ULAW_MILLIWATT * 100))) < 0.1
    assert abs(_power_dbm0(g711.alaw_decode(g711.ALAW_MILLIWATT * 100))) < 0.1


def test_milliwatt_round_trips_bit_exact():
    assert g711.ulaw_encode(g711.ulaw_decode(g711.ULAW_MILLIWATT)) == g711.ULAW_MILLIWATT
    assert g711.alaw_encode(g711.alaw_decode(g711.ALAW_MILLIWATT)) == g711.ALAW_MILLIWATT


def test_transcoding_tables_follow_the_linear_value():
    codes = bytes(range(256))
    a = g711.ulaw_to_alaw(codes)
    assert a == bytes(g711.alaw_compress(g711.ulaw_expand(c)) for c in codes)
    u = g711.alaw_to_ulaw(codes)
    assert u == bytes(g711.ulaw_compress(g711.alaw_expand(c)) for c in codes)
