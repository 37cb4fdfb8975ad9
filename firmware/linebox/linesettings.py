"""Answering on/off and rings per line as changed from outside (MQTT, the CLI, the web
portal): kept in ``data_dir/line-settings.json`` so that they survive a restart and a
``reload``. The configuration's ``answer`` and ``rings`` are the defaults; a value set
back to its default is no longer an override (a later change of the config then counts).
"""

import json
import logging
from pathlib import Path

from linebox.errors import LineboxError
from linebox.fileio import move_aside, write_file_atomic

log = logging.getLogger(__name__)

FILE = "line-settings.json"
MIN_RINGS, MAX_RINGS = 1, 20


def min_rings(line_cfg) -> int:
    """The fewest rings a line may answer after: more than its toll saver (the config's
    rule, so that the toll saver still answers sooner)."""
    return max(MIN_RINGS, line_cfg.toll_saver_rings + 1 if line_cfg.toll_saver_rings else 0)


class LineSettings:
    """The effective answering and rings of each configured line."""

    def __init__(self, data_dir: Path, lines) -> None:
        self.path = Path(data_dir) / FILE
        self._lines = {line.id: line for line in lines}
        self._over: dict[int, dict] = {}
        self._load()

    def answering(self, line_id: int) -> bool:
        return self._over.get(line_id, {}).get("answering", self._lines[line_id].answer)

    def rings(self, line_id: int) -> int:
        return self._over.get(line_id, {}).get("rings", self._lines[line_id].rings)

    def as_dict(self) -> dict[int, dict]:
        """line id -> {"answering", "rings", "min_rings"} (the last for a dashboard's slider)."""
        return {i: {"answering": self.answering(i), "rings": self.rings(i),
                    "min_rings": min_rings(cfg)} for i, cfg in self._lines.items()}

    def set(self, line_id: int, *, answering: bool | None = None, rings: int | None = None) -> None:
        """Change one line's settings, on disk first (LineboxError if it cannot be written)."""
        cfg = self._lines[line_id]
        if rings is not None and not min_rings(cfg) <= rings <= MAX_RINGS:
            raise LineboxError(f"line {line_id}: rings must be from {min_rings(cfg)} to {MAX_RINGS}"
                               + (f" (more than its toll_saver_rings, {cfg.toll_saver_rings})"
                                  if cfg.toll_saver_rings else ""))
        over = {k: dict(v) for k, v in self._over.items()}
        entry = over.setdefault(line_id, {})
        if answering is not None:
            entry["answering"] = bool(answering)
        if rings is not None:
            entry["rings"] = int(rings)
        self._save(self._pruned(over))

    def reconfigure(self, lines) -> None:
        """New defaults from a re-read configuration (``reload``); overrides stay, except
        rings the new toll saver no longer allows."""
        self._lines = {line.id: line for line in lines}
        over = {i: dict(v) for i, v in self._over.items() if i in self._lines}
        for i, entry in over.items():
            if "rings" in entry and entry["rings"] < min_rings(self._lines[i]):
                log.warning("line %s: rings %d set from outside is below the toll saver now; "
                            "back to the configured %d", i, entry["rings"], self._lines[i].rings)
                del entry["rings"]
        pruned = self._pruned(over)
        if pruned != self._over:
            self._save(pruned)

    # ------------------------------------------------------------------ disk

    def _pruned(self, over: dict[int, dict]) -> dict[int, dict]:
        out = {}
        for i, entry in over.items():
            cfg = self._lines[i]
            kept = {k: v for k, v in entry.items()
                    if v != (cfg.answer if k == "answering" else cfg.rings)}
            if kept:
                out[i] = kept
        return out

    def _save(self, over: dict[int, dict]) -> None:
        blob = json.dumps({str(i): v for i, v in sorted(over.items())}, indent=1) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_file_atomic(self.path, blob.encode())
        except OSError as e:
            raise LineboxError(f"{self.path}: {e.strerror or e}") from None
        self._over = over

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError, RecursionError) as e:
            self._bad(f"cannot be read ({type(e).__name__})")
            return
        if not isinstance(raw, dict):
            self._bad("is not a JSON object")
            return
        for key, entry in raw.items():
            line_id = int(key) if key.isascii() and key.isdigit() and len(key) < 6 else None
            if line_id not in self._lines or not isinstance(entry, dict):
                continue                        # a line no longer configured: forget it
            cfg, kept = self._lines[line_id], {}
            if isinstance(entry.get("answering"), bool):
                kept["answering"] = entry["answering"]
            r = entry.get("rings")
            if isinstance(r, int) and not isinstance(r, bool) and min_rings(cfg) <= r <= MAX_RINGS:
                kept["rings"] = r
            if kept:
                self._over[line_id] = kept

    def _bad(self, why: str) -> None:
        log.warning("%s %s: set aside, the configured answering and rings apply", self.path, why)
        try:
            move_aside(self.path, "bad")
        except OSError:
            pass
