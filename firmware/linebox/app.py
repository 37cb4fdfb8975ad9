"""Wiring: the store, prompts, lamps and one runner per line, for `linebox run`
(``linebox.run``) and `linebox sim` (``linebox.sim.runner``) alike."""

import logging
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from linebox.calls.engine import LineRunner
from linebox.calls.flows import Services, answer, prepare_names
from linebox.calls.prompts import Prompts
from linebox.config import device_tz
from linebox.errors import LineboxError
from linebox.hw.leds import MessageLeds
from linebox.linesettings import LineSettings
from linebox.voicemail.store import Store

log = logging.getLogger(__name__)
RETENTION_EVERY = 3600.0   # seconds of (store) clock between retention runs


class Appliance:
    """One Linebox: its store, its lines, its lamps."""

    def __init__(self, config, bus, clock=time.time, led_backend=None) -> None:
        self.config = config
        self.bus = bus
        self.clock = clock
        self.data_dir = Path(config.device.data_dir)
        self.tz = device_tz(config.device)
        self.store = Store(self.data_dir, config.boxes, bus=bus, clock=clock, tz=self.tz)
        self._prompts: dict[tuple[str, str], Prompts] = {}
        self.svc = Services(config, self.store, bus, self.prompts_for)
        self.leds = MessageLeds(bus, self.store, config.boxes, led_backend)
        self.runners: list[LineRunner] = []
        # What rings the lines' IP phones (gateway.phones.Phones): the SIP service in
        # `linebox run`, the scenario's phones in `linebox sim`; None: lines ring no phone.
        self.phones = None
        # Answering and rings as changed from outside (commands) over the config's values.
        self.settings = LineSettings(self.data_dir, config.lines)
        self.schedules = {line.id: line.schedule for line in config.lines}
        self._next_retention = 0.0
        self.reporter = None
        self.mailer = None
        self._mailed: deque[tuple[str, str]] = deque()   # mails the server took
        self.transcriber = None
        self.calllog = _call_log(config, bus, self.data_dir, clock, self._route_of)

    def _route_of(self, line_id: int) -> str | None:
        try:
            return self.config.line(line_id).route
        except KeyError:
            return None

    def prompts_for(self, language: str, voice: str = "auto") -> Prompts:
        p = self._prompts.get((language, voice))
        if p is None:
            p = Prompts(language, extra_dirs=[self.data_dir / "prompts" / language], voice=voice)
            self._prompts[(language, voice)] = p
        return p

    # -- reporting: MQTT and e-mail subscribe to the bus -------------------------
    def start_reporting(self) -> None:
        """Create the MQTT reporter and the mailer (before open(), so that messages
        recovered at open are reported and mailed too)."""
        from linebox.report.discovery import configured_extensions, web_url
        from linebox.report.email import Mailer
        from linebox.report.mqtt import MqttReporter
        from linebox.report.outbox import Outbox

        cfg = self.config
        tz = self.tz
        if cfg.mqtt is not None:
            outbox = Outbox(self.data_dir / "outbox", clock=self.clock, tz=tz)
            self.reporter = MqttReporter(cfg.mqtt, cfg.device, self.bus, outbox, self,
                                         self.run_command, clock=self.clock,
                                         configuration_url=web_url(cfg),
                                         extensions=configured_extensions(cfg))
        if cfg.email is not None:
            self.mailer = Mailer(cfg.email, cfg.boxes, self.data_dir / "mailq", self.clock,
                                 lookup=self.store.get, tz=tz, device_name=cfg.device.name,
                                 after_sent=self.after_mail,
                                 line_plans={line.id: line.plan for line in cfg.lines},
                                 transcript_wait=(cfg.transcription.email_wait_seconds
                                                  if cfg.transcription is not None else 0.0))
            self.bus.subscribe(self.mailer.handle)
        if cfg.transcription is not None:
            from linebox.report.transcribe import Transcriber, make_engine
            from linebox.wavfile import read_wav

            self.transcriber = Transcriber(
                cfg.transcription, self.data_dir / "transcribeq", make_engine(cfg.transcription),
                read_wav, clock=self.clock, lookup=self.store.get,
                language_of=lambda box: cfg.boxes[box].language if box in cfg.boxes else None)
            self.bus.subscribe(self.transcriber.handle)

    def run_reporting(self) -> None:
        if self.reporter is not None:
            self.reporter.start()
        if self.mailer is not None:
            self.mailer.start()
        if self.transcriber is not None:
            self.transcriber.start()

    def process_commands(self) -> None:
        self._apply_mailed()
        if self.reporter is not None:
            self.reporter.process_commands()
        self.apply_transcripts()

    def apply_transcripts(self) -> None:
        """Record what the transcription worker finished (on the thread that owns the store)."""
        if self.transcriber is None:
            return
        for message, text, how in self.transcriber.take_results():
            if text is None:
                self.bus.publish({"event": "transcription_failed", "id": message, "reason": how})
                continue
            try:
                self.store.set_transcript(message, text, how)
            except LineboxError as e:       # purged meanwhile: nothing to attach it to
                log.info("transcript of message %s not kept: %s", message, e)

    def stop_reporting(self, timeout: float = 5.0) -> None:
        """Give the broker and the mail server up to ``timeout`` to take what is pending."""
        if self.transcriber is not None:
            self.transcriber.flush(timeout)
            self.transcriber.stop()
            self.apply_transcripts()
            self.transcriber = None
        if self.reporter is not None:
            self.reporter.flush(timeout)
            self.reporter.stop()
            self.reporter = None
        if self.mailer is not None:
            self.mailer.flush(timeout)
            self.mailer.stop()
            self.mailer = None

    # -- the state source and command target of the MQTT reporter ----------------
    def line_states(self) -> dict[int, str]:
        by_id = {r.id: r.state for r in self.runners}
        return {line.id: by_id.get(line.id, "idle") for line in self.config.lines}

    def box_counts(self) -> dict[str, dict]:
        return {b: self.store.counts(b) for b in self.config.boxes}

    def line_settings(self) -> dict[int, dict]:
        return self.settings.as_dict()

    def saved_messages(self) -> list[dict]:
        """Every saved message (any state but recording): what MQTT checks at start for
        a ``message_saved`` an interrupted run did not queue."""
        return self.store.messages()

    def last_messages(self) -> dict[str, dict | None]:
        """Each box's newest message that is not in the trash (Home Assistant's sensor)."""
        out = {}
        for b in self.config.boxes:
            live = self.store.messages(b, ["new", "heard", "saved"])
            out[b] = live[-1] if live else None
        return out

    # -- commands from outside (MQTT, the web portal): linebox.commands -----------
    def run_command(self, action: str, args: dict) -> dict:
        from linebox.commands import dispatch
        return dispatch(self, action, args)

    def reload(self) -> None:
        """Re-read what can change without a restart: the answering and rings defaults
        (what was set from outside stays) and the office hours per line."""
        from linebox.config import load_config

        if not self.config.source or self.config.source.startswith("<"):
            raise LineboxError("reload: this configuration was not read from a file")
        fresh = load_config(self.config.source, data_dir=self.data_dir)
        known = {line.id for line in self.config.lines}
        self.settings.reconfigure([line for line in fresh.lines if line.id in known])
        for line in fresh.lines:
            if line.id in known:
                self.schedules[line.id] = line.schedule

    def open(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LineboxError(f"data folder {self.data_dir}: {e.strerror}") from None
        recovered = self.store.open()
        for m in recovered:
            log.warning("recovered an interrupted recording as message %s in box %s", m["id"], m["box"])
        self.leds.sync()
        prepare_names(self.svc)       # each box's name spoken once, before any call
        self.maintain()

    def warm_prompts(self):
        """Load the human-voice clips every box may say in a background thread, so that
        no call waits for a file the first time (a few seconds here, a minute on a Pi
        Zero). The simulator does not: it loads what a call plays when it plays it."""
        import threading

        wanted = {(b.language, b.prompts or self.config.device.prompts) for b in self.config.boxes.values()}
        prompts = [self.prompts_for(lang, voice) for lang, voice in sorted(wanted)]
        t = threading.Thread(target=lambda: [p.warm() for p in prompts], name="prompts-warm", daemon=True)
        t.start()
        return t

    def close(self) -> None:
        self.stop_reporting()
        self.store.close()

    def start(self, warm_prompts: bool = False) -> None:
        """Bring the appliance up, in the one order that works: the reporters first (so
        that what the store recovers at open is reported and mailed), then the store,
        then (optionally) the prompt warm-up, then the reporters' threads."""
        self.start_reporting()
        self.open()
        if warm_prompts:
            self.warm_prompts()
        self.run_reporting()

    def stop(self) -> None:
        """Let the reporters hand over what is pending, then close the store."""
        self.close()

    def add_line(self, line, cfg) -> LineRunner:
        group = None
        sip = self.config.sip
        if cfg.ring or (sip is not None and sip.enabled and sip.mode == "trunk"):
            # (in trunk mode every line's calls ring the PBX: gateway/trunk.py)
            from linebox.gateway.ringgroup import RingGroup
            group = RingGroup(cfg, lambda: self.phones, self.svc)
        runner = LineRunner(
            line, cfg.id, cfg.plan, self.bus, answer(self.svc, cfg),
            rings_needed=lambda: self.rings_needed(cfg, phones=group is not None and group.ringing),
            answering=lambda: self.answering_now(cfg), block=cfg.block, ring_group=group)
        self.runners.append(runner)
        return runner

    def office_hours(self, cfg):
        """The line's schedule entry covering the appliance's time now (in the device's
        zone, on the appliance clock: virtual in `linebox sim`), or None."""
        schedule = self.schedules.get(cfg.id, cfg.schedule)
        if not schedule:
            return None
        now = datetime.fromtimestamp(self.clock(), UTC).astimezone(self.tz)
        return next((h for h in schedule if h.covers(now)), None)

    def answering_now(self, cfg) -> bool:
        """Answering switched on (config, MQTT) and not in hours the office answers itself."""
        hours = self.office_hours(cfg)
        return self.settings.answering(cfg.id) and (hours is None or hours.answer)

    def rings_needed(self, cfg, phones: bool = False) -> int:
        """Rings before the line's route answers: ``ring_rings`` while its phones ring
        for the call, else the line's (or its office hours') ``rings``; the toll saver
        shortens either."""
        hours = self.office_hours(cfg)
        rings = hours.rings if hours is not None else self.settings.rings(cfg.id)
        if phones:
            rings = cfg.ring_rings
        if cfg.toll_saver_rings and any(self.store.counts(b.number)["new"]
                                      for b in self.config.boxes_for_line(cfg.id)):
            return min(cfg.toll_saver_rings, rings)
        return rings

    def after_mail(self, box: str, message: str) -> None:
        """The mail server took a message's mail (called on the mailer's thread): noted,
        and applied by process_commands, on the thread that owns the store and the bus."""
        self._mailed.append((box, message))

    def _apply_mailed(self) -> None:
        """``email_marks_heard`` / ``email_deletes`` of the box, through the store (so
        lamps and MQTT follow). Only a message still new: one the owner already handled
        by phone while the mail waited for the server is left as the owner left it."""
        while self._mailed:
            box, message = self._mailed.popleft()
            cfg = self.config.boxes.get(box)
            rec = self.store.get(message) if cfg is not None else None
            if rec is None or rec["state"] != "new":
                continue
            if cfg.email_deletes:
                self.store.delete(message)
                log.info("box %s: message %s mailed, moved to trash (email_deletes)", box, message)
            elif cfg.email_marks_heard:
                self.store.set_state(message, "heard")
                log.info("box %s: message %s mailed, marked heard (email_marks_heard)", box, message)

    def maintain(self) -> None:
        """Periodic housekeeping on the store clock: retention; messages a full disk kept
        from being saved are saved once there is room."""
        self.store.retry_unsaved()
        now = self.clock()
        if now >= self._next_retention:
            self.store.apply_retention(now)
            self._next_retention = now + RETENTION_EVERY


def _call_log(config, bus, data_dir, clock, route_of):
    """The call log (voicemail/calllog.py), in the device's time zone."""
    import zoneinfo

    from linebox.voicemail.calllog import CallLog

    tz = zoneinfo.ZoneInfo(config.device.timezone) if config.device.timezone else None
    return CallLog(bus, data_dir, clock, tz, route_of=route_of)
