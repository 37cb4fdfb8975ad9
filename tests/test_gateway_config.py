"""The configuration of calls out through the lines: [gateway], [[extension]] lines and
dial patterns, and the refusal of half-duplex voice modems for anything bridged."""

import tomllib

import pytest

from conftest import run_linebox
from linebox.config import DEFAULT_EMERGENCY, ConfigError, parse_config
from linebox.gateway.dialrules import PatternError, compile_pattern, matches

HA1 = "0" * 32


def text(lines="", extension="", gateway="") -> str:
    return f"""
[[line]]
id = 1
driver = "sim"
route = "100"

[[line]]
id = 2
driver = "modem-sim"
route = "100"
{lines}

[[box]]
number = "100"
pin_required = false

[sip]
listen = "127.0.0.1:5060"

[[extension]]
number = "201"
ha1 = "{HA1}"
{extension}
{gateway}
"""


def load(**parts):
    return parse_config(tomllib.loads(text(**parts)))


def refused(**parts) -> str:
    with pytest.raises(ConfigError) as e:
        load(**parts)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("config: ")
    return msg


def test_defaults_prefix_9_and_the_three_emergency_numbers():
    cfg = load(extension="lines = [1, 2]")
    assert cfg.gateway.outbound_prefix == "9"
    assert cfg.gateway.emergency == DEFAULT_EMERGENCY == ("911", "112", "999")
    assert cfg.extensions["201"].lines == (1, 2) and cfg.extensions["201"].dial is None


def test_gateway_keys_are_read():
    cfg = load(extension='lines = [1]\ndial = ["NXXXXXX", "1800."]',
               gateway='[gateway]\noutbound_prefix = ""\nemergency = ["112"]')
    assert cfg.gateway.outbound_prefix == "" and cfg.gateway.emergency == ("112",)
    assert cfg.extensions["201"].dial == ("NXXXXXX", "1800.")


def test_a_half_duplex_modem_cannot_be_an_extensions_line():
    msg = refused(lines='duplex = "half"', extension="lines = [2]")
    assert msg == ('config: [[extension]] #1 key \'lines\': line 2 is a half-duplex voice modem '
                   '(duplex = "half"): it cannot bridge a call; use a full-duplex modem or an FXO line')
    # auto (found out when the modem answers) and full are accepted.
    assert load(lines='duplex = "full"', extension="lines = [2]").extensions["201"].lines == (2,)
    assert load(lines='duplex = "auto"', extension="lines = [2]")


def test_a_line_that_does_not_exist_is_refused():
    assert "key 'lines': no [[line]] with id 7" in refused(extension="lines = [1, 7]")


@pytest.mark.parametrize("gateway, message", [
    ('outbound_prefix = 9', "key 'outbound_prefix': must be 0 to 4 of 0-9 * #"),
    ('outbound_prefix = "99999"', "key 'outbound_prefix': must be 0 to 4"),
    ('emergency = "911"', "key 'emergency': must be a list of numbers"),
    ('emergency = ["9-1-1"]', "key 'emergency': must be a list of numbers"),
    ('emergency = ["100"]', "\"100\" is a box number; an emergency number must always go out"),
    ('emergency = ["201"]', "\"201\" is an extension number"),
    ('colour = "red"', "unknown key"),
])
def test_bad_gateway_values_are_one_line_errors(gateway, message):
    assert message in refused(gateway=f"[gateway]\n{gateway}")


@pytest.mark.parametrize("dial, message", [
    ('"555"', "must be a list of number patterns"),
    ('["55Q"]', "'Q' is not 0-9 * # X Z N"),
    ('["5.5"]', "'.' is not"),
    ('["[5-"]', "'[' must hold digits or ranges"),
    ('[""]', "must be 1 to 32 characters"),
])
def test_bad_dial_patterns_are_one_line_errors(dial, message):
    msg = refused(extension=f"lines = [1]\ndial = {dial}")
    assert "[[extension]] #1 key 'dial'" in msg and message in msg


@pytest.mark.parametrize("pattern, yes, no", [
    ("NXXXXXX", ["5551234", "2000000"], ["1551234", "555123", "55512345"]),
    ("1800.", ["18005551234", "18001"], ["1800", "1900555"]),
    ("0!", ["0", "0123"], ["1"]),
    ("[15-7]2", ["12", "52", "72"], ["22", "82"]),
    ("*X#", ["*5#"], ["*#", "5"]),
    ("zx", ["10"], ["01"]),
])
def test_dial_patterns_match_like_asterisks(pattern, yes, no):
    rx = compile_pattern(pattern)
    assert all(rx.fullmatch(n) for n in yes)
    assert not any(rx.fullmatch(n) for n in no)


def test_no_patterns_means_any_number_and_an_empty_list_none():
    assert matches(None, "123") and not matches((), "123")
    with pytest.raises(PatternError):
        compile_pattern("X" * 33)


def test_config_check_prints_the_half_duplex_error(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text(lines='duplex = "half"', extension="lines = [2]"))
    r = run_linebox("config", "check", "--config", str(cfg))
    assert r.returncode != 0
    assert b"line 2 is a half-duplex voice modem" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_half_duplex_modem_cannot_ring_the_phones():
    msg = refused(lines='duplex = "half"\nring = ["201"]')
    assert "[[line]] #2 key 'ring': a half-duplex voice modem" in msg
    assert load(lines='duplex = "full"\nring = ["201"]').lines[1].ring == ("201",)


def test_hwcheck_says_a_half_duplex_modem_cannot_bridge():
    # (tests/test_hwcheck.py checks that this INFO line is printed for a half-duplex modem.)
    from linebox.hw.check import HALF_DUPLEX
    assert "cannot bridge a call to the IP phones" in HALF_DUPLEX
    assert "no ring group, no calls out" in HALF_DUPLEX
