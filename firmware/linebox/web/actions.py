"""The one place where the portal reads and changes the appliance.

Every call takes the daemon's lock (TinyDB is single-process and the line loops touch
the store under the same lock), and every change goes through the Appliance or the
Store, which publish on the bus: the lamps, MQTT and e-mail follow a change made here
exactly as one made by phone. When the shared command table lands, the changing
methods below are the ones to re-point at it.
"""

import logging
from contextlib import AbstractContextManager

from linebox.errors import LineboxError
from linebox.voicemail.store import GREETING_KINDS, STATES, NoSuchMessage

audit = logging.getLogger("linebox.web.audit")


class ActionError(LineboxError):
    """A change the store refused; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class Portal:
    """The appliance as the web sees it: reads and changes under the daemon's lock."""

    def __init__(self, app, lock: AbstractContextManager, calllog=None) -> None:
        self.app = app
        self.lock = lock
        self.calllog = calllog
        # A snapshot of every message, read once under the lock and dropped on the store's
        # events (every change of a message publishes one, under the same lock): five browsers
        # reloading a 500-message box hold the line loops' lock once, not five times a
        # page (the store parses its whole database on each query).
        self._snapshot: tuple[list[dict], dict[str, dict]] | None = None
        app.bus.subscribe(self._forget)

    def _forget(self, ev: dict) -> None:
        kind = ev.get("event", "")
        if kind == "box_changed" or kind.startswith("message_"):
            self._snapshot = None

    def _messages(self) -> tuple[list[dict], dict[str, dict]]:
        snap = self._snapshot
        if snap is None:
            with self.lock:
                msgs = self.app.store.messages(None, STATES)
                snap = (msgs, {m["id"]: m for m in msgs})
                self._snapshot = snap
        return snap

    # ---------------------------------------------------------------- reading

    @property
    def config(self):
        return self.app.config

    @property
    def store(self):
        return self.app.store

    @property
    def data_dir(self):
        return self.app.data_dir

    @property
    def bus(self):
        return self.app.bus

    def line_settings(self) -> dict:
        with self.lock:
            return self.app.line_settings()

    def box_numbers(self) -> list[str]:
        return list(self.app.config.boxes)

    def box_summary(self, number: str) -> dict:
        """Counted as Store.counts counts (and MQTT shows)."""
        return summary(self.app.config, self._messages()[0], number)

    def messages(self, box: str) -> list[dict]:
        """The box's messages, trash included, oldest first (shared dicts: do not change)."""
        return [m for m in self._messages()[0] if m["box"] == box]

    def message(self, message_id: str) -> dict | None:
        return self._messages()[1].get(message_id)

    def lines(self) -> list[dict]:
        with self.lock:
            states = self.app.line_states()
            faults = {r.id: r.fault for r in self.app.runners}
            cids = {r.id: r.callerid for r in self.app.runners}
            settings = self.app.line_settings()
        out = []
        for cfg in self.app.config.lines:
            cid = cids.get(cfg.id)
            out.append({"id": cfg.id, "state": states[cfg.id], "fault": faults.get(cfg.id),
                        "caller_number": _cid(cid, "number"), "caller_name": _cid(cid, "name"),
                        "route": cfg.route, **settings[cfg.id]})
        return out

    def calls(self) -> list[dict]:
        return self.calllog.calls() if self.calllog is not None else []

    def greeting_file(self, box: str, kind: str = "unavailable"):
        with self.lock:
            return self.app.store.greeting_path(box, kind)

    def greetings(self, box: str) -> dict:
        """Which of the three greeting kinds the box has (one question for the box page)."""
        with self.lock:
            return {k: self.app.store.greeting_path(box, k) is not None for k in GREETING_KINDS}

    def system_greeting(self, box: str):
        """The samples of the system greeting that names the box."""
        from linebox.calls.flows import system_greeting
        with self.lock:
            return system_greeting(self.app.svc, box)    # what callers hear without their own

    def pin_hash(self, box: str) -> str | None:
        with self.lock:
            return self.app.store.pin_hash(box)

    # ---------------------------------------------------------------- logins (the phone's counter)

    def is_locked(self, box: str) -> bool:
        with self.lock:
            return self.app.store.is_locked(box)

    def login_failed(self, box: str, who: str) -> bool:
        with self.lock:
            locked = self.app.store.login_failed(box, "web")
            # As the phone does: MQTT reports a failed login (line None: from the web).
            self.app.bus.publish({"event": "login", "box": box, "ok": False, "line": None,
                                  "via": "web", "reason": "locked" if locked else None})
        audit.warning("web: failed login to box %s from %s%s", box, who, " (box now locked)" if locked else "")
        return locked

    def login_ok(self, box: str, who: str) -> None:
        with self.lock:
            self.app.store.login_ok(box)
        audit.info("web: box %s logged in from %s", box, who)

    # ---------------------------------------------------------------- changes

    def _change(self, fn, *args):
        with self.lock:
            try:
                return fn(*args)
            except NoSuchMessage as e:
                raise ActionError(str(e), 404) from None
            except LineboxError as e:
                raise ActionError(str(e), 409) from None

    def _command(self, action: str, **args):
        """One state change through the appliance's command table (the same one MQTT
        and `linebox cmd` use), under the daemon's lock."""
        from linebox.commands import dispatch

        with self.lock:
            answer = dispatch(self.app, action, args)
        if not answer["ok"]:
            error = answer["error"] or "refused"
            raise ActionError(error, 404 if error.startswith("no message") else 409)
        return answer.get("result")

    def _after(self, message_id: str) -> dict:
        with self.lock:
            return self.app.store.get(message_id)

    def mark_heard(self, message_id: str, who: str) -> dict:
        if self._command("mark_heard", message=message_id) == 0:
            raise ActionError(f"message {message_id} is not new", 409)
        out = self._after(message_id)
        audit.info("web: %s marked message %s (box %s) heard", who, message_id, out["box"])
        return out

    def save(self, message_id: str, who: str) -> dict:
        self._command("save", message=message_id)
        out = self._after(message_id)
        audit.info("web: %s saved message %s (box %s)", who, message_id, out["box"])
        return out

    def delete(self, message_id: str, who: str) -> dict:
        self._command("delete", message=message_id)
        out = self._after(message_id)
        audit.info("web: %s deleted message %s (box %s) to trash", who, message_id, out["box"])
        return out

    def undelete(self, message_id: str, who: str) -> dict:
        self._command("undelete", message=message_id)
        out = self._after(message_id)
        audit.info("web: %s restored message %s (box %s) from the trash", who, message_id, out["box"])
        return out

    def purge(self, message_id: str, who: str) -> None:
        m = self._after(message_id)
        self._command("purge", message=message_id)
        audit.info("web: %s purged message %s (box %s) for good", who, message_id,
                   m["box"] if m else "?")

    def set_greeting(self, box: str, samples, who: str, kind: str = "unavailable") -> None:
        if kind not in GREETING_KINDS:
            raise ActionError(f"no greeting kind {kind!r}", 400)
        self._change(self.app.store.set_greeting, box, samples, kind)
        audit.info("web: %s uploaded a%s greeting for box %s (%.1f s)", who, _kind_words(kind), box,
                   len(samples) / 8000)

    def clear_greeting(self, box: str, who: str, kind: str = "unavailable") -> None:
        if kind not in GREETING_KINDS:
            raise ActionError(f"no greeting kind {kind!r}", 400)
        self._change(self.app.store.clear_greeting, box, kind)
        audit.info("web: %s removed the%s greeting of box %s", who, _kind_words(kind), box)

    def set_pin_hash(self, box: str, pin_hash: str, who: str) -> None:
        self._change(self.app.store.set_pin_hash, box, pin_hash)
        audit.info("web: %s changed the PIN of box %s", who, box)

    def set_answering(self, line: int, on: bool, who: str) -> None:
        self._command("answering", line=line, on=on)
        audit.info("web: %s turned answering %s on line %s", who, "on" if on else "off", line)

    def set_rings(self, line: int, rings: int, who: str) -> None:
        self._command("rings", line=line, rings=rings)
        audit.info("web: %s set line %s to answer after %d rings", who, line, rings)

    def apply_config_file(self, changed_lines, who: str, what: str) -> None:
        """The configuration file the settings page (in the portal's process) just wrote,
        read again here by the same parser, and applied."""
        import tomllib

        from linebox.config import ConfigError, parse_config

        src = self.app.config.source
        try:
            with open(src, "rb") as f:
                cfg = parse_config(tomllib.load(f), src)
        except (OSError, ConfigError, tomllib.TOMLDecodeError) as e:
            raise ActionError(f"settings: {e}", 400) from None
        self.apply_config(cfg, set(changed_lines), who, what)

    def apply_config(self, cfg, changed_lines, who: str, what: str) -> None:
        """A configuration the settings page wrote: what can change live changes now."""
        with self.lock:
            apply_live(self.app, cfg, changed_lines)
        audit.info("web: %s changed the settings: %s", who, what)


