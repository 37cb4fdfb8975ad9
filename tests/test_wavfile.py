"""WAV reading and writing, and the resampler behind it.

Files come from a real peer (sox) where one exists, and are built byte by byte where
the point is a damaged or unusual header.
"""

import io
import math
import os
import random
import struct
import subprocess
import uuid
from array import array

import pytest

from linebox.dsp import g711, gen, resample
from linebox.dsp.levels import dbm0
from linebox.wavfile import (
    WavError,
    WavInfo,
    data_offset,
    encode_samples,
    read_wav,
    read_wav_info,
    wav_header,
    write_wav,
)

# ------------------------------------------------------------ hand-built files

def chunk(cid: bytes, payload: bytes, size: int | None = None) -> bytes:
    size = len(payload) if size is None else size
    return cid + struct.pack("<I", size) + payload + b"\0" * (len(payload) & 1)


def fmt(tag=1, channels=1, rate=8000, bits=16) -> bytes:
    align = channels * bits // 8
    return chunk(b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits))


def fmt_extensible(subtag, channels=1, rate=8000, bits=16) -> bytes:
    align = channels * bits // 8
    # KSDATAFORMAT_SUBTYPE_PCM etc.: the old tag in the GUID's first field.
    guid = uuid.UUID(f"{subtag:08x}-0000-0010-8000-00aa00389b71").bytes_le
    body = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * align, align, bits,
                       22, bits, 0x4) + guid
    return chunk(b"fmt ", body)


def riff(*chunks: bytes, size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if size is None else size) + body


def pcm(samples) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


SAMPLES = [0, 1, -1, 1000, -1000, 32767, -32768, 12345]


def sox(*args, tmp_path) -> None:
    subprocess.run(["sox", *map(str, args)], check=True, cwd=tmp_path)


@pytest.fixture(scope="module")
def speech(speech_files) -> array:
    """Two seconds of a real recording."""
    return read_wav(speech_files[0])[:16000]


# ------------------------------------------------------------ reading: formats

def test_reads_16bit_pcm_exactly():
    assert read_wav(riff(fmt(), chunk(b"data", pcm(SAMPLES)))).tolist() == SAMPLES


def test_reads_unsigned_8bit_pcm_as_centred_16bit():
    data = bytes([128, 129, 127, 0, 255])
    got = read_wav(riff(fmt(bits=8), chunk(b"data", data)))
    assert got.tolist() == [0, 256, -256, -32768, 32512]


@pytest.mark.parametrize("tag, law", [(7, "ulaw"), (6, "alaw")])
def test_reads_g711_with_the_g191_expansion(tag, law):
    codes = bytes(range(256))
    got = read_wav(riff(fmt(tag=tag, bits=8), chunk(b"data", codes)))
    expand = g711.ulaw_expand if law == "ulaw" else g711.alaw_expand
    assert got.tolist() == [expand(c) for c in codes]


@pytest.mark.parametrize("subtag, bits, encoding", [(1, 16, "pcm16"), (1, 8, "pcm8"),
                                                     (7, 8, "ulaw"), (6, 8, "alaw")])
def test_reads_wave_format_extensible_by_its_subformat(subtag, bits, encoding):
    data = pcm(SAMPLES) if bits == 16 else bytes(range(8))
    blob = riff(fmt_extensible(subtag, bits=bits), chunk(b"data", data))
    assert read_wav_info(blob) == WavInfo(8000, 1, encoding, 8)
    plain = riff(fmt(tag=subtag, bits=bits), chunk(b"data", data))
    assert read_wav(blob) == read_wav(plain)


def test_stereo_gives_the_first_channel():
    left, right = SAMPLES, [-v if v > -32768 else 0 for v in SAMPLES]
    inter = [v for pair in zip(left, right, strict=True) for v in pair]
    assert read_wav(riff(fmt(channels=2), chunk(b"data", pcm(inter)))).tolist() == left


