"""The DLE-shielded byte stream of a voice modem in a data state (ITU-T V.253 §4.3).

In voice receive (``AT+VRX``), transmit (``AT+VTX``) and full duplex (``AT+VTR``), audio
bytes and control codes share one stream. A byte 0x10 (DLE) starts a two-byte code:

from the modem (DCE to DTE)
    ``DLE DLE``   one 0x10 audio byte;  ``DLE SUB``: two of them (V.253 Table 13)
    ``DLE 0-9 * # A-D``  a DTMF key.  With DTMF shielding a key comes as
    ``DLE / DLE <key> DLE ~``: ``/`` when the tone starts, ``~`` when it ends, the key
    in between (reported once however often the modem repeats it)
    ``DLE b`` busy, ``DLE d`` dial tone, ``DLE l`` loop-current break, ``DLE s`` silence,
    ``DLE q`` quiet, ``DLE R`` ring, ``DLE c``/``e``/``a``/``f`` fax and data tones,
    ``DLE h``/``H`` a local handset on/off hook, ``DLE o``/``u`` over/underrun
    ``DLE X ... DLE .``  a "complex event" packet (some chips put caller ID there)
    ``DLE ETX``   end of the data state: what follows is command-mode text

to the modem (DTE to DCE): audio with every 0x10 doubled (``dle_escape``), ended by
``DLE ETX`` (play out, then OK), ``DLE CAN`` (drop buffered audio), ``DLE !`` (abort
receive), ``DLE ^`` (leave duplex); ``DLE DC4`` is ZyXEL's alone (see
``linebox.hw.modem.chipsets``).

``DleDecoder`` is pure: feed it bytes as they come, cut anywhere (a DLE at the very end
of one read waits for its code in the next), and it returns audio and events in order.
"""

from dataclasses import dataclass

DLE = 0x10
ETX = 0x03
SUB = 0x1A
CAN = 0x18
DC4 = 0x14

DTMF_KEYS = frozenset(b"0123456789*#ABCD")
SHIELD_START = ord("/")
SHIELD_END = ord("~")
PACKET_START = ord("X")
PACKET_END = ord(".")

# Single-byte event codes, named for what they mean on the line (V.253 Table 14).
EVENT_NAMES = {
    ord("b"): "busy",
    ord("d"): "dialtone",
    ord("l"): "loop_break",
    ord("L"): "loop_reversal",
    ord("s"): "silence",
    ord("q"): "quiet",
    ord("R"): "ring",
    ord("c"): "fax_calling",
    ord("e"): "data_calling",
    ord("a"): "answer_tone",
    ord("f"): "data_answer",
    ord("h"): "handset_on_hook",
    ord("H"): "handset_off_hook",
    ord("o"): "overrun",
    ord("u"): "underrun",
    ord("$"): "bong",
    ord("T"): "timing_mark",
    ord("P"): "extension_off_hook",
    ord("p"): "extension_on_hook",
}


@dataclass(frozen=True, slots=True)
class DleEvent:
    """One code out of the stream. ``kind`` is ``dtmf`` (``value`` the key), ``packet``
    (``value`` its bytes), ``end`` (DLE ETX), a name from ``EVENT_NAMES``, or ``unknown``
    (``value`` the code byte as a one-character string)."""

    kind: str
    value: str | bytes | None = None


def dle_escape(data: bytes) -> bytes:
    """Audio bytes as sent to the modem: every 0x10 doubled."""
    return data.replace(b"\x10", b"\x10\x10")


class DleDecoder:
    """Splits a modem's data-state stream into audio runs and events, in order.

    ``feed(chunk)`` returns a list whose items are ``bytes`` (audio) or ``DleEvent``.
    After ``DLE ETX`` the data state is over: ``ended`` turns True and every byte after
    it (fed then or later) collects in ``remainder``, for the command-mode reader.
    """

    def __init__(self, shielded: bool = False, shield_key: str | None = None) -> None:
        self.ended = False
        self.remainder = bytearray()
        self._dle = False          # the last byte fed was an unpaired DLE
        # Inside DLE / ... DLE ~, and the key already reported there. A new decoder (the
        # next data state) takes them over: a modem goes on repeating the key of a tone
        # that outlasts the switch from receive to transmit (IS-101, vgetty IS_101.c).
        self._shielded = shielded
        self._shield_key = shield_key
        self._packet: bytearray | None = None   # inside DLE X ... DLE .

    @property
    def pending(self) -> bool:
        """The last byte fed was a DLE whose code has not come yet."""
        return self._dle

    @property
    def shield(self) -> dict:
        """The shielded-DTMF state, for the decoder of the next data state."""
        return {"shielded": self._shielded, "shield_key": self._shield_key}

    def feed(self, chunk: bytes) -> list:
        if self.ended:
            self.remainder += chunk
            return []
        out: list = []
        run = bytearray()
        i, n = 0, len(chunk)
        while i < n:
            if not self._dle:
                j = chunk.find(DLE, i)
                stop = n if j < 0 else j
                self._data(chunk[i:stop], run)
                if j < 0:
                    break
                self._dle = True
                i = j + 1
                continue
            self._dle = False
            code = chunk[i]
            i += 1
            if code == DLE:
                self._data(b"\x10", run)
            elif code == SUB:
                self._data(b"\x10\x10", run)
            else:
                event = self._code(code)
                if event is not None:
                    if run:
                        out.append(bytes(run))
                        run.clear()
                    out.append(event)
                    if event.kind == "end":
                        self.ended = True
                        self.remainder += chunk[i:]
                        return out
        if run:
            out.append(bytes(run))
        return out

    def _data(self, data: bytes, run: bytearray) -> None:
        if self._packet is not None:
            self._packet += data
        else:
            run += data

    def _code(self, code: int) -> DleEvent | None:
        if code == ETX:
            return DleEvent("end")
        if code == PACKET_START:
            self._packet = bytearray()
            return None
        if code == PACKET_END:
            packet, self._packet = self._packet, None
            return None if packet is None else DleEvent("packet", bytes(packet))
        if code == SHIELD_START:
            self._shielded, self._shield_key = True, None
            return None
        if code == SHIELD_END:
            self._shielded, self._shield_key = False, None
            return None
        if code in DTMF_KEYS:
            key = chr(code)
            if self._shielded:
                # Some chips repeat the key while the tone lasts: one press, one key.
                if self._shield_key is not None:
                    return None
                self._shield_key = key
            return DleEvent("dtmf", key)
        name = EVENT_NAMES.get(code)
        if name is not None:
            return DleEvent(name)
        return DleEvent("unknown", chr(code))