def _kind_words(kind: str) -> str:
    return "" if kind == "unavailable" else f" {kind}"


def summary(config, messages: list[dict], number: str) -> dict:
    """A box's counts from the list of every message, as Store.counts counts."""
    states = [m["state"] for m in messages if m["box"] == number]
    cfg = config.boxes.get(number)
    new = states.count("new")
    saved = states.count("heard") + states.count("saved")
    return {"number": number, "name": cfg.name if cfg else number, "new": new, "saved": saved,
            "total": new + saved, "full": cfg is not None and new + saved >= cfg.max_messages}


def _cid(callerid, key: str):
    """A field of the caller ID a line decoded (a CallerId, or a dict before it)."""
    if callerid is None:
        return None
    return callerid.get(key) if isinstance(callerid, dict) else getattr(callerid, key, None)


def apply_live(app, cfg, changed_lines=()) -> None:
    """Put a freshly validated configuration into the running appliance, in place: boxes
    (names, languages, e-mail, limits), each line's rings, toll saver, route, answering and
    block list, and the attendant. Rings and answering are taken from the file only for the lines in
    ``changed_lines`` (a value set over MQTT stays until the file says otherwise). Lines
    added or removed, drivers and pins need a restart."""
    from dataclasses import replace

    old = app.config
    lines = []
    for line in old.lines:
        try:
            new = cfg.line(line.id)
        except KeyError:
            lines.append(line)
            continue
        lines.append(replace(line, rings=new.rings, toll_saver_rings=new.toll_saver_rings,
                             route=new.route, answer=new.answer, block=new.block))
    merged = replace(old, boxes=cfg.boxes, attendant=cfg.attendant, lines=tuple(lines))
    app.config = merged
    app.svc.config = merged
    app.store.boxes.clear()
    app.store.boxes.update(cfg.boxes)
    from linebox.calls.flows import answer

    for runner in app.runners:
        line_cfg = merged.line(runner.id)
        # The same closures Appliance.add_line makes, over the new line settings: the
        # next call follows them (a call going on keeps its flow).
        runner.flow_factory = answer(app.svc, line_cfg)
        runner.rings_needed = lambda c=line_cfg: app.rings_needed(c)
        runner.block = line_cfg.block
        if hasattr(app, "answering_now"):
            runner.answering = lambda c=line_cfg: app.answering_now(c)
    # The file's values are the new defaults; for the lines the administrator just edited
    # they also replace what was set from outside (MQTT, the portal's own switches).
    app.settings.reconfigure(merged.lines)
    for line in merged.lines:
        if line.id in changed_lines:
            app.settings.set(line.id, rings=line.rings, answering=line.answer)
    app.leds.boxes = app.store.boxes
    app.leds.sync()