def test_sox_files_of_every_accepted_kind_give_the_same_speech(tmp_path, speech):
    write_wav(tmp_path / "ref.wav", speech)
    cases = {
        "u.wav": ["-e", "u-law"], "a.wav": ["-e", "a-law"], "b8.wav": ["-b", "8"],
        "st.wav": ["-c", "2"], "c3u.wav": ["-c", "3", "-e", "u-law"],   # extensible
    }
    for out, opts in cases.items():
        sox("ref.wav", *opts, out, tmp_path=tmp_path)
    assert read_wav(tmp_path / "st.wav") == speech
    law_error = [dbm0([a - b for a, b in zip(read_wav(tmp_path / f), speech, strict=True)])
                 for f in ("u.wav", "a.wav", "c3u.wav")]
    # G.711 keeps about 38 dB SNR; 8-bit PCM (dithered by sox) about 20 dB.
    assert all(e < dbm0(speech) - 30 for e in law_error)
    b8 = read_wav(tmp_path / "b8.wav")
    assert dbm0([a - b for a, b in zip(b8, speech, strict=True)]) < dbm0(speech) - 15
    assert read_wav_info(tmp_path / "c3u.wav") == WavInfo(8000, 3, "ulaw", len(speech))


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_sox_upsampled_speech_comes_back_at_8khz_aligned(tmp_path, speech, rate):
    write_wav(tmp_path / "ref.wav", speech)
    sox("ref.wav", "-r", rate, "up.wav", tmp_path=tmp_path)
    got = read_wav(tmp_path / "up.wav")
    assert len(got) == len(speech)
    # Misaligned by one sample, the difference would be about as loud as the speech.
    err = dbm0([a - b for a, b in zip(got, speech, strict=True)])
    assert err < dbm0(speech) - 20


def test_reads_from_a_pipe_that_cannot_seek(speech_files):
    with subprocess.Popen(["cat", str(speech_files[0])], stdout=subprocess.PIPE) as p:
        assert not p.stdout.seekable()
        got = read_wav(p.stdout, name="-")
    assert got == read_wav(speech_files[0])


def test_info_reports_the_file_before_resampling(tmp_path):
    write_wav(tmp_path / "x.wav", [0] * 4410, rate=44100, encoding="alaw")
    assert read_wav_info(tmp_path / "x.wav") == WavInfo(44100, 1, "alaw", 4410)
    assert len(read_wav(tmp_path / "x.wav")) == 800


# ------------------------------------------------------------ reading: damaged files

def test_skips_list_and_odd_sized_chunks_before_and_between():
    blob = riff(chunk(b"LIST", b"INFOabc"), fmt(), chunk(b"junk", b"x"),
                chunk(b"data", pcm(SAMPLES)), chunk(b"LIST", b"tail"))
    assert read_wav(blob).tolist() == SAMPLES


def test_odd_sized_data_chunk_of_g711_is_followed_by_its_pad_byte():
    blob = riff(fmt(tag=7, bits=8), chunk(b"data", b"\xff\x80\x00"), chunk(b"LIST", b"INFO"))
    assert read_wav_info(blob).frames == 3


def test_fmt_after_data_is_found():
    assert read_wav(riff(chunk(b"data", pcm(SAMPLES)), fmt())).tolist() == SAMPLES


@pytest.mark.parametrize("size", [0, 0xFFFFFFFF, 1000])
def test_data_size_unknown_or_past_the_end_reads_what_is_there(size):
    blob = riff(fmt(), b"data" + struct.pack("<I", size) + pcm(SAMPLES), size=0)
    assert read_wav(blob).tolist() == SAMPLES


def test_a_crashed_recorder_loses_only_the_trailing_partial_frame():
    stereo = pcm(SAMPLES)                   # four whole stereo frames
    blob = riff(fmt(channels=2), b"data" + struct.pack("<I", 0) + stereo + b"\x01\x02\x03")
    assert read_wav_info(blob).frames == 4
    assert read_wav(blob).tolist() == SAMPLES[0::2]


