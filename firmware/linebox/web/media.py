"""Audio for the browser: message files as they are (16-bit PCM WAV, which every
browser plays; µ-law WAV most do not), waveform pictures, download names, uploads."""

import re
from array import array
from datetime import datetime
from functools import lru_cache

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


def read_upload(blob: bytes) -> array:
    """A greeting from an uploaded WAV (any rate the reader knows, mono or stereo), or
    WavError naming the problem."""
    if not blob:
        raise WavError("upload", "the file is empty")
    samples = read_wav(blob, "upload")
    if len(samples) < 4000:
        raise WavError("upload", "shorter than half a second")
    if len(samples) > MAX_GREETING_SECONDS * 8000:
        raise WavError("upload", f"longer than {MAX_GREETING_SECONDS} seconds")
    return samples
