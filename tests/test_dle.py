"""The DLE stream codec: every code, every cut between reads, random streams vs a reference."""

import random

import pytest

from linebox.hw.dle import EVENT_NAMES, DleDecoder, DleEvent, dle_escape

DLE = b"\x10"


def decode_all(chunks) -> tuple[list, bytes]:
    """Feed chunks; return the items with adjacent audio runs merged, and the remainder."""
    dec = DleDecoder()
    items: list = []
    for chunk in chunks:
        for item in dec.feed(chunk):
            if isinstance(item, bytes) and items and isinstance(items[-1], bytes):
                items[-1] += item
            else:
                items.append(item)
    return items, bytes(dec.remainder)


def reference(stream: bytes) -> tuple[list, bytes]:
    """A deliberately plain byte-by-byte reading of V.253's rules, for comparison."""
    items: list = []
    audio = b""
    packet = None
    shield = None            # None: outside; "": inside, no key yet; "5": key reported
    i = 0

    def emit(ev):
        nonlocal audio
        if audio:
            items.append(audio)
            audio = b""
        items.append(ev)

    while i < len(stream):
        b = stream[i]
        if b != 0x10 or i + 1 >= len(stream):
            if b == 0x10:        # a lone DLE at the very end: waits for more
                break
            if packet is not None:
                packet += bytes([b])
            else:
                audio += bytes([b])
            i += 1
            continue
        code = stream[i + 1]
        i += 2
        c = chr(code)
        if code in (0x10, 0x1A):
            data = b"\x10" * (1 if code == 0x10 else 2)
            if packet is not None:
                packet += data
            else:
                audio += data
        elif code == 0x03:
            emit(DleEvent("end"))
            if audio:
                items.append(audio)
            return items, stream[i:]
        elif c == "X":
            packet = b""
        elif c == ".":
            if packet is not None:
                emit(DleEvent("packet", packet))
            packet = None
        elif c == "/":
            shield = ""
        elif c == "~":
            shield = None
        elif c in "0123456789*#ABCD":
            if shield is None:
                emit(DleEvent("dtmf", c))
            elif shield == "":
                shield = c
                emit(DleEvent("dtmf", c))
        elif code in EVENT_NAMES:
            emit(DleEvent(EVENT_NAMES[code]))
        else:
            emit(DleEvent("unknown", c))
    if audio:
        items.append(audio)
    return items, b""


def test_escape_doubles_every_dle_and_nothing_else():
    assert dle_escape(b"") == b""
    assert dle_escape(b"\x10") == b"\x10\x10"
    assert dle_escape(b"a\x10\x10b\x03") == b"a\x10\x10\x10\x10b\x03"
    data = bytes(range(256))
    assert dle_escape(data) == data[:16] + b"\x10\x10" + data[17:]


def test_escaped_audio_decodes_to_itself_for_every_byte_value():
    data = bytes(range(256)) * 3
    assert decode_all([dle_escape(data)]) == ([data], b"")


def test_dle_sub_is_two_dle_data_bytes():
    assert decode_all([b"a\x10\x1ab"]) == ([b"a\x10\x10b"], b"")


@pytest.mark.parametrize("key", list("0123456789*#ABCD"))
def test_unshielded_key_is_one_dtmf_event_between_audio(key):
    stream = b"ab" + DLE + key.encode() + b"cd"
    assert decode_all([stream]) == ([b"ab", DleEvent("dtmf", key), b"cd"], b"")


@pytest.mark.parametrize("key", list("0123456789*#ABCD"))
def test_shielded_key_is_reported_once_however_often_repeated(key):
    k = DLE + key.encode()
    stream = b"a" + DLE + b"/" + k + b"b" + k + b"c" + k + DLE + b"~" + b"d"
    assert decode_all([stream]) == ([b"a", DleEvent("dtmf", key), b"bcd"], b"")


