"""Who is logged in to the portal: sessions, the administrator's password, login limits.

Sessions are random ids (``secrets.token_urlsafe``, 256 bits) kept on the server, so
logout (or the idle timeout) ends a session for good: a replayed cookie finds nothing.
They survive a restart: ``sessions.json`` in the data folder (mode 0600, written
atomically) keeps each session's SHA-256 of its id (never the id itself: whoever reads
the file still cannot log in with it), its user, its CSRF token and when it was last
used (wall-clock time, so the idle timeout runs across the restart too). Each session
has its own CSRF token, which every state-changing request must send as ``X-CSRF-Token``.

The administrator's login has a lockout like a box's (``AdminLockout``): 10 wrong
passwords within an hour lock it for 15 minutes, each lock twice as long as the one
before (at most a day); kept in ``admin-logins.json`` (0600) across restarts, logged,
lifted by a right password after it ends or by setting a new one.

Box owners log in with the box number and its PIN, checked against the same hash and
counted by the same lockout as a login by phone (the store's ``login_failed`` /
``is_locked``). The administrator's password is kept as a salted scrypt hash in
``admin.json`` in the data folder (mode 0600), set by ``linebox admin-password``.
"""

import base64
import hashlib
import hmac
import json
import logging
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

log = logging.getLogger("linebox.web.audit")

ADMIN_FILE = "admin.json"
ADMIN = "admin"
MIN_PASSWORD = 8
MAX_PASSWORD = 256
# Per client address: this many login attempts within the window, then 429.
RATE_ATTEMPTS = 10
RATE_WINDOW = 60.0
MAX_SESSIONS = 200
SESSIONS_FILE = "sessions.json"
SAVE_EVERY = 60.0            # seconds: last-use times are written at most this often
ADMIN_LOCK_FILE = "admin-logins.json"
ADMIN_LOCK_FAILURES = 10     # wrong administrator passwords ...
ADMIN_LOCK_WINDOW = 3600.0   # ... within this many seconds ...
ADMIN_LOCK_SECONDS = 900.0   # ... lock the administrator's login this long, doubling each lock
ADMIN_LOCK_MAX = 86400.0


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


def _key(sid: str) -> str:
    """What the server keeps of a session id: its SHA-256."""
    return hashlib.sha256(sid.encode("utf-8", "replace")).hexdigest()


def _write_private(path: Path, blob: bytes) -> None:
    old = os.umask(0o077)            # created 0600
    try:
        write_file_atomic(path, blob)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)


class Sessions:
    """Sessions by id, each ended by logout or after ``idle`` seconds without a request;
    kept in ``path`` (if given) across restarts."""

    def __init__(self, idle: float, clock=time.monotonic, path: Path | None = None,
                 wall=time.time) -> None:
        self.idle = idle
        self.clock = clock
        self.wall = wall
        self.path = Path(path) if path is not None else None
        self._by_key: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._saved_at = float("-inf")
        self._load()

    def create(self, user: str, box: str | None) -> Session:
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user, box, self.clock())
        with self._lock:
            self._expire()
            if len(self._by_key) >= MAX_SESSIONS:      # the oldest goes
                oldest = min(self._by_key, key=lambda k: self._by_key[k].last_seen)
                del self._by_key[oldest]
            self._by_key[_key(s.id)] = s
            self._save()
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        key = _key(sid)
        with self._lock:
            s = self._by_key.get(key)
            if s is None:
                return None
            now = self.clock()
            if now - s.last_seen > self.idle:
                del self._by_key[key]
                self._save()
                return None
            s.last_seen = now
            s.id = sid                   # a session read from the file knew only the hash
            if now - self._saved_at > SAVE_EVERY:
                self._save()
            return s

    def end(self, sid: str) -> None:
        with self._lock:
            if self._by_key.pop(_key(sid), None) is not None:
                self._save()

    def end_box(self, box: str, keep: str | None = None) -> None:
        """End every session of a box (its PIN changed), but ``keep``."""
        kept = _key(keep) if keep else None
        with self._lock:
            for k in [k for k, s in self._by_key.items() if s.box == box and k != kept]:
                del self._by_key[k]
            self._save()

    def flush(self) -> None:
        with self._lock:
            self._save()

    def _expire(self) -> None:
        now = self.clock()
        for k in [k for k, s in self._by_key.items() if now - s.last_seen > self.idle]:
            del self._by_key[k]

    # ------------------------------------------------------------ the file

    def _save(self) -> None:
        if self.path is None:
            return
        now, wall = self.clock(), self.wall()
        doc = {k: {"user": s.user, "box": s.box, "csrf": s.csrf, "seen": round(wall - (now - s.last_seen), 3)}
               for k, s in self._by_key.items()}
        try:
            _write_private(self.path, (json.dumps(doc) + "\n").encode())
            self._saved_at = now
        except OSError as e:
            log.error("web: %s: %s (sessions end at the next restart)", self.path, e.strerror or e)

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.warning("web: %s is unreadable (%s): everyone logs in again", self.path, e)
            return
        now, wall = self.clock(), self.wall()
        for k, v in (doc.items() if isinstance(doc, dict) else ()):
            try:
                user, box, csrf, seen = v["user"], v["box"], v["csrf"], float(v["seen"])
            except (KeyError, TypeError, ValueError):
                continue
            ok = (isinstance(k, str) and len(k) == 64 and isinstance(csrf, str) and len(csrf) >= 32
                  and (user == ADMIN and box is None
                       or isinstance(box, str) and box.isdigit() and user == f"box {box}"))
            if ok and 0 <= wall - seen <= self.idle:
                self._by_key[k] = Session("", csrf, user, box, now - (wall - seen))