def test_an_empty_data_chunk_gives_no_samples():
    assert read_wav(riff(fmt(), chunk(b"data", b""))).tolist() == []


def test_a_data_chunk_size_that_is_exact_is_honoured_before_trailing_chunks():
    blob = riff(fmt(), chunk(b"data", pcm(SAMPLES[:4])), chunk(b"LIST", pcm(SAMPLES[4:])))
    assert read_wav(blob).tolist() == SAMPLES[:4]


@pytest.mark.parametrize("blob, problem", [
    (b"", "not a WAV file (no RIFF/WAVE header)"),
    (b"RIFF\0\0\0\0WAVX" + fmt(), "not a WAV file (no RIFF/WAVE header)"),
    (b"ID3\x03" + bytes(40), "not a WAV file (no RIFF/WAVE header)"),
    (riff(fmt(tag=3, bits=32), chunk(b"data", bytes(8))), "unsupported WAV encoding: IEEE float"),
    (riff(fmt(tag=0x55), chunk(b"data", bytes(8))), "unsupported WAV encoding: MPEG layer 3"),
    (riff(fmt(tag=0x1234), chunk(b"data", bytes(8))), "unsupported WAV encoding: format tag 0x1234"),
    (riff(fmt_extensible(3, bits=32), chunk(b"data", bytes(8))), "unsupported WAV encoding: IEEE float"),
    (riff(fmt(bits=24), chunk(b"data", bytes(6))), "unsupported WAV sample size: 24-bit PCM (8 or 16)"),
    (riff(fmt(rate=22050), chunk(b"data", bytes(8))),
     "unsupported WAV sample rate 22050 Hz (8000, 16000, 44100 or 48000)"),
    (riff(fmt(rate=7999), chunk(b"data", bytes(8))),
     "unsupported WAV sample rate 7999 Hz (8000, 16000, 44100 or 48000)"),
    (riff(fmt(channels=0), chunk(b"data", bytes(8))), "WAV header says 0 channels"),
    (riff(fmt()), "no data chunk"),
    (riff(fmt(), chunk(b"LIST", b"INFO")), "no data chunk"),
    (riff(fmt())[:-3], "truncated WAV header (fmt chunk cut short)"),
    (riff(fmt(), b"dat"), "truncated WAV header: no data chunk"),
    (riff(fmt(), chunk(b"LIST", b"INFO", size=99)), "truncated WAV header: no data chunk"),
    (riff(chunk(b"data", bytes(8))), "no fmt chunk"),
    (riff(chunk(b"fmt ", bytes(14)), chunk(b"data", bytes(8))),
     "truncated WAV header (fmt chunk too short)"),
])
def test_unreadable_input_is_one_line_naming_the_file(blob, problem):
    with pytest.raises(WavError) as info:
        read_wav(io.BytesIO(blob), name="x.wav")
    assert str(info.value) == f"x.wav: {problem}"
    assert info.value.exit_code == 2


def test_the_error_names_the_path_it_was_given(tmp_path):
    (tmp_path / "song.wav").write_bytes(riff(fmt(rate=22050), chunk(b"data", bytes(8))))
    with pytest.raises(WavError, match=r"^.*song\.wav: unsupported WAV sample rate 22050 Hz"):
        read_wav(tmp_path / "song.wav")
    with pytest.raises(WavError) as info:
        read_wav(str(tmp_path / "missing.wav"))
    assert str(info.value) == f"{tmp_path / 'missing.wav'}: cannot read: No such file or directory"


