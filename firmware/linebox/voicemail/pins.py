"""Box PINs: 4 to 10 digits, kept only as salted scrypt hashes.

A hash reads ``scrypt$N$r$p$<salt base64>$<key base64>`` so that its cost travels with
it: hashes made with other parameters (within sane bounds) still verify. A PIN is never
logged or echoed, not even in an error.
"""

import base64
import binascii
import hashlib
import hmac
import os
import re
import sys

from linebox.errors import LineboxError

SCRYPT_N = 2**14        # CPU/memory cost: about 16 MiB and 50 ms on a Pi 4
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32

# Bounds on hashes we accept, so that a crafted hash cannot make verification eat
# the appliance's memory or minutes of CPU.
_MAX_MEM = 64 * 1024 * 1024
_MAX_SALT_BYTES = 64

_PIN = re.compile(r"[0-9]{4,10}")
_B64 = r"[A-Za-z0-9+/]+={0,2}"
_HASH = re.compile(rf"scrypt\$([0-9]{{1,8}})\$([0-9]{{1,3}})\$([0-9]{{1,3}})\$({_B64})\$({_B64})")

BAD_PIN = "a PIN is 4 to 10 digits"


def valid_pin(pin: str) -> bool:
    """True for 4 to 10 ASCII digits (and nothing else: no spaces, no other scripts' digits)."""
    return isinstance(pin, str) and _PIN.fullmatch(pin) is not None


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pin.encode("ascii"), salt=salt, n=n, r=r, p=p,
                          maxmem=_MAX_MEM, dklen=KEY_BYTES)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_pin(pin: str, *, salt: bytes | None = None) -> str:
    """The hash to store for ``pin``; a fresh random salt unless one is given (tests)."""
    if not valid_pin(pin):
        raise ValueError(BAD_PIN)
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    elif not SALT_BYTES <= len(salt) <= _MAX_SALT_BYTES:
        raise ValueError(f"a salt is {SALT_BYTES} to {_MAX_SALT_BYTES} bytes")
    key = _scrypt(pin, bytes(salt), SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def _parse(pin_hash: str) -> tuple[int, int, int, bytes, bytes] | None:
    """(n, r, p, salt, key) of a well-formed hash within our bounds, else None."""
    if not isinstance(pin_hash, str):
        return None
    m = _HASH.fullmatch(pin_hash)
    if m is None:
        return None
    n, r, p = int(m[1]), int(m[2]), int(m[3])
    if n < 2 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
        return None
    if 128 * r * (n + 2) + 128 * r * p > _MAX_MEM:
        return None
    try:
        salt = base64.b64decode(m[4], validate=True)
        key = base64.b64decode(m[5], validate=True)
    except (binascii.Error, ValueError):
        return None
    if not SALT_BYTES <= len(salt) <= _MAX_SALT_BYTES or len(key) != KEY_BYTES:
        return None
    return n, r, p, salt, key


def looks_like_pin_hash(s: str) -> bool:
    """True when ``s`` has the form ``hash_pin`` produces (its PIN is not checked)."""
    return _parse(s) is not None


def verify_pin(pin: str, pin_hash: str) -> bool:
    """True when ``pin`` matches ``pin_hash``; False, never an exception, for anything else."""
    parsed = _parse(pin_hash)
    if parsed is None or not valid_pin(pin):
        return False
    n, r, p, salt, key = parsed
    try:
        got = _scrypt(pin, salt, n, r, p)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(got, key)


def _read_pin_line() -> str:
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        # Not echoed on the terminal, so asked twice: a typo would lock the owner out.
        try:
            pin = getpass.getpass("PIN: ").strip()
            if not valid_pin(pin):
                return pin
            if getpass.getpass("PIN again: ").strip() != pin:
                raise LineboxError("pin-hash: the two PINs differ; nothing printed")
            return pin
        except EOFError:
            return ""
    raw = sys.stdin.buffer.readline(1024) if sys.stdin is not None else b""
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return ""


def cmd_pin_hash(args) -> int:
    """`linebox pin-hash`: one PIN line on standard input, its hash on standard output."""
    pin = _read_pin_line().strip()
    if not valid_pin(pin):
        raise LineboxError(f"pin-hash: {BAD_PIN}")
    print(hash_pin(pin))
    return 0
