"""Caller ID: FSK bursts from minimodem (a modulator nobody here wrote) and from our own
modulator, decoded by the listener's detector; SDMF/MDMF parsing; DTMF caller ID."""

import functools
import math
import operator
import shutil
import subprocess
import tempfile
import wave
from array import array
from pathlib import Path

import pytest

from conftest import run_detector
from linebox import FRAME
from linebox.dsp import fsk, fskmod, g711, gen
from linebox.dsp.alert import FREQS as ALERT_FREQS
from linebox.dsp.alert import AlertToneDetector
from linebox.dsp.callerid import CallerIdDetector, DtmfCallerIdParser, parse_message
from linebox.dsp.fsk import STANDARDS
from linebox.dsp.levels import mean_square
from linebox.dsp.listener import Listener

pytestmark = pytest.mark.skipif(shutil.which("minimodem") is None or shutil.which("sox") is None,
                                reason="minimodem and sox are needed (Debian packages)")

SLICE_S = 20 / 8000     # the detector locates a burst's start to one 2.5 ms slice


# --- signal helpers -------------------------------------------------------------------

def bits_8n1(message: bytes, seizure: int, marks: int, stop_bits=1) -> str:
    """Seizure (0101...), marks, each byte framed 8N1 LSB first; ``stop_bits`` may be a
    function of the byte's position (mark between bytes). Built here, not by fskmod."""
    out = "01" * (seizure // 2) + "0" * (seizure % 2) + "1" * marks
    for i, b in enumerate(message):
        stop = stop_bits(i) if callable(stop_bits) else stop_bits
        out += "0" + format(b, "08b")[::-1] + "1" * stop
    return out + "1111"


# minimodem makes every bit a whole number of samples: at 8 kHz, 7 samples (1142.9 baud,
# 4.8 % slow, outside the +-1 % that Bell 202 and V.23 allow). At 40 samples a bit it is
# exact (measured below, test_minimodem_reference_runs_at_the_bit_rate_asked), so it
# modulates at 40 x the bit rate (48 kHz for 1200 baud) and sox resamples to 8 kHz.
SAMPLES_PER_BIT = 40


@functools.cache
def minimodem_tx(bits: str, mark: int, space: int, baud: float = 1200.0) -> array:
    """minimodem's FSK of raw ``bits`` at ``baud``, as 8 kHz samples."""
    return resample_8k(minimodem_wav(bits, mark, space, baud))


def minimodem_wav(bits: str, mark: int, space: int, baud: float = 1200.0) -> bytes:
    """minimodem's own WAV file of ``bits``, at SAMPLES_PER_BIT samples a bit."""
    with tempfile.TemporaryDirectory() as d:
        hi = Path(d) / "hi.wav"
        subprocess.run(["minimodem", "--tx", f"{baud:g}", "-M", str(mark), "-S", str(space),
                        "-R", f"{SAMPLES_PER_BIT * baud:g}", "-v", "0.5", "--binary-raw", "1",
                        "-f", str(hi)], input=bits.encode(), check=True, capture_output=True)
        return hi.read_bytes()


def resample_8k(wav: bytes) -> array:
    with tempfile.TemporaryDirectory() as d:
        hi, lo = Path(d) / "hi.wav", Path(d) / "8k.wav"
        hi.write_bytes(wav)
        subprocess.run(["sox", "-D", str(hi), "-r", "8000", str(lo)], check=True,
                       capture_output=True)
        return read_wav(lo)


def read_wav(path) -> array:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        return array("h", w.readframes(w.getnframes()))


def at_level(sig: array, dbm0: float) -> array:
    ms = sum(map(operator.mul, sig, sig)) / len(sig)
    return gen.scale(sig, 10 * math.log10(mean_square(dbm0) / ms))


def minimodem_burst(standard: str, message: bytes, seizure=300, marks=180, freq_error=0.0,
                    level=-13.0, stop_bits=1, baud_error=0.0) -> array:
    std = STANDARDS[standard]
    k = 1.0 + freq_error
    bits = bits_8n1(message, seizure, marks, stop_bits)
    sig = minimodem_tx(bits, round(std.mark * k), round(std.space * k),
                       round(1200.0 * (1.0 + baud_error), 3))
    return at_level(sig, level)


def on_line(*parts, lead: float = 0.3) -> tuple[array, list[float]]:
    """Bursts separated by silence, starting ``lead`` s in (floats in ``parts`` are
    silences); returns the stream and each burst's start time."""
    out, starts = gen.silence(lead), []
    for p in parts:
        if isinstance(p, (int, float)):
            out += gen.silence(p)
        else:
            starts.append(len(out) / 8000)
            out += p
    out += gen.silence(0.4)
    return out, starts


def detect(standard: str, samples: array) -> list[dict]:
    return run_detector(CallerIdDetector(standard), samples)


def expected(standard, format, datetime=None, number=None, name=None, number_absent=None,
             name_absent=None) -> dict:
    return {"type": "callerid", "standard": standard, "format": format, "datetime": datetime,
            "number": number, "name": name, "number_absent": number_absent,
            "name_absent": name_absent}


def assert_one(events, want: dict, start: float):
    assert len(events) == 1, events
    ev = dict(events[0])
    t = ev.pop("t")
    assert ev == want
    assert start - SLICE_S <= t <= start + SLICE_S
    assert t == round(t, 4)


# Messages built by hand from the standard's layout (not by fskmod), with their fields.
def _msg(mtype: int, body: bytes) -> bytes:
    head = bytes((mtype, len(body))) + body
    return head + bytes((-sum(head) & 0xFF,))


def _param(ptype: int, value: bytes) -> bytes:
    return bytes((ptype, len(value))) + value


SDMF_MSG = _msg(0x04, b"03142359" + b"2125551234")
SDMF_FIELDS = {"format": "sdmf", "datetime": "03142359", "number": "2125551234"}
MDMF_MSG = _msg(0x80, _param(0x01, b"12312359") + _param(0x02, b"01632960123")
                + _param(0x07, b"O'BRIEN, MARY-KATE"))
MDMF_FIELDS = {"format": "mdmf", "datetime": "12312359", "number": "01632960123",
               "name": "O'BRIEN, MARY-KATE"}
MESSAGES = {"sdmf": (SDMF_MSG, SDMF_FIELDS), "mdmf": (MDMF_MSG, MDMF_FIELDS)}


# --- FSK bursts from minimodem ---------------------------------------------------------

@pytest.mark.parametrize("level", [-8.0, -32.0])
@pytest.mark.parametrize("freq_error", [-0.01, 0.0, 0.01])
@pytest.mark.parametrize("seizure,marks", [(96, 80), (96, 180), (300, 80), (300, 180)])
@pytest.mark.parametrize("fmt", ["sdmf", "mdmf"])
@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_minimodem_burst_decodes_exactly(standard, fmt, seizure, marks, freq_error, level):
    msg, fields = MESSAGES[fmt]
    burst = minimodem_burst(standard, msg, seizure, marks, freq_error, level)
    line, starts = on_line(burst)
    assert_one(detect(standard, line), expected(standard, **fields), starts[0])


def test_minimodem_reference_runs_at_the_bit_rate_asked():
    # The reference must itself be right: 1000 more bits make exactly 1000 bit times more
    # of minimodem's output at every rate swept, at its own sample rate (no resampler).
    import io
    for baud in (1188.0, 1200.0, 1212.0):
        lengths = []
        for n in (1000, 2000):
            with wave.open(io.BytesIO(minimodem_wav("01" * (n // 2), 1200, 2200, baud))) as w:
                assert w.getframerate() == SAMPLES_PER_BIT * baud
                lengths.append(w.getnframes())
        assert (lengths[1] - lengths[0]) / 1000 == SAMPLES_PER_BIT, baud
    # ... and the 8 kHz reference at 1200 baud is 1000 bits = 6666.7 samples longer.
    short = minimodem_tx("01" * 500, 1200, 2200)
    long = minimodem_tx("01" * 1000, 1200, 2200)
    assert abs(len(long) - len(short) - 8000 * 1000 / 1200) <= 1


# Bell 202 (Telcordia GR-30): 1200 baud +-1 %; V.23 (ITU-T V.23, ETSI EN 300 659-2):
# 1200 baud +-1 %. Swept with the frequency corners and at both levels.
@pytest.mark.parametrize("baud_error", [-0.01, -0.005, 0.005, 0.01])
@pytest.mark.parametrize("freq_error", [-0.01, 0.0, 0.01])
@pytest.mark.parametrize("level", [-8.0, -32.0])
@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_burst_at_the_bit_rate_edges_decodes_exactly(standard, level, freq_error, baud_error):
    burst = minimodem_burst(standard, MDMF_MSG, 96, 80, freq_error, level,
                            baud_error=baud_error)
    line, starts = on_line(burst)
    assert_one(detect(standard, line), expected(standard, **MDMF_FIELDS), starts[0])


@pytest.mark.parametrize("baud_error", [-0.01, 0.01])
@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_burst_at_the_bit_rate_edges_in_noise_after_mu_law_decodes(standard, baud_error):
    burst = minimodem_burst(standard, MDMF_MSG, 96, 80, -0.01 if baud_error > 0 else 0.01,
                            -32.0, baud_error=baud_error)
    line, starts = on_line(burst)
    noisy = gen.mix(line, gen.white_noise(len(line) / 8000, -52.0, seed=4))
    assert_one(detect(standard, g711.ulaw_roundtrip(noisy)), expected(standard, **MDMF_FIELDS),
               starts[0])


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("level", [-8.0, -32.0])
@pytest.mark.parametrize("fmt", ["sdmf", "mdmf"])
@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_burst_in_white_noise_at_20_db_snr_decodes(standard, fmt, level, seed):
    msg, fields = MESSAGES[fmt]
    burst = minimodem_burst(standard, msg, 96, 80, 0.01 if seed % 2 else -0.01, level)
    line, starts = on_line(burst)
    noisy = gen.mix(line, gen.white_noise(len(line) / 8000, level - 20.0, seed=seed))
    assert_one(detect(standard, noisy), expected(standard, **fields), starts[0])


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_burst_after_g711_round_trip_decodes(standard, law):
    trip = g711.ulaw_roundtrip if law == "ulaw" else g711.alaw_roundtrip
    burst = minimodem_burst(standard, MDMF_MSG, 96, 80, -0.01, -32.0)
    line, starts = on_line(burst)
    assert_one(detect(standard, trip(line)), expected(standard, **MDMF_FIELDS), starts[0])


@pytest.mark.parametrize("offset", [0, 1, 79, 159, 160, 1234])
def test_burst_at_any_sample_offset_is_found_with_its_start(offset):
    burst = minimodem_burst("bell202", SDMF_MSG, 96, 80)
    line, starts = on_line(burst, lead=offset / 8000)
    assert_one(detect("bell202", line), expected("bell202", **SDMF_FIELDS), starts[0])


@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_bad_checksum_is_not_reported_but_the_next_good_burst_is(standard):
    bad = bytearray(MDMF_MSG)
    bad[-1] ^= 0x01
    bad_burst = minimodem_burst(standard, bytes(bad), 300, 180)
    good_burst = minimodem_burst(standard, SDMF_MSG, 300, 180)
    line, starts = on_line(bad_burst, 1.0, good_burst)
    assert_one(detect(standard, line), expected(standard, **SDMF_FIELDS), starts[1])


def test_corrupted_body_byte_is_not_reported():
    bad = bytearray(SDMF_MSG)
    bad[5] ^= 0x10          # a digit changes, the checksum no longer holds
    line, _ = on_line(minimodem_burst("bell202", bytes(bad), 96, 80))
    assert detect("bell202", line) == []


@pytest.mark.parametrize("code", ["O", "P"])
def test_sdmf_absence_code_in_place_of_number(code):
    msg = _msg(0x04, b"07040930" + code.encode())
    line, starts = on_line(minimodem_burst("bell202", msg, 300, 180))
    assert_one(detect("bell202", line),
               expected("bell202", "sdmf", datetime="07040930", number_absent=code), starts[0])


@pytest.mark.parametrize("number_code,name_code", [("O", "O"), ("P", "P"), ("O", "P")])
def test_mdmf_absence_codes_for_number_and_name(number_code, name_code):
    msg = _msg(0x80, _param(0x01, b"01020304") + _param(0x04, number_code.encode())
               + _param(0x08, name_code.encode()))
    line, starts = on_line(minimodem_burst("v23", msg, 300, 80))
    assert_one(detect("v23", line),
               expected("v23", "mdmf", datetime="01020304", number_absent=number_code,
                        name_absent=name_code), starts[0])


def test_unknown_mdmf_parameters_are_skipped_and_etsi_dialable_number_is_a_number():
    # 0x11 call type and 0x1A redirecting number (ETSI EN 300 659-3) are not ours to report.
    msg = _msg(0x80, _param(0x11, b"\x01") + _param(0x01, b"11111111")
               + _param(0x03, b"0299998888") + _param(0x1A, b"0777") + _param(0x07, b"ACME"))
    line, starts = on_line(minimodem_burst("v23", msg, 300, 80))
    assert_one(detect("v23", line),
               expected("v23", "mdmf", datetime="11111111", number="0299998888", name="ACME"),
               starts[0])


@pytest.mark.parametrize("stop_bits", [2, 5, 10, 16])
def test_mark_between_bytes_up_to_16_bits_is_accepted(stop_bits):
    # Stop bits vary byte to byte: 1, then stop_bits, then 1 ...
    line, starts = on_line(minimodem_burst("bell202", MDMF_MSG, 96, 80,
                                           stop_bits=lambda i: 1 if i % 2 else stop_bits))
    assert_one(detect("bell202", line), expected("bell202", **MDMF_FIELDS), starts[0])


def test_message_broken_by_a_long_mark_gap_is_not_reported():
    line, _ = on_line(minimodem_burst("bell202", MDMF_MSG, 96, 80,
                                      stop_bits=lambda i: 40 if i == 10 else 1))
    assert detect("bell202", line) == []


@pytest.mark.parametrize("marks,found", [(30, True), (40, True), (20, False), (8, False)])
def test_message_needs_a_run_of_mark_after_the_seizure(marks, found):
    line, _ = on_line(minimodem_burst("v23", SDMF_MSG, 300, marks))
    assert len(detect("v23", line)) == (1 if found else 0)


@pytest.mark.parametrize("level,found", [(-38.0, True), (-50.0, False)])
def test_bursts_under_the_energy_gate_are_ignored(level, found):
    line, _ = on_line(minimodem_burst("bell202", SDMF_MSG, 96, 80, level=level))
    assert len(detect("bell202", line)) == (1 if found else 0)


def test_two_bursts_on_one_line_give_two_events_with_their_own_times():
    first = minimodem_burst("bell202", SDMF_MSG, 300, 180)
    second = minimodem_burst("bell202", MDMF_MSG, 300, 180, level=-25.0)
    line, starts = on_line(first, 4.0, second)
    events = detect("bell202", line)
    assert [e["number"] for e in events] == ["2125551234", "01632960123"]
    for ev, start in zip(events, starts, strict=True):
        assert start - SLICE_S <= ev["t"] <= start + SLICE_S


# --- our modulator ------------------------------------------------------------------------

@pytest.mark.parametrize("freq_error", [-0.01, 0.01])
@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_own_modulator_bursts_decode_like_minimodem_ones(standard, freq_error):
    cases = [
        (fskmod.encode_sdmf("2125551234", "03142359"), SDMF_FIELDS),
        (fskmod.encode_mdmf("01632960123", "O'BRIEN, MARY-KATE", "12312359"), MDMF_FIELDS),
        (fskmod.encode_mdmf(datetime="01020304", number_absent="P", name_absent="O"),
         {"format": "mdmf", "datetime": "01020304", "number_absent": "P", "name_absent": "O"}),
    ]
    for msg, fields in cases:
        for level in (-8.0, -32.0):
            burst = fskmod.callerid_burst(standard, msg, level, 96, 80, freq_error)
            line, starts = on_line(burst, lead=0.1234)
            assert_one(detect(standard, line), expected(standard, **fields), starts[0])


def test_sdmf_encoder_matches_a_published_gr30_example():
    # From a published GR-30 SDMF walk-through: 09/30 12:24, 609-555-1212.
    assert fskmod.encode_sdmf("6095551212", "09301224") == bytes.fromhex(
        "04 12 30 39 33 30 31 32 32 34 36 30 39 35 35 35 31 32 31 32 51")


def test_published_mdmf_example_parses_in_its_parameter_order():
    # The same walk-through's MDMF body (date, name, then number). Its printed checksum
    # (7D) does not make the sum 0 modulo 256, so the message is re-framed here.
    body = bytes.fromhex("01 08 30 33 32 34 30 39 30 32 07 08 4A 4F 48 4E 20 44 4F 45"
                         " 02 0A 38 30 30 35 35 35 31 32 31 32")
    msg = _msg(0x80, body)
    assert parse_message(msg) == {"format": "mdmf", "datetime": "03240902",
                                  "number": "8005551212", "name": "JOHN DOE",
                                  "number_absent": None, "name_absent": None}
    assert parse_message(msg[:-1] + bytes((msg[-1] ^ 0x80,))) is None   # checksum
    assert parse_message(msg[:-2] + msg[-1:]) is None      # length byte no longer matches
    assert parse_message(bytes.fromhex("80 20") + body + bytes.fromhex("7D")) is None


def test_mdmf_encoder_round_trips_every_field():
    msg = fskmod.encode_mdmf(number="123", name="A B", datetime="12312359")
    assert sum(msg) & 0xFF == 0 and msg[0] == 0x80 and msg[1] == len(msg) - 3
    assert parse_message(msg) == {"format": "mdmf", "datetime": "12312359", "number": "123",
                                  "name": "A B", "number_absent": None, "name_absent": None}


@pytest.mark.parametrize("kwargs", [
    {"number": "1", "number_absent": "P"},      # number and its absence
    {"number": None},                           # neither
    {"number": None, "number_absent": "X"},     # not an absence code
    {"number": "1", "datetime": "0101"},        # datetime not 8 digits
])
def test_sdmf_encoder_rejects_bad_fields(kwargs):
    with pytest.raises(ValueError):
        fskmod.encode_sdmf(**kwargs)


@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_minimodem_receiver_decodes_our_modulator(standard, tmp_path):
    std = STANDARDS[standard]
    msg = fskmod.encode_mdmf("5551234567", "JOHN DOE", "11220625")
    burst = fskmod.callerid_burst(standard, msg, -13.0, 300, 180)
    path = tmp_path / "cid.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(burst.tobytes())
    out = subprocess.run(["minimodem", "--rx", "callerid", "-q", "-M", str(int(std.mark)),
                          "-S", str(int(std.space)), "-f", str(path)],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.split("\n")[:4] == ["CALLER-ID", "Time:  11/22 06:25", "Phone: 555-123-4567",
                                   "Name:  JOHN DOE"]


# --- speech ---------------------------------------------------------------------------

def _two_tone_frames():
    """Every mixture of two tones in 50 Hz steps at three energy shares: (frame, energy)."""
    n = range(FRAME)
    for f1 in range(50, 4000, 50):
        for f2 in range(f1, 4000, 50):
            for share in (0.3, 0.6, 0.9):
                a1, a2 = 9000 * math.sqrt(share), 9000 * math.sqrt(1 - share)
                w1, w2 = 2 * math.pi * f1 / 8000, 2 * math.pi * f2 / 8000
                x = array("h", (int(a1 * math.sin(w1 * i) + a2 * math.sin(w2 * i + 1.0))
                                for i in n))
                yield x, sum(map(operator.mul, x, x))


@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_frames_the_slope_screen_skips_could_not_pass_the_band_check(standard):
    # The detector skips the band check when lag 1 exceeds LAG1_MAX of the energy. Over
    # every mixture of two tones (50 Hz steps, three energy shares), every frame above
    # 0.8 of its energy (below LAG1_MAX, for a margin) scores under BAND_START.
    from linebox.dsp.callerid import BAND_START, LAG1_MAX
    std = STANDARDS[standard]
    band = fsk.BandCheck(std.mark, std.space)
    worst, screened = 0.0, 0
    for x, e in _two_tone_frames():
        if sum(map(operator.mul, x, x[1:])) > 0.8 * e:
            screened += 1
            worst = max(worst, band.ratio(x, e))
    assert LAG1_MAX >= 0.8 and screened > 1000
    assert worst < BAND_START, worst


@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_frames_the_lag2_screen_skips_could_not_pass_the_band_check(standard):
    # The detector skips the band check when lag 2 exceeds LAG2_MAX of the energy (after
    # the lag-1 screen). Over every mixture of two tones (50 Hz steps, three energy
    # shares) that the lag-1 screen lets through, every frame above 0.3 of its energy
    # (below LAG2_MAX, for a margin) scores under BAND_START.
    from linebox.dsp.callerid import BAND_START, LAG1_MAX, LAG2_MAX
    std = STANDARDS[standard]
    band = fsk.BandCheck(std.mark, std.space)
    worst, screened = 0.0, 0
    for x, e in _two_tone_frames():
        if (sum(map(operator.mul, x, x[1:])) <= LAG1_MAX * e
                and sum(map(operator.mul, x, x[2:])) > 0.3 * e):
            screened += 1
            worst = max(worst, band.ratio(x, e))
    assert LAG2_MAX >= 0.3 and screened > 1000
    assert worst < BAND_START, worst


def test_the_lag2_screen_skips_band_checks_on_speech(speech_files):
    # Speech the lag-1 screen lets through mostly fails the lag-2 screen: its band check
    # is not computed (counted through the band check's calls).
    det = CallerIdDetector("bell202")
    calls = []
    ratio = det._band.ratio
    det._band.ratio = lambda f, e: calls.append(1) or ratio(f, e)
    from linebox.dsp.callerid import LAG1_MAX
    passed_lag1 = 0
    for path in speech_files[:3]:
        s = read_wav(path)
        for i in range(0, len(s) - FRAME + 1, FRAME):
            f = s[i:i + FRAME]
            e = sum(map(operator.mul, f, f))
            if e >= det._gate and sum(map(operator.mul, f, f[1:])) <= LAG1_MAX * e:
                passed_lag1 += 1
            det.feed(f, e)
    assert passed_lag1 > 500
    assert len(calls) < 0.7 * passed_lag1


@pytest.mark.parametrize("standard", ["bell202", "v23"])
def test_speech_gives_no_callerid_and_rarely_wakes_the_demodulator(standard, speech_files):
    det = CallerIdDetector(standard)
    frames = 0
    for path in speech_files:
        s = read_wav(path)
        for i in range(0, len(s) - FRAME + 1, FRAME):
            f = s[i:i + FRAME]
            assert det.feed(f, sum(map(operator.mul, f, f))) == []
            frames += 1
    assert det.flush() == []
    assert frames > 10000
    # The band check turns speech away before the demodulator runs on it.
    assert det.frames_demodulated < 0.05 * frames


def _listen(lst, sig) -> list[dict]:
    sig = array("h", sig)
    sig.extend([0] * (-len(sig) % FRAME))
    events = []
    for i in range(0, len(sig), FRAME):
        events += lst.feed(sig[i:i + FRAME])
    return events + lst.flush()


@pytest.mark.parametrize("plan, standard", [("us", "bell202"), ("uk", "v23")])
def test_keys_do_not_wake_the_demodulator_and_a_burst_right_after_them_decodes(plan, standard):
    # DTMF keys fill the FSK band (their high tones lie between mark and space): the band
    # check alone starts a burst on nearly every key, and the demodulator runs on it. In
    # the listener, the key detector's word keeps them out; caller ID still comes through
    # right after the last key.
    digits = "0123456789*#ABCD"
    keys = gen.dtmf_string(digits, on=0.1, off=0.15, low_dbm0=-12, high_dbm0=-10)
    keys = gen.mix(keys, gen.white_noise(len(keys) / 8000, -65.0))
    alone = CallerIdDetector(standard)
    assert run_detector(alone, keys) == []
    assert alone.frames_demodulated > len(digits)     # the band check alone is fooled
    lst = Listener(plan)
    events = _listen(lst, keys)
    assert "".join(e["digit"] for e in events if e["type"] == "dtmf") == digits
    assert [e for e in events if e["type"] == "callerid"] == []
    assert lst.fsk.frames_demodulated == 0
    burst = minimodem_burst(standard, MDMF_MSG, 96, 80)
    line, starts = on_line(keys, 0.1, burst, lead=0.2)
    lst = Listener(plan)
    events = _listen(lst, line)
    assert "".join(e["digit"] for e in events if e["type"] == "dtmf") == digits
    assert_one([e for e in events if e["type"] == "callerid"],
               expected(standard, **MDMF_FIELDS), starts[1])


def test_a_burst_begun_on_the_last_frame_is_demodulated_at_flush():
    # A new burst's frames wait one frame for the key detector's word; if the input ends
    # first, flush() demodulates them (no frame of the stream is left unheard).
    from linebox.dsp.callerid import HISTORY
    burst = minimodem_burst("bell202", SDMF_MSG, 96, 80)
    line = gen.silence(0.1) + burst
    det = CallerIdDetector("bell202")
    for i in range(0, len(line) - FRAME + 1, FRAME):
        frame = line[i:i + FRAME]
        det.feed(frame, sum(map(operator.mul, frame, frame)))
        if det._pending:
            break
    assert det.frames_demodulated == 0
    assert det.flush() == []
    assert det.frames_demodulated == HISTORY     # the history, the start frame its newest


# --- DTMF caller ID ---------------------------------------------------------------------

def feed_digits(parser, digits: str, t0=10.0, step=0.16):
    events = []
    for i, d in enumerate(digits):
        ev = parser.feed(d, t0 + i * step)
        if ev is not None:
            events.append(ev)
    return events


def dtmf_event(t, number=None, absent=None):
    return {"type": "callerid", "t": t, "standard": "dtmf", "format": "dtmf", "datetime": None,
            "number": number, "name": None, "number_absent": absent, "name_absent": None}


@pytest.mark.parametrize("digits,number,absent", [
    ("A5551234C", "5551234", None),
    ("A5551234D0800C", "5551234", None),    # with a redirecting number
    ("5551234#", "5551234", None),
    ("A5551234#", "5551234", None),
    ("D0800123456C", "0800123456", None),   # Taiwan / Kuwait: D<number>C
    ("B00C", None, "O"),                    # special information 00: unavailable
    ("B10C", None, "P"),                    # 10: presentation restricted
    ("D1#", None, "P"),                     # Denmark: 1 private
    ("D2#", None, "O"),                     # 2 international, unavailable
    ("D3#", None, "O"),                     # 3 unavailable
    ("D1C", None, "P"),
    ("D01C", None, "P"),
    ("D00C", None, "O"),
])
def test_dtmf_caller_id_forms(digits, number, absent):
    assert feed_digits(DtmfCallerIdParser(), digits) == [dtmf_event(10.0, number, absent)]


@pytest.mark.parametrize("digits", ["A55*1C", "B07C", "D9#", "AC", "#", "C", "A1A2C", "12345C"])
def test_dtmf_caller_id_garbage_gives_nothing(digits):
    assert feed_digits(DtmfCallerIdParser(), digits) == []


@pytest.mark.parametrize("gap,complete", [(0.5, True), (1.0, True), (1.01, False), (3.0, False)])
def test_dtmf_digits_too_far_apart_start_over(gap, complete):
    p = DtmfCallerIdParser()
    assert feed_digits(p, "A123", t0=0.0) == []
    ev = p.feed("4", 0.48 + gap)
    ev = ev or p.feed("C", 0.48 + gap + 0.16)
    if complete:
        assert ev == dtmf_event(0.0, "1234")
    else:
        assert ev is None


def test_dtmf_timeout_drops_a_partial_message_and_the_next_one_parses():
    p = DtmfCallerIdParser()
    assert feed_digits(p, "B1", t0=1.0) == []
    assert p.timeout(2.0) is None
    assert feed_digits(p, "0C", t0=2.1) == []              # "0C" alone is not a message
    assert feed_digits(p, "A77C", t0=5.0) == [dtmf_event(5.0, "77")]


@pytest.mark.parametrize("digits,number", [("A555", "555"), ("A55", None), ("555", None),
                                           ("A5*5", None)])
def test_dtmf_timeout_reports_an_unterminated_number_of_three_digits_or_more(digits, number):
    p = DtmfCallerIdParser()
    assert feed_digits(p, digits, t0=1.0) == []
    want = dtmf_event(1.0, number) if number else None
    assert p.timeout(3.0) == want
    assert p.timeout(4.0) is None                          # reported once


# --- UK: the dual-tone alert before the burst (BT SIN 227, ETSI EN 300 659-1 §6.1.1) ----

def alert_tone(seconds=0.1, freq_error=0.0, level=-13.0, twist_db=0.0) -> array:
    """The DT-AS as EN 300 659-1 describes it: 2130 and 2750 Hz together."""
    return gen.tone(tuple(f * (1.0 + freq_error) for f in ALERT_FREQS), seconds,
                    (level, level - twist_db))


def alerts(samples) -> list[dict]:
    return run_detector(AlertToneDetector(), samples)


@pytest.mark.parametrize("level", [-10.0, -38.0])
@pytest.mark.parametrize("freq_error", [-0.015, 0.0, 0.015])
@pytest.mark.parametrize("seconds", [0.09, 0.1, 0.11])
def test_alert_tone_within_its_tolerances_is_heard_once_with_its_edges(seconds, freq_error, level):
    for offset in (0, 37, 101):          # samples: the tone starts anywhere in a frame
        lead = 0.3 + offset / 8000
        sig = gen.silence(lead) + alert_tone(seconds, freq_error, level) + gen.silence(0.3)
        ev = alerts(sig)
        assert len(ev) == 1, (offset, ev)
        assert ev[0]["type"] == "alert"
        assert ev[0]["t"] == pytest.approx(lead, abs=0.003)
        assert ev[0]["dur"] == pytest.approx(seconds, abs=0.004)


@pytest.mark.parametrize("seconds", [0.03, 0.06, 0.07, 0.13, 0.2, 2.0])
def test_alert_tone_too_short_or_too_long_is_no_alert(seconds):
    # 100 +- 10 ms is sent; a 60 ms burst or a steady tone of the same sound is something else.
    assert alerts(gen.silence(0.2) + alert_tone(seconds) + gen.silence(0.3)) == []


@pytest.mark.parametrize("freq_error", [-0.05, -0.035, 0.035, 0.05, 0.1])
def test_alert_tone_off_frequency_is_no_alert(freq_error):
    assert alerts(gen.silence(0.2) + alert_tone(0.1, freq_error) + gen.silence(0.3)) == []


def test_one_frequency_alone_or_at_a_great_twist_is_no_alert():
    for f in ALERT_FREQS:
        assert alerts(gen.silence(0.2) + gen.tone(f, 0.1, -13.0) + gen.silence(0.3)) == []
    assert alerts(gen.silence(0.2) + alert_tone(twist_db=12.0) + gen.silence(0.3)) == []
    assert len(alerts(gen.silence(0.2) + alert_tone(twist_db=4.0) + gen.silence(0.3))) == 1


def test_alert_tone_too_quiet_is_not_taken_but_one_in_noise_is():
    assert alerts(gen.silence(0.2) + alert_tone(level=-46.0) + gen.silence(0.3)) == []
    sig = gen.silence(0.2) + alert_tone(level=-20.0) + gen.silence(0.3)
    ev = alerts(gen.mix(sig, gen.white_noise(len(sig) / 8000, -40.0, seed=3)))
    assert len(ev) == 1 and ev[0]["dur"] == pytest.approx(0.1, abs=0.005)


def bt_caller_id(burst: array, level=-13.0) -> tuple[array, float, float]:
    """What a BT line carries after its reversal: quiet, the alert, quiet, the V.23 burst,
    quiet until the first ring; with the alert's and the burst's start times."""
    sig = gen.silence(0.3) + alert_tone(0.1, 0.0, level) + gen.silence(0.15)
    burst_t = len(sig) / 8000
    return sig + burst + gen.silence(0.4), 0.3, burst_t


@pytest.mark.parametrize("baud_error", [-0.01, 0.0, 0.01])
def test_bt_alert_then_minimodem_v23_burst_through_the_listener(baud_error):
    # SIN 227: channel seizure 96 to 315 bits, then at least 55 bits of mark.
    burst = minimodem_burst("v23", MDMF_MSG, 96, 55, 0.005, -16.0, baud_error=baud_error)
    sig, alert_t, burst_t = bt_caller_id(burst)
    lst = Listener("uk")
    events = []
    for i in range(0, len(sig) - len(sig) % FRAME, FRAME):
        events += lst.feed(sig[i:i + FRAME])
    events += lst.flush()
    assert [e["type"] for e in events] == ["alert", "callerid"]
    assert events[0]["t"] == pytest.approx(alert_t, abs=0.003)
    cid = dict(events[1])
    assert burst_t - SLICE_S <= cid.pop("t") <= burst_t + SLICE_S
    assert cid == expected("v23", **MDMF_FIELDS)


def test_the_alert_is_listened_for_only_on_v23_plans():
    # Bell 202 lines (GR-30-CORE) send caller ID between the rings, after no alert: a us
    # listener does not spend its frames on one, V.23 plans (SIN 227, EN 300 659-1) do.
    sig, alert_t, _ = bt_caller_id(gen.silence(0.1))
    for plan, heard in (("us", []), ("uk", [alert_t]), ("de", [alert_t])):
        lst = Listener(plan)
        events = []
        for i in range(0, len(sig) - len(sig) % FRAME, FRAME):
            events += lst.feed(sig[i:i + FRAME])
        events += lst.flush()
        assert [pytest.approx(e["t"], abs=0.003) for e in events if e["type"] == "alert"] == heard, plan


def test_the_alert_is_listened_for_only_while_caller_id_is():
    sig, _, _ = bt_caller_id(gen.silence(0.1))
    lst = Listener("uk", callerid=False)
    events = []
    for i in range(0, len(sig) - len(sig) % FRAME, FRAME):
        events += lst.feed(sig[i:i + FRAME])
    assert [e for e in events + lst.flush() if e["type"] == "alert"] == []