def test_garbage_and_truncated_files_raise_only_wav_error(speech_files):
    rnd = random.Random(7)
    good = [riff(fmt(), chunk(b"LIST", b"INFOabc"), chunk(b"data", pcm(SAMPLES))),
            riff(fmt_extensible(7, channels=2, bits=8), chunk(b"data", bytes(16))),
            speech_files[0].read_bytes()[:2000]]
    blobs = [bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(80))) for _ in range(100)]
    for g in good:
        blobs += [g[:n] for n in range(0, 80)]                    # every truncation
        for _ in range(100):                                      # random byte damage
            b = bytearray(g)
            for _ in range(rnd.randrange(1, 6)):
                b[rnd.randrange(min(len(b), 80))] = rnd.getrandbits(8)
            blobs.append(bytes(b))
    outcomes = {"ok": 0, "error": 0}
    for blob in blobs:
        try:
            read_wav(blob, name="fuzz")
            outcomes["ok"] += 1
        except WavError as e:
            assert str(e).startswith("fuzz: ") and "\n" not in str(e)
            outcomes["error"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > 0


# ------------------------------------------------------------ writing

@pytest.mark.parametrize("encoding, law", [("pcm16", None), ("ulaw", g711.ulaw_roundtrip),
                                            ("alaw", g711.alaw_roundtrip)])
def test_written_files_read_back(tmp_path, speech, encoding, law):
    path = tmp_path / "m.wav"
    write_wav(path, speech, encoding=encoding)
    assert read_wav(path) == (speech if law is None else law(speech))
    assert read_wav_info(path) == WavInfo(8000, 1, encoding, len(speech))


@pytest.mark.parametrize("encoding, soxi", [("pcm16", "Signed Integer PCM"), ("ulaw", "u-law"),
                                             ("alaw", "A-law")])
def test_sox_reads_our_files_as_we_wrote_them(tmp_path, encoding, soxi):
    samples = gen.tone(1000, 0.5, -10.0)
    write_wav(tmp_path / "t.wav", samples, encoding=encoding)
    info = [subprocess.run(["soxi", opt, tmp_path / "t.wav"], capture_output=True, text=True,
                           check=True).stdout.strip() for opt in ("-e", "-s", "-r", "-c")]
    assert info == [soxi, "4000", "8000", "1"]
    sox("t.wav", "-t", "raw", "-e", "signed", "-b", "16", "-L", "t.raw", tmp_path=tmp_path)
    back = array("h", (tmp_path / "t.raw").read_bytes())
    assert back == read_wav(tmp_path / "t.wav")


def test_pcm16_header_is_the_canonical_44_bytes():
    assert wav_header(3) == (b"RIFF" + struct.pack("<I", 42) + b"WAVE"
                             + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
                             + b"data" + struct.pack("<I", 6))


def test_g711_header_has_the_18_byte_fmt_and_fact_chunk_windows_writes():
    h = wav_header(5, encoding="ulaw")
    assert h == (b"RIFF" + struct.pack("<I", 4 + 26 + 12 + 8 + 6) + b"WAVE"
                 + b"fmt " + struct.pack("<IHHIIHHH", 18, 7, 1, 8000, 8000, 1, 8, 0)
                 + b"fact" + struct.pack("<II", 4, 5) + b"data" + struct.pack("<I", 5))
    assert wav_header(5, encoding="alaw")[20:22] == struct.pack("<H", 6)


@pytest.mark.parametrize("encoding", ["pcm16", "ulaw", "alaw"])
def test_streaming_writer_pattern_header_zero_then_fixed(tmp_path, encoding):
    assert data_offset(encoding) == len(wav_header(0, encoding=encoding)) == len(wav_header(999, encoding=encoding))
    path = tmp_path / "s.wav"
    body = encode_samples(SAMPLES, encoding)
    with open(path, "wb") as f:
        f.write(wav_header(0, encoding=encoding))
        f.write(body)
        # Before the fix-up the file reads already (size 0 = read what is there) ...
        f.flush()
        partial = read_wav(path)
        f.seek(0)
        f.write(wav_header(len(SAMPLES), encoding=encoding))
    assert read_wav(path) == partial
    assert path.read_bytes()[data_offset(encoding):] == body


def test_encode_samples_pcm16_is_little_endian():
    assert encode_samples([1, -2, 0x1234]) == b"\x01\x00\xfe\xff\x34\x12"
    assert encode_samples([0], "ulaw") == b"\xff"
    assert encode_samples([0], "alaw") == b"\xd5"


def test_write_rejects_an_encoding_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="pcm8"):
        write_wav(tmp_path / "x.wav", [0], encoding="pcm8")
    assert list(tmp_path.iterdir()) == []