def test_two_shielded_keys_in_a_row_are_two_presses():
    stream = DLE + b"/" + DLE + b"1" + DLE + b"~" + DLE + b"/" + DLE + b"1" + DLE + b"~"
    assert decode_all([stream])[0] == [DleEvent("dtmf", "1"), DleEvent("dtmf", "1")]


@pytest.mark.parametrize("code,name", sorted(EVENT_NAMES.items()))
def test_every_named_code_is_its_event(code, name):
    stream = b"x" + DLE + bytes([code]) + b"y"
    assert decode_all([stream]) == ([b"x", DleEvent(name), b"y"], b"")


def test_every_other_code_is_unknown_and_consumes_only_itself():
    special = {0x10, 0x1A, 0x03, *map(ord, "X./~0123456789*#ABCD"), *EVENT_NAMES}
    for code in range(256):
        if code in special:
            continue
        stream = b"x" + DLE + bytes([code]) + b"y"
        assert decode_all([stream]) == ([b"x", DleEvent("unknown", chr(code)), b"y"], b""), code


def test_end_of_data_hands_the_rest_to_command_mode():
    dec = DleDecoder()
    assert dec.feed(b"ab\x10\x03\r\nOK\r\n") == [b"ab", DleEvent("end")]
    assert dec.ended
    assert dec.feed(b"more") == []
    assert bytes(dec.remainder) == b"\r\nOK\r\nmore"


def test_packet_bytes_are_not_audio():
    stream = b"a" + DLE + b"X" + b"NMBR=5\x10\x10" + DLE + b"." + b"b"
    assert decode_all([stream]) == ([b"a", DleEvent("packet", b"NMBR=5\x10"), b"b"], b"")


def test_dle_at_the_end_of_a_read_waits_for_its_code():
    dec = DleDecoder()
    assert dec.feed(b"ab\x10") == [b"ab"]
    assert dec.feed(b"5cd") == [DleEvent("dtmf", "5"), b"cd"]
    assert dec.feed(b"\x10") == []
    assert dec.feed(b"\x10") == [b"\x10"]


SAMPLE_STREAM = (b"\x00\x7f" + DLE + DLE + b"\x80" + DLE + b"/" + DLE + b"7" + b"\x10\x10"
                 + DLE + b"~" + DLE + b"b" + DLE + b"\x1a" + DLE + b"X" + b"p" + DLE + b"."
                 + DLE + b"5" + DLE + b"\xfe" + b"z" + DLE + b"\x03" + b"\r\nOK\r\n")


def test_sample_stream_matches_the_reference():
    items, rest = decode_all([SAMPLE_STREAM])
    assert items == [b"\x00\x7f\x10\x80", DleEvent("dtmf", "7"), b"\x10", DleEvent("busy"),
                     b"\x10\x10", DleEvent("packet", b"p"), DleEvent("dtmf", "5"),
                     DleEvent("unknown", "\xfe"), b"z", DleEvent("end")]
    assert rest == b"\r\nOK\r\n"
    assert (items, rest) == reference(SAMPLE_STREAM)


def test_every_single_cut_gives_the_same_result():
    whole = decode_all([SAMPLE_STREAM])
    for cut in range(len(SAMPLE_STREAM) + 1):
        assert decode_all([SAMPLE_STREAM[:cut], SAMPLE_STREAM[cut:]]) == whole, cut


def test_every_byte_fed_alone_gives_the_same_result():
    chunks = [SAMPLE_STREAM[i:i + 1] for i in range(len(SAMPLE_STREAM))]
    assert decode_all(chunks) == decode_all([SAMPLE_STREAM])


def test_random_streams_in_random_chunks_match_the_reference():
    rng = random.Random(4)
    alphabet = [b"\x10", b"a", b"\x00", b"\xff", b"\x1a", b"/", b"~", b"5", b"b", b"X",
                b".", b"\x03", b"q", b"\x10\x10"]
    for _ in range(2000):
        stream = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        cuts = sorted(rng.sample(range(len(stream) + 1), k=min(3, len(stream) + 1)))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        got = decode_all(chunks)
        expected = reference(stream)
        assert got == expected, stream
