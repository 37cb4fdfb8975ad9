"""G.711 mu-law and A-law, bit-exact with the ITU-T G.191 reference (g711.c).

Encoding looks each 16-bit sample up in a 65,536-entry table; decoding maps each code
through a 256-entry table. Transcoding between the laws is ``bytes.translate``.
"""

from array import array


def ulaw_compress(x: int) -> int:
    """One 16-bit linear sample to a mu-law code (G.191 ``ulaw_compress``)."""
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    if absno > 0x1FFF:
        absno = 0x1FFF
    i = absno >> 6
    segno = 1
    while i:
        segno += 1
        i >>= 1
    high = 0x8 - segno
    low = 0xF - ((absno >> segno) & 0xF)
    out = (high << 4) | low
    if x >= 0:
        out |= 0x80
    return out


def ulaw_expand(code: int) -> int:
    """One mu-law code to a 16-bit linear sample (G.191 ``ulaw_expand``)."""
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x7
    segment = exponent + 1
    mantissa &= 0xF
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def alaw_compress(x: int) -> int:
    """One 16-bit linear sample to an A-law code (G.191 ``alaw_compress``)."""
    ix = ((~x) >> 4) if x < 0 else (x >> 4)
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x80
    return ix ^ 0x55


def alaw_expand(code: int) -> int:
    """One A-law code to a 16-bit linear sample (G.191 ``alaw_expand``)."""
    ix = (code ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0xF
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x8
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


def _encode_table(fn) -> list[int]:
    # Indexed by the signed sample itself: Python's negative indexes reach the top half.
    return [fn(x) for x in range(32768)] + [fn(x) for x in range(-32768, 0)]


_ULAW_ENC = _encode_table(ulaw_compress)
_ALAW_ENC = _encode_table(alaw_compress)
_ULAW_DEC = [ulaw_expand(c) for c in range(256)]
_ALAW_DEC = [alaw_expand(c) for c in range(256)]
_ULAW_TO_ALAW = bytes(alaw_compress(v) for v in _ULAW_DEC)
_ALAW_TO_ULAW = bytes(ulaw_compress(v) for v in _ALAW_DEC)

# The digital milliwatt: a 1 kHz sine at 0 dBm0, eight codes repeated.
ULAW_MILLIWATT = bytes([0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E])
ALAW_MILLIWATT = bytes([0x34, 0x21, 0x21, 0x34, 0xB4, 0xA1, 0xA1, 0xB4])


def ulaw_encode(samples) -> bytes:
    """16-bit samples (any iterable of ints in range) to mu-law bytes."""
    return bytes(map(_ULAW_ENC.__getitem__, samples))


def alaw_encode(samples) -> bytes:
    """16-bit samples to A-law bytes."""
    return bytes(map(_ALAW_ENC.__getitem__, samples))


def ulaw_decode(data: bytes) -> array:
    """mu-law bytes to 16-bit samples."""
    return array("h", map(_ULAW_DEC.__getitem__, data))


def alaw_decode(data: bytes) -> array:
    """A-law bytes to 16-bit samples."""
    return array("h", map(_ALAW_DEC.__getitem__, data))


def ulaw_to_alaw(data: bytes) -> bytes:
    return data.translate(_ULAW_TO_ALAW)


def alaw_to_ulaw(data: bytes) -> bytes:
    return data.translate(_ALAW_TO_ULAW)


def ulaw_roundtrip(samples) -> array:
    """Samples as heard after a mu-law channel."""
    return ulaw_decode(ulaw_encode(samples))


def alaw_roundtrip(samples) -> array:
    """Samples as heard after an A-law channel."""
    return alaw_decode(alaw_encode(samples))
