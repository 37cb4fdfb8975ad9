"""Codecs for the emulated modem, written out from G.711 independently of
``linebox.dsp.g711``, so that the driver's codecs are checked against the standard."""

import bisect
import math
import struct
from array import array

from linebox import RATE


def _ulaw_byte(x: int) -> int:
    """Sun's linear2ulaw (CCITT G.711), written out independently of linebox.dsp.g711."""
    mask = 0xFF if x >= 0 else 0x7F
    mag = min(abs(x), 32635) + 132
    exp = mag.bit_length() - 8
    mant = (mag >> (exp + 3)) & 0x0F
    return ((exp << 4) | mant) ^ mask


def _ulaw_sample(b: int) -> int:
    b = ~b & 0xFF
    exp, mant = (b >> 4) & 7, b & 0x0F
    mag = ((mant << 3) + 132 << exp) - 132
    return -mag if b & 0x80 else mag


def _alaw_sample(b: int) -> int:
    b ^= 0x55
    exp, mant = (b >> 4) & 7, b & 0x0F
    mag = (mant << 4) + 8 if exp == 0 else ((mant << 4) + 0x108) << (exp - 1)
    return mag if b & 0x80 else -mag


_ALAW_BY_VALUE = sorted((_alaw_sample(b), b) for b in range(256))
_ALAW_VALUES = [v for v, _ in _ALAW_BY_VALUE]
_ULAW_DEC = [_ulaw_sample(b) for b in range(256)]
_ALAW_DEC = [_alaw_sample(b) for b in range(256)]


def _alaw_byte(x: int) -> int:
    """The A-law code nearest to ``x``."""
    i = bisect.bisect_left(_ALAW_VALUES, x)
    near = [j for j in (i - 1, i) if 0 <= j < len(_ALAW_VALUES)]
    return _ALAW_BY_VALUE[min(near, key=lambda j: abs(_ALAW_VALUES[j] - x))][1]


def encode(kind: str, samples) -> bytes:
    if kind == "lin16":
        return struct.pack(f"<{len(samples)}h", *samples)
    if kind == "ulaw":
        return bytes(_ulaw_byte(x) for x in samples)
    if kind == "alaw":
        return bytes(_alaw_byte(x) for x in samples)
    if kind == "lin8u":
        return bytes(((x >> 8) + 128) & 0xFF for x in samples)
    return bytes((x >> 8) & 0xFF for x in samples)


def decode(kind: str, data: bytes) -> list[int]:
    if kind == "lin16":
        return list(struct.unpack(f"<{len(data) // 2}h", data[:len(data) // 2 * 2]))
    if kind == "ulaw":
        return [_ULAW_DEC[b] for b in data]
    if kind == "alaw":
        return [_ALAW_DEC[b] for b in data]
    if kind == "lin8u":
        return [(b - 128) << 8 for b in data]
    return [(b - 256 if b >= 128 else b) << 8 for b in data]


def escape(data: bytes) -> bytes:
    return data.replace(b"\x10", b"\x10\x10")


def sine(n: int, freq: float = 1000.0, amp: int = 10000, phase: float = 0.5) -> array:
    """``n`` samples of a sine at 8 kHz, starting away from zero."""
    return array("h", (round(amp * math.sin(2 * math.pi * freq * i / RATE + phase))
                       for i in range(n)))
