"""Logins to a box: PIN hashes (changed by phone, else from the configuration) and the
lockout of remote login after repeated failures.

A mixin of :class:`~linebox.voicemail.store.Store`: it keeps its state in the store's
meta document and ``pins.json``, under the store's lock, on the store's clock.
"""

import json
import logging

from linebox.fileio import move_aside, write_file_atomic
from linebox.voicemail.storebase import writes

log = logging.getLogger("linebox.store")

LOCK_FAILURES = 10                        # this many failed logins ...
LOCK_WINDOW = 3600.0                      # ... within this many seconds ...
LOCK_SECONDS = 900.0                      # ... lock remote login this long


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
    def login_failed(self, box: str) -> bool:
        """Count a failed remote login; the tenth within an hour locks login for 15 min.
        Returns whether login is now locked."""
        with self._lock:
            now = self.clock()
            meta = self._meta()
            entry = meta["logins"].setdefault(box, {"failures": [], "locked_until": 0.0})
            entry["failures"] = [t for t in entry["failures"] if now - t < LOCK_WINDOW] + [now]
            if len(entry["failures"]) >= LOCK_FAILURES:
                entry["failures"] = []
                entry["locked_until"] = now + LOCK_SECONDS
                log.warning("box %s: %d failed logins within an hour: login locked for %d min",
                            box, LOCK_FAILURES, LOCK_SECONDS // 60)
            self._write_meta(meta)
            return now < entry["locked_until"]

    @writes
    def login_ok(self, box: str) -> None:
        with self._lock:
            meta = self._meta()
            if meta["logins"].pop(box, None) is not None:
                self._write_meta(meta)

    def is_locked(self, box: str) -> bool:
        with self._lock:
            entry = self._meta()["logins"].get(box)
            return entry is not None and self.clock() < entry["locked_until"]


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
