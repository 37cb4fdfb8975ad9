"""Logins to a box: PIN hashes (changed by phone, else from the configuration) and the
lockout of login after repeated failures: one counter per box for every door (phone,
SIP, web), so that guessing from all of them together is as slow as from one. With
10 failures an hour locking 15 min, then 30, 60, ... and a lock for good at 100
failures without a success, a patient guesser gets 100 guesses in about five days and
then none: a 1 % chance at a 4-digit PIN instead of every PIN in 11 days.

A mixin of :class:`~linebox.voicemail.store.Store`: it keeps its state in the store's
meta document and ``pins.json``, under the store's lock, on the store's clock.
"""

import json
import logging

from linebox.fileio import move_aside, write_file_atomic
from linebox.voicemail.pins import hash_pin, pin_problem, verify_pin
from linebox.voicemail.storebase import StoreError, writes

log = logging.getLogger(__name__)

LOCK_FAILURES = 10                        # this many failed logins ...
LOCK_WINDOW = 3600.0                      # ... within this many seconds ...
LOCK_SECONDS = 900.0                      # ... lock remote login this long, doubling each lock
LOCK_FOREVER = 100                        # failures without a success: locked until unlocked


class LoginsMixin:
    """PINs and lockout of the store's boxes (see the module docstring)."""

    def pin_hash(self, box: str) -> str | None:
        """The hash of the PIN changed by phone, else the one from the configuration."""
        with self._lock:
            return self._pins.get(box) or getattr(self.boxes.get(box), "pin_hash", None)

    @writes
    def set_pin_hash(self, box: str, pin_hash: str) -> None:
        with self._lock:
            self._box(box)
            pins = dict(self._pins, **{box: pin_hash})
            write_file_atomic(self.pins_file, (json.dumps(pins, indent=1, sort_keys=True)
                                               + "\n").encode())
            self._pins = pins
            log.info("box %s: PIN changed by phone", box)

    @writes
    def set_pin(self, box: str, pin: str) -> None:
        """Change a box's PIN (phone, web): refused with the reason when it is not 4 to
        10 digits or is trivial (see :func:`~linebox.voicemail.pins.pin_problem`)."""
        problem = pin_problem(pin, box)
        if problem is not None:
            raise StoreError(f"box {box}: {problem}")
        self.set_pin_hash(box, hash_pin(pin))

    def check_pin(self, box: str, pin: str, source: str = "phone") -> str:
        """The one PIN check of every door (phone, SIP, web): "ok", "wrong" or "locked".

        "locked" means the PIN was not even looked at. A wrong PIN counts against the
        box (the failure that locks it still answers "wrong"); a box that is not
        configured is always "wrong" and counts nothing, so the answer never tells
        which boxes exist."""
        with self._lock:
            if box not in self.boxes:
                return "wrong"
            if self.is_locked(box):
                return "locked"
            pin_hash = self.pin_hash(box)
            ok = bool(pin_hash) and verify_pin(pin, pin_hash)
            if self._read_only:
                # A store that cannot write (a read-only data folder: a fault was
                # raised) still lets the owner in; it cannot count failures.
                return "ok" if ok else "wrong"
            if ok:
                self.login_ok(box)
                return "ok"
            self.login_failed(box, source)
            return "wrong"

    @writes
    def login_failed(self, box: str, source: str = "phone") -> bool:
        """Count a failed login; returns whether login is now locked.

        The tenth failure within an hour locks login, each lock twice as long as the one
        before (15 min, 30 min, 1 h, ...); the LOCK_FOREVER-th failure without a success
        locks it until :meth:`unlock`. A lock publishes ``box_locked``."""
        with self._lock:
            self._box(box)
            now = self.clock()
            meta = self._meta()
            entry = _entry(meta, box)
            entry["failures"] = [t for t in entry["failures"] if now - t < LOCK_WINDOW] + [now]
            entry["total"] += 1
            event = None
            if entry["total"] >= LOCK_FOREVER:
                if not entry["for_good"]:
                    entry["for_good"] = True
                    entry["locks"] += 1
                    event = self._lock_event(box, entry, None, source)
                    log.warning("box %s: %d failed logins without a success: login locked "
                                "until the owner or an administrator unlocks it",
                                box, entry["total"])
            elif len(entry["failures"]) >= LOCK_FAILURES:
                entry["failures"] = []
                seconds = LOCK_SECONDS * 2 ** min(entry["locks"], 20)
                entry["locks"] += 1
                entry["locked_until"] = now + seconds
                event = self._lock_event(box, entry, now + seconds, source)
                log.warning("box %s: %d failed logins within an hour (%s): login locked for "
                            "%d min", box, LOCK_FAILURES, source, seconds // 60)
            self._write_meta(meta)
            if event is not None:
                self._publish(event)
            return entry["for_good"] or now < entry["locked_until"]

    def _lock_event(self, box: str, entry: dict, until: float | None, source: str) -> dict:
        return {"event": "box_locked", "box": box,
                "until": None if until is None else self._iso(until),
                "permanent": until is None, "first": entry["locks"] == 1,
                "failures": entry["total"], "source": source}

    def login_ok(self, box: str) -> None:
        if self._read_only:
            return                 # nothing to forget that a read-only store counted
        with self._lock:
            meta = self._meta()
            if meta["logins"].pop(box, None) is not None:
                self._write_meta(meta)

    @writes
    def unlock(self, box: str, by: str = "admin") -> bool:
        """Lift every lock of ``box`` and forget its failures (the owner or an
        administrator, from the web portal or `linebox unlock`). Returns whether it was
        locked."""
        with self._lock:
            self._box(box)
            was = self.is_locked(box)
            meta = self._meta()
            if meta["logins"].pop(box, None) is not None:
                self._write_meta(meta)
            if was:
                log.warning("box %s: login unlocked by %s", box, by)
                self._publish({"event": "box_unlocked", "box": box, "by": by})
            return was

    def is_locked(self, box: str) -> bool:
        with self._lock:
            entry = self._meta()["logins"].get(box)
            return entry is not None and (bool(entry.get("for_good"))
                                          or self.clock() < entry.get("locked_until", 0.0))

    def lock_state(self, box: str) -> dict:
        """For the portal and the CLI: ``locked``, ``until`` (ISO, None for good or when
        not locked), ``permanent``, ``failures`` since the last success."""
        with self._lock:
            entry = _entry(self._meta(), box)
            permanent = entry["for_good"]
            timed = self.clock() < entry["locked_until"]
            return {"locked": permanent or timed, "permanent": permanent,
                    "until": self._iso(entry["locked_until"]) if timed and not permanent else None,
                    "failures": entry["total"]}

    def _load_pins(self, read_only: bool = False) -> dict[str, str]:
        try:
            pins = json.loads(self.pins_file.read_text(encoding="utf-8"))
            if not isinstance(pins, dict) or not all(isinstance(v, str) for v in pins.values()):
                raise ValueError("not an object of strings")
            return pins
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            if read_only:
                log.warning("%s is unreadable (%s)", self.pins_file, e)
                return {}
            aside = move_aside(self.pins_file, "corrupt")
            log.error("%s is unreadable (%s, kept as %s): PINs from the configuration apply",
                      self.pins_file, e, aside.name)
            return {}


def _entry(meta: dict, box: str) -> dict:
    """The lockout state of a box (older databases kept only failures and locked_until)."""
    entry = meta["logins"].setdefault(box, {})
    if not isinstance(entry, dict):
        entry = meta["logins"][box] = {}
    entry.setdefault("failures", [])
    entry.setdefault("locked_until", 0.0)
    entry.setdefault("locks", 0)
    entry.setdefault("total", len(entry["failures"]))
    entry.setdefault("for_good", False)
    return entry
