"""WAV files: a small RIFF reader and an atomic writer.

Our own reader because the standard ``wave`` module cannot read G.711 (format tags 6
and 7), which is what telephone recorders and Windows write. Whatever comes in, the
reader hands back 8 kHz mono signed 16-bit samples; bad input is a one-line WavError,
never a traceback.
"""

import os
import struct
import sys
from array import array
from dataclasses import dataclass

from linebox.dsp import g711
from linebox.dsp.resample import ANY_RATES, SUPPORTED_RATES, to_8k, to_8k_any
from linebox.errors import LineboxError
from linebox.fileio import write_file_atomic

ENCODINGS = ("pcm16", "pcm8", "ulaw", "alaw")
WRITE_ENCODINGS = ("pcm16", "ulaw", "alaw")

_TAG_PCM, _TAG_FLOAT, _TAG_ALAW, _TAG_ULAW, _TAG_EXTENSIBLE = 1, 3, 6, 7, 0xFFFE
_TAG_NAMES = {_TAG_FLOAT: "IEEE float", 2: "MS ADPCM", 0x11: "IMA ADPCM", 0x31: "GSM 6.10",
              0x40: "G.721 ADPCM", 0x55: "MPEG layer 3"}
# WAVE_FORMAT_EXTENSIBLE names its real format by a GUID whose first two bytes are
# the old format tag and whose last 14 bytes are this fixed KSDATAFORMAT suffix.
_GUID_SUFFIX = bytes.fromhex("000000001000800000aa00389b71")
# Sizes the recorder writes before it knows the length, or after crashing.
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)

# 8-bit WAV is unsigned: 128 is silence.
_PCM8 = [(b - 128) << 8 for b in range(256)]
_BIG_ENDIAN = sys.byteorder == "big"


