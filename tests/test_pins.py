"""PIN hashing (scrypt) and `linebox pin-hash`."""

import base64
import hashlib

import pytest

from conftest import run_linebox
from linebox.voicemail.pins import (
    BAD_PIN,
    hash_pin,
    hash_problem,
    looks_like_pin_hash,
    pin_problem,
    valid_pin,
    verify_pin,
)

SALT = bytes(range(16))
HASH_1234 = hash_pin("1234", salt=SALT)   # computed once: scrypt takes tens of ms


def test_hash_has_the_documented_format_and_scrypt_parameters():
    key = hashlib.scrypt(b"1234", salt=SALT, n=2**14, r=8, p=1, dklen=32)
    expected = ("scrypt$16384$8$1$" + base64.b64encode(SALT).decode()
                + "$" + base64.b64encode(key).decode())
    assert HASH_1234 == expected


def test_hash_then_verify_round_trip():
    assert verify_pin("1234", HASH_1234) is True


def test_wrong_pin_does_not_verify():
    assert verify_pin("1235", HASH_1234) is False
    assert verify_pin("12345", HASH_1234) is False


def test_two_hashes_of_the_same_pin_have_different_salts_and_both_verify():
    a, b = hash_pin("987654"), hash_pin("987654")
    assert a.split("$")[4] != b.split("$")[4]
    assert len(base64.b64decode(a.split("$")[4])) == 16
    assert a != b
    assert verify_pin("987654", a) and verify_pin("987654", b)


def _with_part(h: str, index: int, value: str) -> str:
    parts = h.split("$")
    parts[index] = value
    return "$".join(parts)


MALFORMED = {
    "empty": "",
    "not a hash": "1234",
    "other scheme": HASH_1234.replace("scrypt$", "pbkdf2$", 1),
    "missing key": HASH_1234.rsplit("$", 1)[0],
    "extra field": HASH_1234 + "$x",
    "n not a power of two": _with_part(HASH_1234, 1, "16383"),
    "n too costly": _with_part(HASH_1234, 1, "16777216"),
    "r zero": _with_part(HASH_1234, 2, "0"),
    "salt not base64": _with_part(HASH_1234, 4, "!!!!"),
    "salt too short": _with_part(HASH_1234, 4, base64.b64encode(b"short").decode()),
    "key truncated": _with_part(HASH_1234, 5, base64.b64encode(b"x" * 31).decode()),
    "trailing newline": HASH_1234 + "\n",
}


@pytest.mark.parametrize("bad", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_hash_verifies_false_and_does_not_look_like_a_hash(bad):
    assert verify_pin("1234", bad) is False
    assert looks_like_pin_hash(bad) is False


def test_non_string_hash_verifies_false():
    assert verify_pin("1234", None) is False
    assert verify_pin("1234", b"scrypt$") is False
    assert looks_like_pin_hash(None) is False


def test_a_hash_made_by_hash_pin_looks_like_a_pin_hash():
    assert looks_like_pin_hash(HASH_1234) is True


@pytest.mark.parametrize("pin, ok", [
    ("1234", True), ("0000", True), ("1234567890", True),
    ("123", False), ("12345678901", False), ("", False),
    ("12a4", False), ("12 34", False), ("1234\n", False), (" 1234", False),
    ("\uff11\uff12\uff13\uff14", False),   # fullwidth digits are not ASCII digits
    ("\u00b2\u00b345", False),             # superscripts satisfy str.isdigit()
    (1234, False),
])
def test_valid_pin_accepts_only_4_to_10_ascii_digits(pin, ok):
    assert valid_pin(pin) is ok


def test_hash_pin_refuses_an_invalid_pin():
    with pytest.raises(ValueError, match="a PIN is 4 to 10 digits"):
        hash_pin("12a4")


def test_invalid_pin_never_verifies_even_against_its_own_digits():
    assert verify_pin(" 1234", HASH_1234) is False


def test_pin_hash_command_prints_a_hash_that_verifies():
    r = run_linebox("pin-hash", input=b"  4731 \n")
    assert r.returncode == 0
    assert r.stderr == b""
    out = r.stdout.decode()
    assert out.endswith("\n") and out.count("\n") == 1
    assert verify_pin("4731", out.strip()) is True


def test_pin_hash_command_reads_only_the_first_line():
    r = run_linebox("pin-hash", input=b"5718\n1111\n")
    assert r.returncode == 0
    assert verify_pin("5718", r.stdout.decode().strip()) is True


@pytest.mark.parametrize("given", [b"12a4\n", b"123\n", b"\n", b"", b"12 34\n", b"\xff\xfe12\n"],
                         ids=["letter", "short", "empty line", "no input", "space", "not ascii"])
def test_pin_hash_command_rejects_a_bad_pin_without_echoing_it(given):
    r = run_linebox("pin-hash", input=given)
    assert r.returncode == 2
    assert r.stdout == b""
    assert r.stderr == b"linebox: error: pin-hash: a PIN is 4 to 10 digits\n"


def _on_a_terminal(*answers: bytes) -> tuple[int, str]:
    """`linebox pin-hash` with a pty as its controlling terminal, typing ``answers``."""
    import os
    import select
    import subprocess
    import sys
    import time

    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "linebox", "pin-hash"],
                            preexec_fn=lambda: os.login_tty(slave), close_fds=True)
    os.close(slave)
    out = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # select, not a blocking read: if another process of the test run inherited the
        # pty's other end, the read would never see the end of the file.
        ready, _, _ = select.select([master], [], [], 0.2)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:              # the child is gone and the pty closed
            break
        if not chunk:
            break
        out += chunk
        if pending and out.rstrip().endswith(b":"):
            # getpass switches echo off with TCSAFLUSH, which drops input typed too early:
            # answer a moment after the prompt, as a person would.
            time.sleep(0.3)
            os.write(master, pending.pop(0))
    # Wait for the child before closing our end: closing it first hangs up the terminal
    # (SIGHUP) under a child that is still writing its last line.
    rc = proc.wait(10)
    while select.select([master], [], [], 0)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return rc, out.decode(errors="replace")


