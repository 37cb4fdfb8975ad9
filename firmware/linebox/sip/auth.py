"""Digest authentication of the phones (RFC 7616 / RFC 2617, MD5, qop=auth) and the
per-address limit on failures.

Nonces are random, remembered with the time they were issued and the highest nonce
count seen: an expired nonce gets a fresh challenge with ``stale=true``, a nonce count
that does not grow is a replay. The configuration keeps only HA1, never a password.
"""

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict

log = logging.getLogger(__name__)

NONCE_SECONDS = 300.0
MAX_NONCES = 4096
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*(,|$)')


def ha1(extension: str, realm: str, password: str) -> str:
    """What `linebox sip-password` prints: MD5(EXT:REALM:password), lowercase hex."""
    return hashlib.md5(f"{extension}:{realm}:{password}".encode()).hexdigest()


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def parse_authorization(value: str) -> dict | None:
    """``Digest username="201", ...`` to a dict; None if it is not a Digest header."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    out = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            return None
        v = m.group(2)
        out[m.group(1).lower()] = v[1:-1].replace('\\"', '"') if v.startswith('"') else v
        pos = m.end()
    return out


class Verdict:
    OK = "ok"
    CHALLENGE = "challenge"      # no credentials, or a stale nonce
    FAILED = "failed"            # wrong credentials
    THROTTLED = "throttled"      # too many failures from this address


class DigestAuth:
    """Challenges and checks; ``users`` maps an extension number to its HA1."""

    def __init__(self, realm: str, users: dict[str, str], clock=time.monotonic) -> None:
        self.realm = realm
        self.users = users
        self.clock = clock
        self.nonces: OrderedDict[str, list] = OrderedDict()   # nonce -> [issued, last nc]
        self.limiter = FailureLimiter(clock)

    def challenge(self, stale: bool = False) -> str:
        nonce = secrets.token_hex(16)
        self.nonces[nonce] = [self.clock(), 0]
        while len(self.nonces) > MAX_NONCES:
            self.nonces.popitem(last=False)
        return (f'Digest realm="{self.realm}", nonce="{nonce}", algorithm=MD5, qop="auth"'
                + (", stale=true" if stale else ""))

    def check(self, method: str, uri: str, header: str | None, source: tuple) -> tuple[str, str | None]:
        """(verdict, user): ``user`` is the extension once the verdict is OK."""
        if self.limiter.blocked(source[0]):
            return Verdict.THROTTLED, None
        if header is None:
            return Verdict.CHALLENGE, None
        p = parse_authorization(header)
        if p is None:
            return self._failed(source, None, "not a Digest answer")
        user = p.get("username", "")
        if p.get("realm") != self.realm:
            return self._failed(source, user, "wrong realm")
        if user not in self.users:
            return self._failed(source, user, "unknown extension")
        if p.get("algorithm", "MD5").upper() != "MD5" or p.get("qop") != "auth":
            return self._failed(source, user, "needs algorithm MD5 and qop=auth")
        if p.get("uri") != uri:
            return self._failed(source, user, "digest uri is not the request's")
        nonce = p.get("nonce", "")
        entry = self.nonces.get(nonce)
        if entry is None or self.clock() - entry[0] > NONCE_SECONDS:
            # Unknown or expired: a fresh challenge (stale=true), not a failure.
            self.nonces.pop(nonce, None)
            return Verdict.CHALLENGE, user
        nc_text, cnonce = p.get("nc", ""), p.get("cnonce", "")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", nc_text) or not cnonce:
            return self._failed(source, user, "bad nc or cnonce")
        expected = md5(f"{self.users[user]}:{nonce}:{nc_text}:{cnonce}:auth:{md5(f'{method}:{uri}')}")
        if not hmac.compare_digest(expected, p.get("response", "").lower()):
            return self._failed(source, user, "wrong password")
        nc = int(nc_text, 16)
        if nc <= entry[1]:
            return self._failed(source, user, "nonce count replayed")
        entry[1] = nc
        return Verdict.OK, user

    def is_stale(self, header: str | None) -> bool:
        p = parse_authorization(header or "") or {}
        return bool(p.get("nonce")) and p["nonce"] not in self.nonces

    def _failed(self, source: tuple, user: str | None, why: str) -> tuple[str, None]:
        # One line per failure, with the address first-class: a fail2ban filter
        # matches `linebox.sip.auth: authentication failed .* from <HOST>:` (docs/sip.md).
        log.warning("authentication failed for %r from %s:%s (%s)", user, source[0], source[1], why)
        self.limiter.failed(source[0])
        return Verdict.FAILED, None


class FailureLimiter:
    """Failed authentications per source address, as a token bucket: ``BURST`` failures
    at once, then one every ``REFILL_SECONDS``. Only the failing address is blocked."""

    BURST = 10
    REFILL_SECONDS = 6.0
    MAX_ADDRESSES = 4096

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.buckets: OrderedDict[str, list] = OrderedDict()   # address -> [tokens, at]

    def _bucket(self, address: str) -> list:
        now = self.clock()
        b = self.buckets.get(address)
        if b is None:
            b = self.buckets[address] = [float(self.BURST), now]
            while len(self.buckets) > self.MAX_ADDRESSES:
                self.buckets.popitem(last=False)
        b[0] = min(self.BURST, b[0] + (now - b[1]) / self.REFILL_SECONDS)
        b[1] = now
        return b

    def blocked(self, address: str) -> bool:
        return address in self.buckets and self._bucket(address)[0] < 1.0

    def failed(self, address: str) -> None:
        b = self._bucket(address)
        b[0] = max(0.0, b[0] - 1.0)
        if b[0] < 1.0:
            log.warning("too many authentication failures from %s; ignoring it for a while", address)
