"""The voice-modem line driver, through real pyserial on a pty, against the USR and
Conexant modems of linebox.hw.modem.emulator (built from the chipsets' manuals and
captured logs, not from the driver)."""

import time
from array import array

import pytest

from linebox import FRAME
from linebox.backoff import Backoff
from linebox.dsp import g711
from linebox.hw.line import CallerIdReceived, Fault, FaultCleared, HungUp, KeyPressed, RingSeen
from linebox.hw.modem import (
    SWITCH_BACK_FRAMES,
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
from linebox.hw.modem.emulator import ModemCore, PtyModem, decode, encode, sine

BOTH = ["usr", "conexant"]
# Each chipset in full and in half duplex (auto: what the chipset is known to do).
MODES = [("usr", "auto"), ("usr", "half"), ("conexant", "auto"), ("conexant", "half")]


@pytest.fixture
def make(tmp_path):
    """make(personality, **emulator_kw) -> (emulator, line), both closed after the test."""
    made = []

    def _make(personality, line_kw=None, **emu_kw):
        emu = PtyModem(personality, tmp_path / f"ttyModem{len(made)}", **emu_kw).__enter__()
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
    """The first sample above A-law's quietest codes (+-8: G.711 A-law has no zero)."""
    return next(i for i, x in enumerate(samples) if abs(x) > 8)


def heard_after_onset(samples) -> int:
    """Samples from the first non-zero one on (0 before any)."""
    return len(samples) - first_nonzero(samples) if any(abs(x) > 8 for x in samples) else 0


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


def test_vsm_list_without_parentheses_as_conexant_answers():
    # Verbatim from ncidd logs of CX93001 modems (NCID documentation).
    entries = parse_vsm_list(['0,"SIGNED PCM",8,0,8000,0,0', '131,"Mu-Law",8,0,8000,0,0',
                              '133,"14 bit PCM",14,0,8000,0,0', '140,"2 Bit ADPCM",2,0,8000,0,0',
                              "OK"])
    assert [(e.code, e.bits, e.kind, e.supports(8000)) for e in entries] == [
        (0, 8, "lin8s", True), (131, 8, "ulaw", True), (133, 14, None, True),
        (140, 2, None, True)]
    assert choose_format(entries).code == 131


def test_vsm_list_with_parentheses_as_the_usr_reference_prints_it():
    entries = parse_vsm_list(['1,"UNSIGNED PCM",8,0,(7200,8000),(0),(0)',
                              '131,"ULAW",8,0,(7200,8000),(0),(0)',
                              '133,"LINEAR",16,0,(7200,8000),(0),(0)', '+VSM: 129,"ADPCM",4,0,(8000),(0),(0)'])
    assert [(e.code, e.kind) for e in entries] == [(1, "lin8u"), (131, "ulaw"), (133, "lin16"),
                                                   (129, None)]
    assert choose_format(entries).code == 133


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
    assert (ident["format"], ident["format_code"], ident["duplex"]) == ("LINEAR", 133, "full")
    assert ident["duplex_source"] == "AT+VTR=?"
    assert ident["callerid"] is True
    cmds = emu.commands
    # AT first, and ATZ only once AT has answered: the modem is in command mode.
    assert cmds[:3] == ["AT", "ATZ", "ATE0"]
    order = [cmds.index(c) for c in ("ATI", "ATI3", "AT+FCLASS=8", "AT+VCID=1", "AT+VSM=?",
                                     "AT+VSM=133,8000", "AT+VTR=?")]
    assert order == sorted(order)


def test_conexant_set_up_for_mu_law_and_full_duplex_although_its_vtr_test_says_error(make):
    emu, line = make("conexant")
    ident = connected(line).identify()
    assert ident["chipset"] == "conexant"
    assert (ident["format"], ident["format_code"]) == ("Mu-Law", 131)
    assert "AT+VSM=131,8000" in emu.commands
    assert (ident["duplex"], ident["duplex_source"]) == ("full", "chipset")
    assert "at once" in ident["duplex_explanation"]
    line.set_hook(True)                       # AT+VTR=? said ERROR; AT+VTR works
    assert emu.commands[-2:] == ["AT+VLS=1", "AT+VTR"] and emu.mode == "vtr"
    assert line.identify()["duplex_source"] == "AT+VTR"


def test_conexant_firmware_without_duplex_falls_back_to_half_duplex_at_the_first_call(make):
    emu, line = make("conexant", full_duplex=False)
    connected(line)
    line.set_hook(True)
    assert emu.commands[-3:] == ["AT+VLS=1", "AT+VTR", "AT+VRX"] and emu.mode == "vrx"
    ident = line.identify()
    assert (ident["duplex"], ident["duplex_source"]) == ("half", "AT+VTR")
    assert "either plays" in ident["duplex_explanation"]
    assert not line.full_duplex
    line.set_hook(False)
    line.set_hook(True)
    assert emu.commands[-2:] == ["AT+VLS=1", "AT+VRX"]       # not asked again


@pytest.mark.parametrize("personality,vsm,code,kind", [
    ("usr", ['128,"8-BIT LINEAR",(7200,8000,11025)', '131,"8-BIT ULAW",(8000)'], 131, "ulaw"),
    ("usr", ['128,"8-BIT LINEAR",(7200,8000,11025)', '132,"IMA ADPCM",(8000)'], 128, "lin8u"),
    ("conexant", ['1,"UNSIGNED PCM",8,0,(8000),(0),(0)', '129,"IMA ADPCM",4,0,(8000),(0),(0)'],
     1, "lin8u"),
    ("conexant", ['1,"UNSIGNED PCM",8,0,8000,0,0', '132,"A-Law",8,0,8000,0,0'], 132, "alaw"),
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


@pytest.mark.parametrize("personality,duplex,start", [
    ("usr", "auto", "AT+VTR"), ("usr", "half", "AT+VRX"),
    ("conexant", "auto", "AT+VTR"), ("conexant", "half", "AT+VRX")])
def test_answer_goes_off_hook_then_starts_receiving(make, personality, duplex, start):
    emu, line = make(personality, line_kw={"duplex": duplex})
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
    ("conexant", ['0,"SIGNED PCM",8,0,8000,0,0']),                   # 8-bit signed
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
    assert all(abs(x) <= 8 for x in got[:start])
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
        emu.press_dtmf(key, shielded=shielded, repeats=3)   # shielded: the key 4 times
    ticks = tick_until(line, has("dtmf", 3))
    ticks += [line.tick() for _ in range(5)]
    assert facts(ticks) == [("dtmf", "5"), ("dtmf", "#"), ("dtmf", "A")]


@pytest.mark.parametrize("personality", BOTH)
def test_shielded_key_repeated_after_the_switch_to_transmit_counts_once(make, personality):
    emu, line = make(personality, line_kw={"duplex": "half"})
    answered(emu, line)
    emu.send_raw(b"\x10/\x105\x105")           # the tone starts, the key twice, still on
    ticks = tick_until(line, has("dtmf"))
    feed = frames_of(sine(FRAME * 3))
    for _ in range(2):
        ticks.append(line.tick(feed()))       # a prompt starts: receive -> transmit
    assert line.state == "tx"
    emu.send_raw(b"\x105\x105\x10~")           # the same tone goes on, then ends
    ticks += [line.tick(feed()) for _ in range(1)]
    ticks += [line.tick() for _ in range(SWITCH_BACK_FRAMES + 10)]
    assert line.state == "rx"
    emu.press_dtmf("5", shielded=True)         # a new press of the same key
    ticks += tick_until(line, has("dtmf"))
    assert facts(ticks) == [("dtmf", "5"), ("dtmf", "5")]


@pytest.mark.parametrize("personality", BOTH)
def test_keys_the_modem_hears_on_the_line_are_reported_in_its_style(make, personality):
    from linebox.dsp import gen
    emu, line = make(personality)
    answered(emu, line)
    emu.feed_audio(gen.silence(0.2) + gen.dtmf("7", 0.2, 0.2, -6.0, -4.0))
    ticks = tick_until(line, has("dtmf"))
    ticks += [line.tick() for _ in range(30)]
    assert facts(ticks) == [("dtmf", "7")]


def test_dle_split_across_reads_is_one_code_and_audio_goes_on(make):
    emu, line = make("conexant")
    answered(emu, line)
    emu.feed_audio(sine(4000))
    emu.send_dle("7", split=True)
    ticks = tick_until(line, has("dtmf"))
    ticks += [line.tick() for _ in range(10)]
    assert facts(ticks) == [("dtmf", "7")]
    assert all(len(t.audio) == FRAME for t in ticks)


@pytest.mark.parametrize("personality,duplex", MODES)
@pytest.mark.parametrize("code,cause", [("b", "busy"), ("d", "dial"), ("l", "loop")])
def test_call_progress_reported_by_the_modem_is_a_hangup_fact(make, personality, duplex,
                                                               code, cause):
    emu, line = make(personality, line_kw={"duplex": duplex})
    answered(emu, line)
    emu.send_dle(code)
    ticks = tick_until(line, has("hangup"))
    assert facts(ticks) == [("hangup", cause)]


@pytest.mark.parametrize("personality", BOTH)
def test_busy_tone_on_the_line_is_reported_late_and_again_every_4_s(make, personality):
    from linebox.dsp.plans import tone_signal
    emu, line = make(personality)
    answered(emu, line)
    emu.feed_audio(tone_signal("us", "busy", 10.0))
    ticks = tick_until(line, has("hangup", 2), timeout=15)
    frames = [i for i, t in enumerate(ticks) for f in t.events if isinstance(f, HungUp)]
    first, second = frames[0] * FRAME / 8000, frames[1] * FRAME / 8000
    assert first >= 0.5                          # declared after some cadence, not at once
    assert abs((second - first) - 4.0) < 0.3     # Rockwell RCV144ACX: every 4 s


def test_unknown_dle_codes_are_ignored(make):
    emu, line = make("usr")
    answered(emu, line)
    emu.send_raw(b"\x10\xfe\x10T")
    emu.press_dtmf("9")
    ticks = tick_until(line, has("dtmf"))
    assert facts(ticks) == [("dtmf", "9")]


@pytest.mark.parametrize("personality,duplex", MODES)
def test_receive_ended_by_the_modem_is_started_again(make, personality, duplex):
    emu, line = make(personality, line_kw={"duplex": duplex})
    answered(emu, line)
    line.tick()
    before = len(emu.commands)
    emu.end_receive()
    marker = decode(emu.kind, encode(emu.kind, [1234]))[0]       # exact in the codec
    emu.feed_audio([0] * 400 + [1234] * 100)
    ticks = tick_until(line, lambda ts: marker in audio_of(ts))
    assert emu.commands[before:] == ["AT+VRX" if duplex == "half" else "AT+VTR"]
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


@pytest.mark.parametrize("personality,duplex", MODES)
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
    if duplex == "half":
        assert emu.stops[-1] == ("vtx", b"\x03")          # played out, then ended
    assert not facts([line.tick()], "fault")


@pytest.mark.parametrize("personality", BOTH)
def test_half_duplex_switches_to_transmit_and_back_to_receive(make, personality):
    emu, line = make(personality, line_kw={"duplex": "half"})
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
    # V.253: DLE ! ends receive, DLE ETX ends transmit once played out.
    assert emu.stops == [("vrx", b"!"), ("vtx", b"\x03")]
    emu.press_dtmf("3")
    assert facts(tick_until(line, has("dtmf"))) == [("dtmf", "3")]


@pytest.mark.parametrize("personality", BOTH)
def test_hang_up_mid_prompt_clears_and_ends_transmit_with_documented_codes(make, personality):
    emu, line = make(personality, line_kw={"duplex": "half"})
    answered(emu, line)
    feed = frames_of(sine(FRAME * 3))
    for _ in range(3):
        line.tick(feed())
    before = len(emu.commands)
    line.set_hook(False)
    # DLE CAN clears the buffer, DLE ETX ends (IS-101, RC56); never ZyXEL's DLE DC4.
    assert emu.stops == [("vrx", b"!"), ("vtx", b"\x18"), ("vtx", b"\x03")]
    assert emu.commands[before:] == ["ATH"]
    assert line.state == "idle" and not emu.offhook
    assert not facts([line.tick()], "fault")


@pytest.mark.parametrize("personality,duplex,stops", [
    ("usr", "auto", [("vtr", b"^")]), ("conexant", "auto", [("vtr", b"^")]),
    ("usr", "half", [("vrx", b"!")]), ("conexant", "half", [("vrx", b"!")])])
def test_hang_up_while_receiving_leaves_each_state_with_its_own_code(make, personality,
                                                                     duplex, stops):
    emu, line = make(personality, line_kw={"duplex": duplex})
    answered(emu, line)
    line.tick()
    line.set_hook(False)
    assert emu.stops == stops
    assert emu.commands[-1] == "ATH"
    assert line.state == "idle" and not emu.offhook


# ---------------------------------------------------------------- the emulator itself


def test_emulated_modem_takes_atz_in_a_data_state_as_audio():
    core = ModemCore("usr")
    for cmd in ("AT+FCLASS=8", "AT+VSM=128,8000", "AT+VLS=1", "AT+VTX"):
        core.receive(cmd.encode() + b"\r")
    assert core.mode == "vtx"
    core.receive(b"ATZ\r")
    assert core.mode == "vtx" and core.offhook and "ATZ" not in core.commands
    assert bytes(core.audio_in) == b"ATZ\r"


@pytest.mark.parametrize("personality", BOTH)
def test_emulated_modem_ignores_zyxels_dc4_and_leaves_duplex_only_on_dle_caret(personality):
    core = ModemCore(personality)
    for cmd in ("AT+FCLASS=8", "AT+VLS=1"):
        core.receive(cmd.encode() + b"\r")
    core.receive(b"AT+VSM=131,8000\r")
    core.receive(b"AT+VTX\r")
    core.receive(b"\x10\x14")
    assert core.mode == "vtx"
    core.receive(b"\x10\x03")
    assert core.mode == "command"
    core.receive(b"AT+VTR\r")
    core.receive(b"\x10!\x10\x03")
    assert core.mode == "vtr"
    core.receive(b"\x10^")
    assert core.mode == "command"
    assert core.take_output().endswith(b"\x10\x03\r\nOK\r\n")


def test_emulated_modem_drops_the_call_when_dtr_drops():
    core = ModemCore("conexant")
    for cmd in ("AT+FCLASS=8", "AT+VSM=131,8000", "AT+VLS=1", "AT+VTR"):
        core.receive(cmd.encode() + b"\r")
    core.dtr_drop()
    assert core.mode == "command" and not core.offhook


# ---------------------------------------------------------------- set-up: country, init


@pytest.mark.parametrize("plan,code", [("us", "B5"), ("uk", "B4"), ("de", "42"), ("fr", "3D")])
def test_conexant_country_set_from_the_plan(make, plan, code):
    emu, line = make("conexant")
    line.close()
    line = ModemLine(1, emu.path, plan, rtscts=False, command_timeout=0.5)
    try:
        ident = line.identify()
        assert f"AT+GCI={code}" in emu.commands
        assert emu.core.gci == code and ident["country"] == code
        assert emu.commands.index(f"AT+GCI={code}") < emu.commands.index("AT+FCLASS=8")
    finally:
        line.close()


def test_country_left_alone_where_the_modem_or_the_plan_has_none(make):
    emu, line = make("usr")
    ident = connected(line).identify()
    assert ident["country"] is None and "AT+GCI" in ident["country_note"]
    assert not any(c.startswith("AT+GCI=") and c != "AT+GCI=?" for c in emu.commands)
    emu2, line2 = make("conexant")
    line2.close()
    line2 = ModemLine(1, emu2.path, "eu", rtscts=False, command_timeout=0.5)
    try:
        assert line2.identify()["country"] is None
        assert not any(c.startswith("AT+GCI") for c in emu2.commands)
    finally:
        line2.close()


def test_init_string_is_sent_after_the_reset_and_before_voice_mode(make):
    emu, line = make("conexant", line_kw={"init": "AT!4886=00"})
    assert connected(line).identify()["init"] == "AT!4886=00"
    cmds = emu.commands
    assert cmds.index("ATZ") < cmds.index("AT!4886=00") < cmds.index("AT+FCLASS=8")


def test_init_string_the_modem_refuses_is_a_fault_naming_it(make):
    emu, line = make("usr", line_kw={"init": "AT!4886=00"})
    ticks = [line.tick()]
    assert facts(ticks) == [("fault", f"modem on {emu.path}: AT!4886=00 answered ERROR "
                                      "(the line's init string)")]


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


def test_modem_that_stops_answering_is_a_fault_and_never_gets_atz_until_it_answers(make):
    emu, line = make("usr", line_kw={"keepalive": 0.2})
    connected(line)
    emu.responding = False
    ticks = tick_until(line, has("fault"))
    assert facts(ticks) == [("fault", f"modem on {emu.path}: no answer to AT")]
    resets = emu.commands.count("ATZ")
    ticks = tick_until(line, lambda ts: emu.commands.count("AT") >= 8)     # retried, backoff
    assert facts(ticks) == [] and emu.commands.count("ATZ") == resets
    emu.responding = True
    ticks = tick_until(line, has("fault_cleared"))
    assert facts(ticks) == [("fault_cleared",)]
    assert emu.commands.count("ATZ") == resets + 1
    assert line.identify()["chipset"] == "usr"


@pytest.mark.parametrize("personality,duplex,state", [
    ("usr", "auto", "duplex"), ("conexant", "auto", "duplex"),
    ("usr", "half", "rx"), ("conexant", "half", "rx"),
    ("usr", "half", "tx"), ("conexant", "half", "tx")])
def test_modem_stuck_in_a_data_state_is_a_fault_recovered_by_dtr_not_atz(make, personality,
                                                                         duplex, state):
    emu, line = make(personality, line_kw={"duplex": duplex})
    answered(emu, line)
    if state == "tx":
        feed = frames_of(sine(FRAME * 3))
        for _ in range(3):
            line.tick(feed())
    assert line.state == state
    with emu.lock:
        emu.core.stuck = True
    line.set_hook(False)                       # the caller is gone: the line must go on-hook
    ticks = [line.tick()]
    (fault,) = facts(ticks, "fault")
    assert "did not leave voice" in fault[1]
    assert emu.wait_for(lambda e: e.dtr_drops >= 1 and not e.offhook)
    assert b"ATZ" not in emu.received_bytes() and b"ATH" not in emu.received_bytes()
    with emu.lock:
        emu.core.stuck = False
    ticks = tick_until(line, has("fault_cleared"))
    assert line.state == "idle" and not emu.offhook
    emu.ring(1)
    assert facts(tick_until(line, has("ring"))) == [("ring",)]


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


@pytest.mark.parametrize("personality,duplex", [("usr", "full"), ("conexant", "full")])
def test_hwcheck_reports_the_chipset_and_what_its_duplex_means(tmp_path, personality, duplex):
    import io

    from linebox.config import LineConfig
    from linebox.hw.check import Report, check_modem
    with PtyModem(personality, tmp_path / "ttyModem") as emu:
        out = io.StringIO()
        report = Report(out)
        check_modem(LineConfig(id=1, driver="modem", plan="us", rings=4, toll_saver_rings=0,
                               route="100", port=emu.path, flow_control="none"), report)
        (status, _, detail), = report.results
        assert status == "OK", detail
        # One readable sentence (hwcheck explains half duplex on a line of its own).
        assert f"chipset {personality}" in detail and f"{duplex} duplex" in detail
        assert emu.commands[-1] == "ATH"          # closed: hung up, port released


def test_modem_leaving_duplex_on_its_inactivity_timer_is_picked_up_again(make):
    emu, line = make("conexant", line_kw={"init": "AT+VIT=1"})
    answered(emu, line)
    assert emu.mode == "vtr"
    line.tick()
    time.sleep(1.3)                          # the driver stalls: the modem's timer runs out
    assert emu.wait_for(lambda e: e.mode == "command")
    before = len(emu.commands)
    marker = decode(emu.kind, encode(emu.kind, [1234]))[0]
    emu.feed_audio([0] * 400 + [1234] * 100)
    ticks = tick_until(line, lambda ts: marker in audio_of(ts))
    assert emu.commands[before:] == ["AT+VTR"]
    assert facts(ticks) == []