def test_pin_hash_on_a_terminal_asks_twice_and_prints_the_hash():
    rc, out = _on_a_terminal(b"4731\n", b"4731\n")
    assert rc == 0, out
    assert "PIN: " in out and "PIN again: " in out and "4731" not in out   # never echoed
    assert verify_pin("4731", out.split()[-1])


def test_pin_hash_on_a_terminal_refuses_two_different_pins():
    rc, out = _on_a_terminal(b"4731\n", b"4713\n")
    assert rc == 2
    assert out.strip().endswith("linebox: error: pin-hash: the two PINs differ; nothing printed")
    assert "scrypt$" not in out


# ------------------------------------------------------------------ trivial PINs and weak hashes

TRIVIAL = ["0000", "1111", "999999", "1234", "4321", "0123", "9876", "7890", "3210987", "0123456789"]


@pytest.mark.parametrize("pin", TRIVIAL)
def test_trivial_pins_are_refused_with_a_reason(pin):
    assert pin_problem(pin) is not None
    assert pin_problem(pin) != BAD_PIN


@pytest.mark.parametrize("pin", ["0150", "4731", "1235", "2468", "1000", "12341234"])
def test_ordinary_pins_are_accepted(pin):
    assert pin_problem(pin) is None


def test_the_box_number_is_refused_as_its_pin():
    assert pin_problem("1007", "1007") == "a PIN may not be the box's own number"
    assert pin_problem("1007", "100") is None


@pytest.mark.parametrize("given", [b"1234\n", b"0000\n", b"9876\n"])
def test_pin_hash_command_refuses_a_trivial_pin(given):
    r = run_linebox("pin-hash", input=given)
    assert r.returncode == 2
    assert r.stdout == b""
    assert r.stderr.startswith(b"linebox: error: pin-hash: a PIN of ")
    assert given.strip() not in r.stderr


def test_pin_hash_command_refuses_the_box_number_with_box():
    r = run_linebox("pin-hash", "--box", "4731", input=b"4731\n")
    assert r.returncode == 2
    assert r.stderr == b"linebox: error: pin-hash: a PIN may not be the box's own number\n"


def test_weak_scrypt_parameters_are_a_hash_problem():
    weak = hash_pin("4731", salt=SALT).replace("scrypt$16384$8$1$", "scrypt$2$1$1$")
    assert looks_like_pin_hash(weak)             # well-formed, verifiable ...
    assert "too weak" in hash_problem(weak)      # ... but refused in a configuration
    assert hash_problem(HASH_1234) is None
