"""The voice-modem line driver, through real pyserial on a pty, against USR and Conexant
emulators (tests/modem_emulator.py)."""

import time
from array import array

import pytest

from linebox import FRAME
from linebox.dsp import g711
from linebox.hw.line import CallerIdReceived, Fault, FaultCleared, HungUp, KeyPressed, RingSeen
from linebox.hw.modem import (
    SWITCH_BACK_FRAMES,
    Backoff,
    ModemError,
    ModemLine,
    callerid_fact,
    choose_format,
    classify_format,
    decode_audio,
    detect_chipset,
    encode_audio,
    parse_vsm_list,
)
from modem_emulator import ModemEmulator, decode, encode, sine

BOTH = ["usr", "conexant"]


@pytest.fixture
def make(tmp_path):
    """make(personality, **emulator_kw) -> (emulator, line), both closed after the test."""
    made = []

    def _make(personality, line_kw=None, **emu_kw):
        emu = ModemEmulator(personality, tmp_path / f"ttyModem{len(made)}", **emu_kw).__enter__()
        kw = {"rtscts": False, "command_timeout": 0.5, "reset_timeout": 0.5, "backoff": (0.05, 0.4),
              "callerid_quiet": 0.15, "keepalive": 60.0}
        kw.update(line_kw or {})
        line = ModemLine(1, emu.path, "us", **kw)
        made.append((emu, line))
        return emu, line

    yield _make
    for emu, line in made:
        line.close()
        emu.__exit__(None, None, None)


def tick_until(line, pred, timeout=5.0, out=None):
    """Tick (with ``out()`` as the frame to play, if given) until ``pred(ticks)``."""
    ticks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ticks.append(line.tick(out() if out else None))
        if pred(ticks):
            return ticks
    raise AssertionError(f"not within {timeout} s; facts: {facts(ticks)}")


def _as_tuple(fact) -> tuple:
    """A typed line event as a short tuple (kind, value), for readable assertions."""
    if isinstance(fact, RingSeen):
        return ("ring",)
    if isinstance(fact, KeyPressed):
        return ("dtmf", fact.digit)
    if isinstance(fact, HungUp):
        return ("hangup", fact.cause)
    if isinstance(fact, Fault):
        return ("fault", fact.reason)
    if isinstance(fact, FaultCleared):
        return ("fault_cleared",)
    if isinstance(fact, CallerIdReceived):
        return ("callerid", fact.callerid.fields())
    raise AssertionError(f"not a line event: {fact!r}")


def facts(ticks, kind=None):
    return [f for t in ticks for f in map(_as_tuple, t.events) if kind is None or f[0] == kind]


def has(kind, n=1):
    return lambda ticks: len(facts(ticks, kind)) >= n


def connected(line):
    line.tick()
    assert line.state == "idle", facts([])
    return line


def answered(emu, line):
    connected(line)
    line.set_hook(True)
    assert line.state in ("rx", "duplex")
    return line


def audio_of(ticks):
    out = array("h")
    for t in ticks:
        out.extend(t.audio)
    return out


def first_nonzero(samples):
    return next(i for i, x in enumerate(samples) if x)


def heard_after_onset(samples) -> int:
    """Samples from the first non-zero one on (0 before any)."""
    return len(samples) - first_nonzero(samples) if any(samples) else 0


# ---------------------------------------------------------------- pure parts


def test_vsm_list_parsed_in_both_layouts():
    entries = parse_vsm_list(['128,"8-BIT LINEAR",(7200,8000,11025)',
                              '4,"G.711U",8,0,(8000),(0),(0)',
                              '140,"16-BIT LINEAR",16,0,(7200-11025),(0),(0)', "OK"])
    assert [(e.code, e.name, e.bits, e.kind) for e in entries] == [
        (128, "8-BIT LINEAR", None, "lin8u"), (4, "G.711U", 8, "ulaw"),
        (140, "16-BIT LINEAR", 16, "lin16")]
    assert [e.supports(8000) for e in entries] == [True, True, True]
    assert entries[1].supports(11025) is False


@pytest.mark.parametrize("name,bits,kind", [
    ("16-BIT LINEAR", None, "lin16"), ("SIGNED PCM", 16, "lin16"), ("G.711U", 8, "ulaw"),
    ("8-BIT ULAW", None, "ulaw"), ("G.711A", 8, "alaw"), ("8-BIT LINEAR", None, "lin8u"),
    ("UNSIGNED PCM", 8, "lin8u"), ("SIGNED PCM", 8, "lin8s"), ("IMA ADPCM", 4, None),
    ("2-BIT ADPCM", None, None), ("CELP", None, None),
])
def test_format_classified_by_name(name, bits, kind):
    assert classify_format(name, bits) == kind


