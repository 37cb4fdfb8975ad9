"""Audio for the browser: message files as they are (16-bit PCM WAV, which every
browser plays; µ-law WAV most do not), waveform pictures, download names, uploads."""

import re
import struct
from array import array
from datetime import datetime
from functools import lru_cache
from math import gcd

from linebox.dsp.resample import _resample  # the general rational resampler behind to_8k
from linebox.wavfile import WavError, encode_samples, read_wav, wav_header

WAVE_BARS = 120
WAVE_W, WAVE_H = 240, 32
MAX_UPLOAD_BYTES = 16 * 1024 * 1024     # about 3 minutes of 44.1 kHz stereo
MAX_GREETING_SECONDS = 120


def wav_bytes(samples: array) -> bytes:
    return wav_header(len(samples)) + encode_samples(samples)


def peaks(samples: array, bars: int = WAVE_BARS) -> list[float]:
    """The loudest sample of each of ``bars`` slices, 0..1 (slices are C-level ``max``)."""
    n = len(samples)
    if n == 0:
        return [0.0] * bars
    out = []
    for i in range(bars):
        a, b = i * n // bars, max((i + 1) * n // bars, i * n // bars + 1)
        chunk = samples[a:b]
        out.append(max(max(chunk), -min(chunk)) / 32768.0)
    return out


@lru_cache(maxsize=256)
def waveform_svg(path: str, mtime_ns: int, size: int) -> str:
    """A small SVG of the message (cached per file version)."""
    try:
        p = peaks(read_wav(path))
    except WavError:
        p = [0.0] * WAVE_BARS
    top = max(max(p), 0.05)
    w = WAVE_W / len(p)
    bars = []
    for i, v in enumerate(p):
        h = max(1.0, v / top * (WAVE_H - 2))
        bars.append(f'<rect x="{i * w:.1f}" y="{(WAVE_H - h) / 2:.1f}" width="{w * 0.7:.1f}" height="{h:.1f}"/>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WAVE_W} {WAVE_H}" '
            f'width="{WAVE_W}" height="{WAVE_H}" preserveAspectRatio="none">'
            f'<g fill="#2f6fb0">{"".join(bars)}</g></svg>')


_UNSAFE = re.compile(r"[^A-Za-z0-9+_-]+")


def download_name(msg: dict) -> str:
    """``box100_2026-12-02_0915_5551234567_JOHN-DOE.wav``: box, date, time and caller."""
    try:
        when = datetime.fromisoformat(msg["received"]).strftime("%Y-%m-%d_%H%M")
    except (TypeError, ValueError):
        when = "unknown-date"
    caller = "_".join(x for x in (msg.get("caller_number"), msg.get("caller_name")) if x) or "unknown-caller"
    caller = _UNSAFE.sub("-", caller).strip("-")[:48] or "unknown-caller"
    return f"box{msg['box']}_{when}_{caller}.wav"


MIN_RATE, MAX_RATE = 8000, 192000
MAX_UP = 1000            # resampler phases: rates whose ratio to 8 kHz needs more are refused


def _fmt_rate_offset(blob: bytes) -> int | None:
    """Where the sample rate of the fmt chunk sits in a RIFF/WAVE file, if it has one."""
    pos = 12
    while blob[:4] == b"RIFF" and blob[8:12] == b"WAVE" and pos + 16 <= len(blob):
        size = struct.unpack_from("<I", blob, pos + 4)[0]
        if blob[pos:pos + 4] == b"fmt ":
            return pos + 12
        pos += 8 + size + (size & 1)
    return None


def _read_any_rate(blob: bytes) -> array:
    """The reader knows 8/16/44.1/48 kHz; a WAV at another rate (22050, 32000, 11025 Hz...)
    is read as if it were 8 kHz, then resampled with the same polyphase filter."""
    try:
        return read_wav(blob, "upload")
    except WavError as e:
        at = _fmt_rate_offset(blob)
        if "sample rate" not in e.problem or at is None:
            raise
    rate = struct.unpack_from("<I", blob, at)[0]
    if not MIN_RATE <= rate <= MAX_RATE or 8000 // gcd(rate, 8000) > MAX_UP:
        raise WavError("upload", f"unsupported WAV sample rate {rate} Hz")
    patched = bytearray(blob)
    struct.pack_into("<I", patched, at, 8000)
    return _resample(read_wav(bytes(patched), "upload"), rate, 8000)


def read_upload(blob: bytes) -> array:
    """A greeting from an uploaded WAV (PCM, µ-law or A-law, mono or stereo, any rate
    from 8 to 192 kHz: resampled), or WavError naming the problem."""
    if not blob:
        raise WavError("upload", "the file is empty")
    samples = _read_any_rate(blob)
    if len(samples) < 4000:
        raise WavError("upload", "shorter than half a second")
    if len(samples) > MAX_GREETING_SECONDS * 8000:
        raise WavError("upload", f"longer than {MAX_GREETING_SECONDS} seconds")
    return samples
