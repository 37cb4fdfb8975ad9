"""Who is logged in to the portal: sessions, the administrator's password, login limits.

Sessions are random ids (``secrets.token_urlsafe``, 256 bits) kept in memory on the
server, so logout (or the idle timeout) ends a session for good: a replayed cookie finds
nothing. A restart logs everyone out, which is fine for an appliance. Each session has
its own CSRF token, which every state-changing request must send as ``X-CSRF-Token``.

Box owners log in with the box number and its PIN, checked against the same hash and
counted by the same lockout as a login by phone (the store's ``login_failed`` /
``is_locked``). The administrator's password is kept as a salted scrypt hash in
``admin.json`` in the data folder (mode 0600), set by ``linebox admin-password``.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from linebox.errors import LineboxError
from linebox.fileio import write_file_atomic
from linebox.voicemail.pins import KEY_BYTES, SALT_BYTES, SCRYPT_N, SCRYPT_P, SCRYPT_R

ADMIN_FILE = "admin.json"
ADMIN = "admin"
MIN_PASSWORD = 8
MAX_PASSWORD = 256
# Per client address: this many login attempts within the window, then 429.
RATE_ATTEMPTS = 10
RATE_WINDOW = 60.0
MAX_SESSIONS = 200


@dataclass
class Session:
    """One logged-in browser: an administrator, or the owner of one box."""

    id: str
    csrf: str
    user: str                      # "admin" or "box <number>"
    box: str | None                # None for the administrator
    last_seen: float = field(default_factory=time.monotonic)

    @property
    def admin(self) -> bool:
        return self.box is None

    def may_see(self, box: str) -> bool:
        return self.box is None or self.box == box


class Sessions:
    """Sessions by id, each ended by logout or after ``idle`` seconds without a request."""

    def __init__(self, idle: float, clock=time.monotonic) -> None:
        self.idle = idle
        self.clock = clock
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str, box: str | None) -> Session:
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user, box, self.clock())
        with self._lock:
            self._expire()
            if len(self._by_id) >= MAX_SESSIONS:      # the oldest goes
                oldest = min(self._by_id.values(), key=lambda x: x.last_seen)
                del self._by_id[oldest.id]
            self._by_id[s.id] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            s = self._by_id.get(sid)
            if s is None:
                return None
            now = self.clock()
            if now - s.last_seen > self.idle:
                del self._by_id[sid]
                return None
            s.last_seen = now
            return s

    def end(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)

    def end_box(self, box: str, keep: str | None = None) -> None:
        """End every session of a box (its PIN changed), but ``keep``."""
        with self._lock:
            for sid in [k for k, s in self._by_id.items() if s.box == box and k != keep]:
                del self._by_id[sid]

    def _expire(self) -> None:
        now = self.clock()
        for sid in [k for k, s in self._by_id.items() if now - s.last_seen > self.idle]:
            del self._by_id[sid]


class RateLimit:
    """At most ``attempts`` within ``window`` seconds per client address."""

    def __init__(self, attempts: int = RATE_ATTEMPTS, window: float = RATE_WINDOW,
                 clock=time.monotonic) -> None:
        self.attempts = attempts
        self.window = window
        self.clock = clock
        self._seen: dict[str, deque] = {}
        self._lock = threading.Lock()

    def allow(self, address: str) -> bool:
        now = self.clock()
        with self._lock:
            if len(self._seen) > 10000:                 # forget idle addresses
                self._seen = {a: q for a, q in self._seen.items() if q and now - q[-1] < self.window}
            q = self._seen.setdefault(address, deque())
            while q and now - q[0] >= self.window:
                q.popleft()
            if len(q) >= self.attempts:
                return False
            q.append(now)
            return True


def csrf_ok(session: Session, token: str | None) -> bool:
    return isinstance(token, str) and hmac.compare_digest(session.csrf.encode(), token.encode("utf-8", "replace"))


# ---------------------------------------------------------------- the administrator's password

def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def hash_password(password: str) -> str:
    """The same scheme and cost as PIN hashes (voicemail.pins), over any UTF-8 password."""
    salt = os.urandom(SALT_BYTES)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                         maxmem=64 * 1024 * 1024, dklen=KEY_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str | None) -> bool:
    try:
        _, n, r, p, salt, key = stored.split("$")
        n, r, p = int(n), int(r), int(p)
        if n > 2**17 or r > 32 or p > 16:
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=n, r=r, p=p,
                             maxmem=64 * 1024 * 1024, dklen=len(base64.b64decode(key)))
    except (AttributeError, ValueError, TypeError, MemoryError):
        return False
    return hmac.compare_digest(got, base64.b64decode(key))


def admin_hash(data_dir: Path) -> str | None:
    try:
        doc = json.loads((Path(data_dir) / ADMIN_FILE).read_text(encoding="utf-8"))
        return doc["hash"] if isinstance(doc, dict) and isinstance(doc.get("hash"), str) else None
    except (OSError, ValueError):
        return None


def store_admin_hash(data_dir: Path, hashed: str) -> None:
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)            # the file is created 0600
    try:
        write_file_atomic(data_dir / ADMIN_FILE, (json.dumps({"hash": hashed}) + "\n").encode())
    finally:
        os.umask(old)
    os.chmod(data_dir / ADMIN_FILE, 0o600)


def _read_password() -> str:
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        first = getpass.getpass("Administrator password: ")
        if getpass.getpass("Again: ") != first:
            raise LineboxError("admin-password: the two passwords differ")
        return first
    raw = sys.stdin.buffer.readline(MAX_PASSWORD * 4 + 2) if sys.stdin is not None else b""
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise LineboxError("admin-password: the password is not UTF-8 text") from None


def cmd_admin_password(args) -> int:
    """`linebox admin-password --config C [--data DIR]`: the portal administrator's password."""
    from linebox.config import load_config

    cfg = load_config(args.config, data_dir=args.data)
    password = _read_password()
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise LineboxError(f"admin-password: a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    try:
        store_admin_hash(cfg.device.data_dir, hash_password(password))
    except OSError as e:
        raise LineboxError(f"admin-password: {cfg.device.data_dir}: {e.strerror or e}") from None
    print(f"administrator password stored in {Path(cfg.device.data_dir) / ADMIN_FILE}")
    return 0