@pytest.mark.parametrize("lines,code", [
    (['0,"UNSIGNED PCM",8,0,(8000),(0),(0)', '4,"G.711U",8,0,(8000),(0),(0)',
      '7,"16-BIT LINEAR",16,0,(8000),(0),(0)'], 7),
    (['128,"8-BIT LINEAR",(8000)', '131,"8-BIT ULAW",(8000)', '132,"IMA ADPCM",(8000)'], 131),
    (['128,"8-BIT LINEAR",(7200,8000)', '132,"IMA ADPCM",(8000)'], 128),
    (['129,"16-BIT LINEAR",(11025)', '128,"8-BIT LINEAR",(8000)'], 128),
])
def test_format_choice_prefers_16_bit_then_ulaw_then_8_bit_at_8000(lines, code):
    assert choose_format(parse_vsm_list(lines)).code == code


def test_no_usable_format_is_none():
    assert choose_format(parse_vsm_list(['132,"IMA ADPCM",(8000)'])) is None


@pytest.mark.parametrize("kind", ["lin16", "ulaw", "alaw", "lin8u", "lin8s"])
def test_driver_codecs_agree_with_independent_ones(kind):
    samples = array("h", range(-32768, 32768, 97))
    data = encode(kind, samples)
    assert list(decode_audio(kind, data)) == decode(kind, data)
    back = decode(kind, encode_audio(kind, samples))
    if kind == "lin16":
        assert back == list(samples)
    elif kind in ("lin8u", "lin8s"):
        assert back == [x >> 8 << 8 for x in samples]
    else:
        assert all(abs(b - x) <= abs(x) // 16 + 16 for b, x in zip(back, samples, strict=True))


def test_chipset_detected_from_identification():
    assert detect_chipset("5601", "U.S. Robotics 56K FAX USB V1.2.23") == "usr"
    assert detect_chipset("56000", "CX93001-EIS_V0.2002-V92") == "conexant"
    assert detect_chipset("ZyXEL U-1496") == "unknown"


def test_backoff_doubles_to_the_limit_and_resets():
    b = Backoff(1.0, 60.0)
    assert [b.next() for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    b.reset()
    assert b.next() == 1


def mdmf(number: str, name: str) -> bytes:
    body = bytes([0x02, len(number)]) + number.encode() + bytes([0x07, len(name)]) + name.encode()
    msg = bytes([0x80, len(body)]) + body
    return msg + bytes([-sum(msg) & 0xFF])


def test_callerid_fact_from_lines():
    assert callerid_fact({"NMBR": "5551234567", "NAME": "JOHN DOE"}).fields() == {
        "number": "5551234567", "name": "JOHN DOE", "number_absent": None, "name_absent": None}
    assert callerid_fact({"NMBR": "P", "NAME": "O"}).fields() == {
        "number": None, "name": None, "number_absent": "P", "name_absent": "O"}
    assert callerid_fact({"MESG": mdmf("5550001", "ACME").hex()}).fields() == {
        "number": "5550001", "name": "ACME", "number_absent": None, "name_absent": None}
    assert callerid_fact({"MESG": "80FF00"}).number is None     # bad checksum: ignored


# ---------------------------------------------------------------- set-up


def test_usr_identified_and_set_up_for_16_bit_full_duplex(make):
    emu, line = make("usr")
    ident = connected(line).identify()
    assert ident["chipset"] == "usr"
    assert ident["manufacturer"] == "U.S. Robotics"
    assert (ident["format"], ident["format_code"], ident["duplex"]) == \
        ("16-BIT LINEAR", 129, "full")
    assert ident["callerid"] is True
    cmds = emu.commands
    assert cmds[:2] == ["ATZ", "ATE0"]
    order = [cmds.index(c) for c in ("ATI", "ATI3", "AT+FCLASS=8", "AT+VCID=1", "AT+VSM=?",
                                     "AT+VSM=129,8000", "AT+VTR=?")]
    assert order == sorted(order)


def test_conexant_identified_and_set_up_for_ulaw_half_duplex(make):
    emu, line = make("conexant")
    ident = connected(line).identify()
    assert ident["chipset"] == "conexant"
    assert (ident["format"], ident["format_code"], ident["duplex"]) == ("G.711U", 4, "half")
    assert "AT+VSM=4,8000" in emu.commands


@pytest.mark.parametrize("personality,vsm,code,kind", [
    ("usr", ['128,"8-BIT LINEAR",(7200,8000,11025)', '131,"8-BIT ULAW",(8000)'], 131, "ulaw"),
    ("usr", ['128,"8-BIT LINEAR",(7200,8000,11025)', '132,"IMA ADPCM",(8000)'], 128, "lin8u"),
    ("conexant", ['1,"UNSIGNED PCM",8,0,(8000),(0),(0)', '129,"IMA ADPCM",4,0,(8000),(0),(0)'],
     1, "lin8u"),
])
def test_format_chosen_from_what_the_modem_lists(make, personality, vsm, code, kind):
    emu, line = make(personality, vsm=vsm)
    ident = connected(line).identify()
    assert (ident["format_code"], ident["format_kind"]) == (code, kind)
    assert f"AT+VSM={code},8000" in emu.commands


def test_modem_without_usable_format_is_a_fault_naming_why(make):
    emu, line = make("usr", vsm=['132,"IMA ADPCM",(8000)'])
    ticks = [line.tick()]
    assert facts(ticks) == [("fault", f"modem on {emu.path}: no usable audio format at 8000 Hz "
                             "(offers IMA ADPCM; needs 16-bit linear, G.711 or 8-bit linear)")]
    with pytest.raises(ModemError):
        line.identify()


# ---------------------------------------------------------------- on-hook


@pytest.mark.parametrize("personality", BOTH)
def test_each_ring_is_one_ring_fact_with_the_line_ringing(make, personality):
    emu, line = make(personality)
    connected(line)
    emu.ring(3, period=0.3)
    ticks = tick_until(line, has("ring", 3))
    assert facts(ticks) == [("ring",)] * 3
    assert all(t.ringing for t in ticks if t.events)
    assert all(len(t.audio) == FRAME and not any(t.audio) for t in ticks)   # on-hook: silence


@pytest.mark.parametrize("personality", BOTH)
@pytest.mark.parametrize("callerid,expected", [
    ({"date": "0321", "time": "1405", "number": "5551234567", "name": "JOHN DOE"},
     {"number": "5551234567", "name": "JOHN DOE", "number_absent": None, "name_absent": None}),
    ({"date": "0321", "time": "1405", "number": "P", "name": "P"},
     {"number": None, "name": None, "number_absent": "P", "name_absent": "P"}),
    ({"number": "O", "name": "O"},
     {"number": None, "name": None, "number_absent": "O", "name_absent": "O"}),
    ({"mesg": mdmf("5559876", "ACME CORP")},
     {"number": "5559876", "name": "ACME CORP", "number_absent": None, "name_absent": None}),
])
def test_callerid_between_rings_is_one_fact(make, personality, callerid, expected):
    emu, line = make(personality)
    connected(line)
    emu.ring(2, callerid=callerid, period=0.6)
    ticks = tick_until(line, has("ring", 2))
    assert [f[0] for f in facts(ticks)] == ["ring", "callerid", "ring"]
    assert facts(ticks, "callerid") == [("callerid", expected)]


def test_callerid_completed_by_the_next_ring_when_no_quiet_came_first(make):
    emu, line = make("conexant", line_kw={"callerid_quiet": 30.0})
    connected(line)
    emu.ring(2, callerid={"number": "5551234567", "name": "JOHN DOE"}, period=0.4)
    ticks = tick_until(line, has("ring", 2))
    assert [f[0] for f in facts(ticks)] == ["ring", "callerid", "ring"]


# ---------------------------------------------------------------- answer and receive


@pytest.mark.parametrize("personality,start", [("usr", "AT+VTR"), ("conexant", "AT+VRX")])
def test_answer_goes_off_hook_then_starts_receiving(make, personality, start):
    emu, line = make(personality)
    connected(line)
    before = len(emu.commands)
    line.set_hook(True)
    assert emu.commands[before:] == ["AT+VLS=1", start]
    assert emu.mode == start[3:].lower()


@pytest.mark.parametrize("personality,vsm", [
    ("usr", None),                                                   # 16-bit linear
    ("conexant", None),                                              # mu-law
    ("usr", ['128,"8-BIT LINEAR",(8000)']),                          # 8-bit unsigned
    ("conexant", ['5,"G.711A",8,0,(8000),(0),(0)']),                 # A-law
])
def test_received_sine_arrives_as_the_codec_delivers_it(make, personality, vsm):
    emu, line = make(personality, vsm=vsm)
    answered(emu, line)
    tone = sine(800)
    emu.feed_audio(tone)
    ticks = tick_until(line, lambda ts: heard_after_onset(audio_of(ts)) >= len(tone))
    got = audio_of(ticks)
    start = first_nonzero(got)
    expected = decode(emu.kind, encode(emu.kind, tone))
    assert list(got[start:start + len(tone)]) == expected
    assert not any(got[:start])
    assert facts(ticks) == []


def test_dle_bytes_inside_audio_are_audio(make):
    emu, line = make("usr")                     # 16-bit: 0x1010 is two DLE bytes
    answered(emu, line)
    samples = [0x1010, 0x10, 0x1000, -0x10F0, 0x1010, 1]
    emu.feed_audio(samples)
    ticks = tick_until(line, lambda ts: 1 in audio_of(ts))
    got = audio_of(ticks)
    start = first_nonzero(got)
    assert list(got[start:start + len(samples)]) == samples


@pytest.mark.parametrize("personality", BOTH)
@pytest.mark.parametrize("shielded", [False, True])
def test_keys_reported_by_the_modem_are_dtmf_facts(make, personality, shielded):
    emu, line = make(personality)
    answered(emu, line)
    for key in "5#A":
        emu.press_dtmf(key, shielded=shielded)
    ticks = tick_until(line, has("dtmf", 3))
    ticks += [line.tick() for _ in range(5)]
    assert facts(ticks) == [("dtmf", "5"), ("dtmf", "#"), ("dtmf", "A")]


def test_dle_split_across_reads_is_one_code_and_audio_goes_on(make):
    emu, line = make("conexant")
    answered(emu, line)
    emu.feed_audio(sine(4000))
    emu.send_dle("7", split=True)
    ticks = tick_until(line, has("dtmf"))
    ticks += [line.tick() for _ in range(10)]
    assert facts(ticks) == [("dtmf", "7")]
    assert all(len(t.audio) == FRAME for t in ticks)


@pytest.mark.parametrize("code,cause", [("b", "busy"), ("d", "dial"), ("l", "loop")])
def test_call_progress_reported_by_the_modem_is_a_hangup_fact(make, code, cause):
    emu, line = make("usr")
    answered(emu, line)
    emu.send_dle(code)
    ticks = tick_until(line, has("hangup"))
    assert facts(ticks) == [("hangup", cause)]


def test_unknown_dle_codes_are_ignored(make):
    emu, line = make("usr")
    answered(emu, line)
    emu.send_raw(b"\x10\xfe\x10T")
    emu.press_dtmf("9")
    ticks = tick_until(line, has("dtmf"))
    assert facts(ticks) == [("dtmf", "9")]


@pytest.mark.parametrize("personality", BOTH)
def test_receive_ended_by_the_modem_is_started_again(make, personality):
    emu, line = make(personality)
    answered(emu, line)
    line.tick()
    before = len(emu.commands)
    emu.end_receive()
    marker = decode(emu.kind, encode(emu.kind, [1234]))[0]       # exact in the codec
    emu.feed_audio([0] * 400 + [1234] * 100)
    ticks = tick_until(line, lambda ts: marker in audio_of(ts))
    assert emu.commands[before:] == ["AT+VTR" if personality == "usr" else "AT+VRX"]
    assert facts(ticks) == []


def test_modem_that_stops_sending_audio_is_a_fault(make):
    emu, line = make("conexant")
    answered(emu, line)
    tick_until(line, lambda ts: len(ts) >= 3)
    emu.streaming = False
    ticks = tick_until(line, has("fault"))
    assert facts(ticks) == [("fault", f"modem on {emu.path}: no audio for 0.5 s")]


# ---------------------------------------------------------------- transmit


def frames_of(samples):
    it = iter(range(0, len(samples), FRAME))

    def nxt():
        i = next(it, None)
        return None if i is None else samples[i:i + FRAME]
    return nxt


@pytest.mark.parametrize("personality,duplex", [("usr", "full"), ("usr", "half"),
                                                ("conexant", "auto")])
def test_transmitted_audio_arrives_intact_with_dle_doubled(make, personality, duplex):
    emu, line = make(personality, line_kw={"duplex": duplex})
    answered(emu, line)
    # Samples whose encoding holds a 0x10 byte in either format.
    dle_samples = [0x1010, 0x10, g711.ulaw_expand(0x10)]
    tone = sine(FRAME * 6)
    tone[FRAME:FRAME + 3] = array("h", dle_samples)
    feed = frames_of(tone)
    for _ in range(6):
        line.tick(feed())
    for _ in range(SWITCH_BACK_FRAMES + 2):
        line.tick(None)
    assert emu.wait_for(lambda e: len(e.received_audio()) >= len(tone))
    got = emu.received_audio()
    start = first_nonzero(got)
    sent = list(tone)
    got = got[start:start + len(sent)]
    if emu.kind == "lin16":
        assert got == sent
    else:
        assert all(abs(g - s) <= abs(s) // 16 + 8 for g, s in zip(got, sent, strict=True))
    assert b"\x10" in emu.received_bytes()
    if line.identify()["duplex"] == "half":
        assert emu.stops[-1] == ("vtx", b"\x03")          # played out, then ended
    assert not facts([line.tick()], "fault")


def test_half_duplex_switches_to_transmit_and_back_to_receive(make):
    emu, line = make("conexant")
    answered(emu, line)
    before = len(emu.commands)
    feed = frames_of(sine(FRAME * 3))
    for _ in range(3):
        line.tick(feed())
    assert line.state == "tx"
    for _ in range(SWITCH_BACK_FRAMES):
        line.tick(None)
    assert line.state == "rx"
    assert emu.commands[before:] == ["AT+VTX", "AT+VRX"]
    # Conexant: the lone DLE ! is ignored, DLE DC4 ends receive; DLE ETX ends transmit.
    assert emu.stops == [("vrx", b"!"), ("vrx", b"\x14"), ("vtx", b"\x03")]
    emu.press_dtmf("3")
    assert facts(tick_until(line, has("dtmf"))) == [("dtmf", "3")]


@pytest.mark.parametrize("personality,stops", [
    ("usr", [("vrx", b"!"), ("vtx", b"\x18"), ("vtx", b"\x03")]),
    ("conexant", [("vrx", b"!"), ("vrx", b"\x14"), ("vtx", b"\x14")]),
])
def test_hang_up_mid_prompt_ends_transmit_with_the_chipsets_sequence(make, personality, stops):
    emu, line = make(personality, line_kw={"duplex": "half"})
    answered(emu, line)
    feed = frames_of(sine(FRAME * 3))
    for _ in range(3):
        line.tick(feed())
    before = len(emu.commands)
    line.set_hook(False)
    assert emu.stops == stops
    assert emu.commands[before:] == ["ATH"]
    assert line.state == "idle" and not emu.offhook


@pytest.mark.parametrize("personality,stops", [
    ("usr", [("vtr", b"!")]), ("conexant", [("vrx", b"!"), ("vrx", b"\x14")])])
def test_hang_up_while_receiving_ends_receive_with_the_chipsets_sequence(make, personality, stops):
    emu, line = make(personality)
    answered(emu, line)
    line.tick()
    line.set_hook(False)
    assert emu.stops == stops
    assert emu.commands[-1] == "ATH"
    assert line.state == "idle"


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize("personality", BOTH)
def test_unplug_is_one_fault_and_replug_brings_the_line_back(make, personality):
    emu, line = make(personality)
    answered(emu, line)
    line.tick()
    emu.unplug()
    ticks = tick_until(line, has("fault"))
    assert len(facts(ticks, "fault")) == 1
    assert all(len(t.audio) == FRAME and not any(t.audio) for t in ticks)
    ticks = [line.tick() for _ in range(30)]            # gone: backoff, no new fault
    assert facts(ticks) == []
    assert line.faulted
    resets = emu.commands.count("ATZ")
    line.set_hook(False)
    emu.replug()
    ticks = tick_until(line, has("fault_cleared"))
    assert facts(ticks) == [("fault_cleared",)]
    assert emu.commands.count("ATZ") == resets + 1
    assert line.state == "idle"
    emu.ring(1)
    assert facts(tick_until(line, has("ring"))) == [("ring",)]


def test_modem_that_stops_answering_is_a_fault_and_is_reset_with_backoff(make):
    emu, line = make("usr", line_kw={"keepalive": 0.2})
    connected(line)
    emu.responding = False
    ticks = tick_until(line, has("fault"))
    assert facts(ticks) == [("fault", f"modem on {emu.path}: no answer to AT")]
    ticks = tick_until(line, lambda ts: emu.commands.count("ATZ") >= 3)
    assert facts(ticks) == []
    emu.responding = True
    ticks = tick_until(line, has("fault_cleared"))
    assert facts(ticks) == [("fault_cleared",)]
    assert line.identify()["chipset"] == "usr"


def test_missing_port_at_start_is_a_fault_not_an_exception(tmp_path):
    line = ModemLine(1, str(tmp_path / "nothing"), rtscts=False, backoff=(0.05, 0.1))
    ticks = [line.tick() for _ in range(3)]
    assert [f[0] for f in facts(ticks)] == ["fault"]
    assert all(len(t.audio) == FRAME for t in ticks)
    line.close()


def test_close_hangs_up(make):
    emu, line = make("conexant")
    answered(emu, line)
    line.tick()
    line.close()
    assert emu.commands[-1] == "ATH"
    assert not emu.offhook
