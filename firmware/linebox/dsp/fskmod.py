"""Caller-ID messages and their FSK bursts, as the simulated exchange sends them.

Message layout (Telcordia GR-30-CORE, ETSI EN 300 659-3): message type, message length,
the body, then a checksum byte that makes the sum of all bytes 0 modulo 256.

* SDMF (type 0x04): ``MMDDHHMM`` then the number, or a single ``O`` (unavailable) or
  ``P`` (private) in place of the number.
* MDMF (type 0x80): parameters, each type, length, value: 0x01 date and time, 0x02
  calling number, 0x04 reason for absence of the number, 0x07 calling name, 0x08 reason
  for absence of the name.

The burst: channel seizure (alternating 0 and 1, starting with 0), a run of mark, then
each byte as an asynchronous 8N1 character (start bit space, LSB first, stop bit mark),
then a few bits of mark. Phase-continuous FSK at 1200 baud, bit edges placed at their
exact (fractional) sample positions.
"""

import math
from array import array

from linebox import RATE
from linebox.dsp.callerid import (
    MDMF,
    P_DATETIME,
    P_NAME,
    P_NAME_ABSENT,
    P_NUMBER,
    P_NUMBER_ABSENT,
    SDMF,
)
from linebox.dsp.fsk import get_standard
from linebox.dsp.levels import amplitude

TRAILING_MARK_BITS = 4


def checksum(data: bytes) -> int:
    """The byte that makes ``data`` plus itself sum to 0 modulo 256."""
    return -sum(data) & 0xFF


def _frame(mtype: int, body: bytes) -> bytes:
    if len(body) > 255:
        raise ValueError("caller-ID message body longer than 255 bytes")
    head = bytes((mtype, len(body))) + body
    return head + bytes((checksum(head),))


def _absence(code: str | None, what: str) -> bytes:
    if code not in ("O", "P"):
        raise ValueError(f"{what} must be 'O' (unavailable) or 'P' (private), not {code!r}")
    return code.encode("ascii")


def _datetime(value: str) -> bytes:
    if len(value) != 8 or not value.isdigit():
        raise ValueError(f"datetime must be 8 digits MMDDHHMM, not {value!r}")
    return value.encode("ascii")


def encode_sdmf(number: str | None, datetime: str = "01010000",
                number_absent: str | None = None) -> bytes:
    """A complete SDMF message: the number, or ``number_absent`` ('O'/'P') without one."""
    if (number is None) == (number_absent is None):
        raise ValueError("give exactly one of number and number_absent")
    field = number.encode("ascii") if number is not None else _absence(number_absent, "number_absent")
    return _frame(SDMF, _datetime(datetime) + field)


def encode_mdmf(number: str | None = None, name: str | None = None, datetime: str | None = None,
                number_absent: str | None = None, name_absent: str | None = None) -> bytes:
    """A complete MDMF message with the parameters given, in the order GR-30 lists them."""
    params = []
    if datetime is not None:
        params.append((P_DATETIME, _datetime(datetime)))
    if number is not None:
        params.append((P_NUMBER, number.encode("ascii")))
    if number_absent is not None:
        params.append((P_NUMBER_ABSENT, _absence(number_absent, "number_absent")))
    if name is not None:
        params.append((P_NAME, name.encode("ascii")))
    if name_absent is not None:
        params.append((P_NAME_ABSENT, _absence(name_absent, "name_absent")))
    body = b""
    for ptype, value in params:
        if len(value) > 255:
            raise ValueError(f"MDMF parameter 0x{ptype:02x} longer than 255 bytes")
        body += bytes((ptype, len(value))) + value
    return _frame(MDMF, body)


def burst_bits(message: bytes, seizure_bits: int = 300, mark_bits: int = 180,
               stop_bits: int = 1) -> list[int]:
    """The bits of a burst: seizure, mark, each byte framed 8N1 (``stop_bits`` of mark)."""
    bits = [i & 1 for i in range(seizure_bits)]
    bits += [1] * mark_bits
    for byte in message:
        bits.append(0)
        bits += [(byte >> k) & 1 for k in range(8)]
        bits += [1] * stop_bits
    bits += [1] * TRAILING_MARK_BITS
    return bits


def fsk_modulate(bits, mark: float, space: float, level_dbm0: float = -13.0,
                 baud: float = 1200.0, rate: int = RATE) -> array:
    """Phase-continuous FSK of ``bits`` (1 = mark), each sine at ``level_dbm0``."""
    a = amplitude(level_dbm0)
    step = {1: 2 * math.pi * mark / rate, 0: 2 * math.pi * space / rate}
    n = int(round(len(bits) * rate / baud))
    out = array("h", bytes(2 * n))
    phase = 0.0
    spb = rate / baud
    for i in range(n):
        phase += step[bits[min(int(i / spb), len(bits) - 1)]]
        out[i] = int(round(a * math.sin(phase)))
    return out


def callerid_burst(standard: str, message: bytes, level_dbm0: float = -13.0,
                   seizure_bits: int = 300, mark_bits: int = 180,
                   freq_error: float = 0.0) -> array:
    """The 8 kHz samples of a caller-ID burst carrying ``message`` (from encode_sdmf/mdmf).

    ``standard`` is "bell202" or "v23"; ``freq_error`` shifts both tones by that fraction
    (0.01 = +1 %).
    """
    std = get_standard(standard)
    k = 1.0 + freq_error
    return fsk_modulate(burst_bits(message, seizure_bits, mark_bits),
                        std.mark * k, std.space * k, level_dbm0, std.baud)