class WavError(LineboxError):
    """A WAV file we cannot read: the message is one line that names the file."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True)
class WavInfo:
    """What a WAV file holds, as found in its header: for tools and error messages."""

    rate: int
    channels: int
    encoding: str        # one of ENCODINGS
    frames: int          # sample frames actually present in the file


@dataclass(frozen=True)
class _Parsed:
    info: WavInfo
    data: memoryview     # whole sample frames only


# ---------------------------------------------------------------- reading

def read_wav(source, name: str | None = None) -> array:
    """Samples of a WAV file as 8 kHz mono signed 16-bit (the first channel if several).

    ``source`` is a path or a binary file object (read whole, so a pipe works);
    ``name`` is how errors call it (default: the path, or the file object's name).
    """
    parsed = _parse(*_load(source, name))
    samples = _first_channel(parsed)
    return to_8k(samples, parsed.info.rate)


def read_wav_any_rate(source, name: str | None = None, max_seconds: float | None = None) -> array:
    """Like :func:`read_wav`, but any sample rate from 4 to 192 kHz is resampled (for
    greetings made elsewhere: 22.05 and 11.025 kHz are common). A file longer than
    ``max_seconds`` is refused from its header, before any of it is decoded."""
    if max_seconds is not None and isinstance(source, (str, os.PathLike)):
        _check_length(source, name or os.fspath(source), max_seconds)
    parsed = _parse(*_load(source, name), any_rate=True)
    info = parsed.info
    if max_seconds is not None and info.frames > max_seconds * info.rate:
        raise WavError(name or str(source), f"too long: {info.frames / info.rate:.1f} s "
                       f"(at most {max_seconds:g} s)")
    return to_8k_any(_first_channel(parsed), info.rate)


def _check_length(path, name: str, max_seconds: float) -> None:
    """Refuse a file too long for ``max_seconds`` from its header and its size alone."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise WavError(name, f"cannot read: {e.strerror or e}") from None
    info = _parse(head, name, any_rate=True).info
    width = 2 if info.encoding == "pcm16" else 1
    seconds = (size - 44) / (info.rate * info.channels * width)
    if seconds > max_seconds + 1:        # + 1: room for header chunks of any size
        raise WavError(name, f"too long: {seconds:.1f} s (at most {max_seconds:g} s)")


def read_wav_info(source, name: str | None = None) -> WavInfo:
    """The header facts of a WAV file, after the same checks as :func:`read_wav`."""
    return _parse(*_load(source, name)).info


def _load(source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "<bytes>"
    if isinstance(source, (str, os.PathLike)):
        name = name or os.fspath(source)
        try:
            with open(source, "rb") as f:
                return f.read(), name
        except OSError as e:
            raise WavError(name, f"cannot read: {e.strerror or e}") from None
    name = name or str(getattr(source, "name", "") or "<input>")
    try:
        data = source.read()
    except OSError as e:
        raise WavError(name, f"cannot read: {e.strerror or e}") from None
    if not isinstance(data, (bytes, bytearray)):
        raise WavError(name, "not a binary stream")
    return bytes(data), name


def _parse(buf: bytes, name: str, any_rate: bool = False) -> _Parsed:
    if len(buf) < 12 or buf[0:4] != b"RIFF" or buf[8:12] != b"WAVE":
        raise WavError(name, "not a WAV file (no RIFF/WAVE header)")
    fmt = None
    data_span = None
    pos = 12
    # Walk the chunks; the RIFF size field is ignored (crashed recorders leave it wrong).
    while pos + 8 <= len(buf):
        cid = buf[pos:pos + 4]
        (size,) = struct.unpack_from("<I", buf, pos + 4)
        body = pos + 8
        if cid == b"data":
            if size in _UNKNOWN_SIZES or body + size > len(buf):
                data_span = (body, len(buf))     # read what is there
                break
            data_span = (body, body + size)
        elif cid == b"fmt ":
            if body + size > len(buf):
                raise WavError(name, "truncated WAV header (fmt chunk cut short)")
            fmt = _parse_fmt(buf[body:body + size], name, any_rate)
        if fmt is not None and data_span is not None:
            break
        pos = body + size + (size & 1)           # chunks are padded to even sizes
    cut = "truncated WAV header: " if pos != len(buf) else ""
    if fmt is None:
        raise WavError(name, f"{cut}no fmt chunk")
    if data_span is None:
        raise WavError(name, f"{cut}no data chunk")
    rate, channels, encoding, width = fmt
    block = channels * width
    start, end = data_span
    frames = (end - start) // block              # drop a trailing partial frame
    view = memoryview(buf)[start:start + frames * block]
    return _Parsed(WavInfo(rate, channels, encoding, frames), view)


def _parse_fmt(fmt: bytes, name: str, any_rate: bool = False) -> tuple[int, int, str, int]:
    """(rate, channels, encoding, bytes per sample) from a fmt chunk body."""
    if len(fmt) < 16:
        raise WavError(name, "truncated WAV header (fmt chunk too short)")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _TAG_EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _GUID_SUFFIX:
            raise WavError(name, "unsupported WAV encoding: extensible format of unknown kind")
        (tag,) = struct.unpack_from("<H", fmt, 24)
    if tag == _TAG_PCM and bits in (8, 16):
        encoding = "pcm16" if bits == 16 else "pcm8"
    elif tag == _TAG_PCM:
        raise WavError(name, f"unsupported WAV sample size: {bits}-bit PCM (8 or 16)")
    elif tag in (_TAG_ULAW, _TAG_ALAW):
        encoding = "ulaw" if tag == _TAG_ULAW else "alaw"
    else:
        kind = _TAG_NAMES.get(tag, f"format tag 0x{tag:04X}")
        raise WavError(name, f"unsupported WAV encoding: {kind}")
    if channels < 1:
        raise WavError(name, "WAV header says 0 channels")
    if any_rate and not ANY_RATES[0] <= rate <= ANY_RATES[1]:
        raise WavError(name, f"unsupported WAV sample rate {rate} Hz "
                       f"({ANY_RATES[0]} to {ANY_RATES[1]})")
    if not any_rate and rate not in SUPPORTED_RATES:
        rates = ", ".join(map(str, SUPPORTED_RATES[:-1])) + f" or {SUPPORTED_RATES[-1]}"
        raise WavError(name, f"unsupported WAV sample rate {rate} Hz ({rates})")
    return rate, channels, encoding, 2 if encoding == "pcm16" else 1


def _first_channel(parsed: _Parsed) -> array:
    info, data = parsed.info, parsed.data
    ch = info.channels
    if info.encoding == "pcm16":
        samples = array("h")
        samples.frombytes(data)
        if _BIG_ENDIAN:
            samples.byteswap()
        return samples[::ch] if ch > 1 else samples
    codes = bytes(data[::ch]) if ch > 1 else bytes(data)
    if info.encoding == "ulaw":
        return g711.ulaw_decode(codes)
    if info.encoding == "alaw":
        return g711.alaw_decode(codes)
    return array("h", map(_PCM8.__getitem__, codes))


# ---------------------------------------------------------------- writing

def data_offset(encoding: str = "pcm16") -> int:
    """Where the samples start in a file that begins with :func:`wav_header`."""
    return 44 if _check_encoding(encoding) == "pcm16" else 58


def wav_header(n_samples: int, rate: int = 8000, encoding: str = "pcm16") -> bytes:
    """The canonical mono header for ``n_samples`` samples.

    Its length does not depend on ``n_samples``: a streaming writer writes it with 0,
    appends samples, then writes it again at offset 0 with the final count.
    G.711 gets an 18-byte fmt chunk (cbSize = 0) and a fact chunk, as Windows writes them.
    """
    _check_encoding(encoding)
    if n_samples < 0:
        raise ValueError(f"negative sample count: {n_samples}")
    width = 2 if encoding == "pcm16" else 1
    data_bytes = n_samples * width
    if encoding == "pcm16":
        fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, _TAG_PCM, 1, rate, rate * 2, 2, 16)
        fact = b""
    else:
        tag = _TAG_ULAW if encoding == "ulaw" else _TAG_ALAW
        fmt = struct.pack("<4sIHHIIHHH", b"fmt ", 18, tag, 1, rate, rate, 1, 8, 0)
        fact = struct.pack("<4sII", b"fact", 4, n_samples)
    riff_size = 4 + len(fmt) + len(fact) + 8 + data_bytes + (data_bytes & 1)
    return (struct.pack("<4sI4s", b"RIFF", riff_size, b"WAVE") + fmt + fact
            + struct.pack("<4sI", b"data", data_bytes))


def encode_samples(samples, encoding: str = "pcm16") -> bytes:
    """Samples as the bytes of a WAV data chunk (pcm16 is little-endian on any host)."""
    if _check_encoding(encoding) == "ulaw":
        return g711.ulaw_encode(samples)
    if encoding == "alaw":
        return g711.alaw_encode(samples)
    pcm = array("h", samples)
    if _BIG_ENDIAN:
        pcm.byteswap()
    return pcm.tobytes()


def write_wav(path, samples, rate: int = 8000, encoding: str = "pcm16") -> None:
    """Write a mono WAV atomically: a reader sees the old file or the whole new one."""
    data = encode_samples(samples, encoding)
    width = 2 if encoding == "pcm16" else 1
    blob = wav_header(len(data) // width, rate, encoding) + data + b"\0" * (len(data) & 1)
    write_file_atomic(path, blob)


def _check_encoding(encoding: str) -> str:
    if encoding not in WRITE_ENCODINGS:
        raise ValueError(f"cannot write WAV encoding {encoding!r} (one of {', '.join(WRITE_ENCODINGS)})")
    return encoding