def test_write_replaces_atomically_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "msg.wav"
    write_wav(path, [1, 2, 3])
    write_wav(path, [4, 5])
    assert read_wav(path).tolist() == [4, 5]
    assert [p.name for p in tmp_path.iterdir()] == ["msg.wav"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "msg.wav"
    write_wav(path, [1, 2, 3])

    def disk_error(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", disk_error)
    with pytest.raises(OSError):
        write_wav(path, [9] * 100)
    monkeypatch.undo()
    assert read_wav(path).tolist() == [1, 2, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["msg.wav"]


# ------------------------------------------------------------ resampler

def tone_error_db(got: array, want: array) -> float:
    """Power of got - want relative to want, over the part away from the edges."""
    a, b = got[400:-400], want[400:-400]
    return dbm0([x - y for x, y in zip(a, b, strict=True)]) - dbm0(b)


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("freq", [300.0, 1000.0, 3400.0])
def test_in_band_tone_keeps_level_frequency_and_timing(rate, freq):
    got = resample.to_8k(gen.tone(freq, 1.0, -10.0, rate=rate), rate)
    want = gen.tone(freq, 1.0, -10.0)
    assert len(got) == len(want)
    assert abs(dbm0(got[400:-400]) - dbm0(want[400:-400])) <= 0.3
    # Same samples within -40 dB: same frequency and phase, so no delay either.
    assert tone_error_db(got, want) < -40


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("freq", [4000.0, 4100.0, 5000.0, 7000.0, 7900.0])
def test_tones_above_4khz_are_at_least_50db_down(rate, freq):
    got = resample.to_8k(gen.tone(freq, 0.5, -3.0, rate=rate), rate)
    assert dbm0(got[400:-400]) <= -53.0


def test_transition_band_edge_is_between_pass_and_stop():
    # Just inside the design: 3.6 kHz loses a little, 3.9 kHz most of its power.
    mid = dbm0(resample.to_8k(gen.tone(3600.0, 0.5, -10.0, rate=48000), 48000)[400:-400])
    high = dbm0(resample.to_8k(gen.tone(3900.0, 0.5, -10.0, rate=48000), 48000)[400:-400])
    assert -13.0 < mid < -10.0
    assert high < -30.0


@pytest.mark.parametrize("rate, n_in, n_out", [(16000, 3, 2), (48000, 6, 1), (48000, 7, 2),
                                               (44100, 441, 80), (44100, 442, 81), (44100, 0, 0)])
def test_output_length_covers_the_input(rate, n_in, n_out):
    assert len(resample.to_8k(array("h", [0] * n_in), rate)) == n_out


def test_8khz_is_an_unchanged_copy():
    x = array("h", SAMPLES)
    y = resample.to_8k(x, 8000)
    assert y == x and y is not x


def test_full_scale_input_is_clipped_not_wrapped():
    square = array("h", ([32767] * 24 + [-32768] * 24) * 200)
    y = resample.to_8k(square, 48000)
    assert max(y) == 32767 and min(y) == -32768
    assert all(v > 0 for v in y[41:43]) and all(v < 0 for v in y[45:47])


def test_unknown_rate_is_refused():
    with pytest.raises(ValueError):
        resample.to_8k(array("h", [0] * 10), 22050)


def test_level_is_unchanged_for_a_1khz_tone_at_minus_30():
    # A quiet tone: rounding to integers must not add a level error.
    for rate in (16000, 44100, 48000):
        got = resample.to_8k(gen.tone(1000.0, 0.5, -30.0, rate=rate), rate)
        assert abs(dbm0(got[400:-400]) + 30.0) <= 0.3
    assert math.isinf(dbm0(resample.to_8k(array("h", [0] * 4800), 48000)))