class AdminLockout:
    """The administrator's login lockout (see the module docstring), on the wall clock."""

    def __init__(self, data_dir: Path, clock=time.time) -> None:
        self.path = Path(data_dir) / ADMIN_LOCK_FILE
        self.clock = clock
        self._lock = threading.Lock()

    def _read(self) -> dict:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(doc, dict):
                return {"failures": [float(t) for t in doc.get("failures", [])][-ADMIN_LOCK_FAILURES:],
                        "locked_until": float(doc.get("locked_until", 0.0)), "locks": int(doc.get("locks", 0))}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError) as e:
            # Unreadable: counted as locked until it is fixed would lock the owner out for
            # good; counted as new, it costs a guesser nothing. Logged, and counted anew.
            log.error("web: %s is unreadable (%s): the administrator's failures are counted anew", self.path, e)
        return {"failures": [], "locked_until": 0.0, "locks": 0}

    def _write(self, doc: dict) -> None:
        try:
            _write_private(self.path, (json.dumps(doc) + "\n").encode())
        except OSError as e:
            log.error("web: %s: %s", self.path, e.strerror or e)

    def locked_until(self) -> float | None:
        with self._lock:
            until = self._read()["locked_until"]
            return until if self.clock() < until else None

    def failed(self, who: str) -> bool:
        """Count a wrong password; whether the administrator's login is now locked."""
        with self._lock:
            doc = self._read()
            now = self.clock()
            doc["failures"] = [t for t in doc["failures"] if now - t < ADMIN_LOCK_WINDOW] + [now]
            locked = False
            if len(doc["failures"]) >= ADMIN_LOCK_FAILURES:
                seconds = min(ADMIN_LOCK_SECONDS * 2 ** min(doc["locks"], 20), ADMIN_LOCK_MAX)
                doc.update(failures=[], locked_until=now + seconds, locks=doc["locks"] + 1)
                locked = True
                log.warning("web: %d wrong administrator passwords within an hour (the last from %s): "
                            "administrator login locked for %d min", ADMIN_LOCK_FAILURES, who, seconds // 60)
            self._write(doc)
            return locked

    def ok(self) -> None:
        with self._lock:
            if self.path.exists():
                try:
                    self.path.unlink()
                except OSError as e:
                    log.error("web: %s: %s", self.path, e.strerror or e)


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
    """Keep the administrator's password hash; a new password also lifts a lockout."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_private(data_dir / ADMIN_FILE, (json.dumps({"hash": hashed}) + "\n").encode())
    try:
        (data_dir / ADMIN_LOCK_FILE).unlink()
    except FileNotFoundError:
        pass


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
