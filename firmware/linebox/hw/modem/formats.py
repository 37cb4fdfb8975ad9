"""Voice audio formats: the ``AT+VSM=?`` list in every layout seen, and the codecs.

Layouts of one ``AT+VSM=?`` entry (``<cml>,<cmid>,<bps>,<tm>,<vsr>,<sds>,<sel>``, V.253):

- with parentheses, as the USRobotics 56K Softmodem Command Reference (p. 142) prints it:
  ``1,"UNSIGNED PCM",8,0,(7200,8000),(0),(0)`` ... ``133,"LINEAR",16,0,(7200,8000),(0),(0)``
- bare fields, no parentheses, one format a line, as Conexant answers: the CX81801/CX06833
  reference (+VSM example ``1,"UNSIGNED PCM",8,0,8000,0,0``) and ncidd logs from
  CX93001 modems quoted in the NCID documentation
  (``0,"SIGNED PCM",8,0,8000,0,0`` ... ``131,"Mu-Law",8,0,8000,0,0`` ...
  ``133,"14 bit PCM",14,0,8000,0,0``)
- the short form of older USR firmware, rates only: ``128,"8-BIT LINEAR",(7200,8000,11025)``

A format is chosen by its *name* (16-bit linear, then G.711 mu-law, A-law, 8-bit linear):
the codes differ between chipsets (131 is mu-law on a CX93001 and on a USR, 4 on others).
"""

import re
import sys
from array import array
from dataclasses import dataclass

from linebox import RATE
from linebox.dsp import g711
from linebox.wavfile import encode_samples

FORMAT_PREFERENCE = ("lin16", "ulaw", "alaw", "lin8u", "lin8s")
BYTES_PER_SAMPLE = {"lin16": 2, "ulaw": 1, "alaw": 1, "lin8u": 1, "lin8s": 1}
SILENCE_BYTE = {"ulaw": 0xFF, "alaw": 0xD5, "lin8u": 0x80, "lin8s": 0x00, "lin16": 0x00}
_VSM_ENTRY = re.compile(r'^\s*(?:\+\s*VSM:\s*)?(\d+)\s*,\s*"([^"]*)"\s*(?:,(.*))?$')


@dataclass(frozen=True, slots=True)
class VsmEntry:
    """One compression method from ``AT+VSM=?``."""

    code: int
    name: str
    bits: int | None
    rates: tuple[tuple[int, int], ...]     # (low, high) ranges; a single rate is (r, r)
    kind: str | None                       # one of FORMAT_PREFERENCE, or None: unusable

    def supports(self, rate: int) -> bool:
        return any(lo <= rate <= hi for lo, hi in self.rates)


def classify_format(name: str, bits: int | None = None) -> str | None:
    """What a method's name says it is; None for what the driver cannot decode (ADPCM,
    Conexant's "14 bit PCM" ...)."""
    n = name.upper().replace(" ", "")
    if any(s in n for s in ("ADPCM", "CELP", "GSM", "CVSD", "ADM", "RESERVED")):
        return None
    if any(s in n for s in ("ULAW", "U-LAW", "MU-LAW", "G.711U", "G711U", "µ-LAW")):
        return "ulaw"
    if any(s in n for s in ("ALAW", "A-LAW", "G.711A", "G711A")):
        return "alaw"
    if "LINEAR" in n or "PCM" in n:
        if "16" in n or bits == 16:
            return "lin16"
        if bits not in (None, 8) and "8" not in n:
            return None
        if "UNSIGNED" in n:
            return "lin8u"
        if "SIGNED" in n:
            return "lin8s"
        return "lin8u"      # USR and Rockwell "8-BIT LINEAR" is unsigned (vgetty)
    return None


def _fields(text: str) -> list[str]:
    """Top-level comma-separated fields; a parenthesised group is one field."""
    out, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if cur or out:
        out.append("".join(cur).strip())
    return out


def _rates(text: str) -> tuple[tuple[int, int], ...]:
    out = []
    for part in text.strip().strip("()").split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            out.append((int(m[1]), int(m[2])))
        elif part.isdigit():
            out.append((int(part), int(part)))
    return tuple(out)


def parse_vsm_list(lines) -> list[VsmEntry]:
    """The entries of an ``AT+VSM=?`` answer, in every layout the module docstring lists."""
    entries = []
    for line in lines:
        m = _VSM_ENTRY.match(line)
        if not m:
            continue
        fields = _fields(m[3] or "")
        bits = None
        rates: tuple = ()
        if fields and fields[0].startswith("("):          # short form: rates only
            rates = _rates(fields[0])
        elif fields:
            bits = int(fields[0]) if fields[0].isdigit() else None
            if len(fields) >= 3:                           # bps, tm, vsr, ...
                rates = _rates(fields[2])
        entries.append(VsmEntry(int(m[1]), m[2], bits, rates, classify_format(m[2], bits)))
    return entries


def choose_format(entries, rate: int = RATE) -> VsmEntry | None:
    """The best method the driver can use at ``rate`` (FORMAT_PREFERENCE order)."""
    usable = [e for e in entries if e.kind is not None and e.supports(rate)]
    usable.sort(key=lambda e: FORMAT_PREFERENCE.index(e.kind))
    return usable[0] if usable else None


_U8_DEC = [(b - 128) << 8 for b in range(256)]
_S8_DEC = [(b - 256 if b >= 128 else b) << 8 for b in range(256)]
_FLIP_TOP_BIT = bytes(b ^ 0x80 for b in range(256))
_BIG_ENDIAN = sys.byteorder == "big"


def decode_audio(kind: str, data: bytes) -> array:
    """Modem bytes in format ``kind`` to signed 16-bit samples."""
    if kind == "lin16":
        out = array("h")
        out.frombytes(data)
        if _BIG_ENDIAN:
            out.byteswap()
        return out
    if kind == "ulaw":
        return g711.ulaw_decode(data)
    if kind == "alaw":
        return g711.alaw_decode(data)
    table = _U8_DEC if kind == "lin8u" else _S8_DEC
    return array("h", map(table.__getitem__, data))


def encode_audio(kind: str, samples: array) -> bytes:
    """Signed 16-bit samples to modem bytes in format ``kind``."""
    if kind in ("ulaw", "alaw"):
        return encode_samples(samples, kind)
    raw = encode_samples(samples, "pcm16")     # little-endian on any host
    if kind == "lin16":
        return raw
    high = raw[1::2]           # the top byte of each little-endian sample
    return high.translate(_FLIP_TOP_BIT) if kind == "lin8u" else high
