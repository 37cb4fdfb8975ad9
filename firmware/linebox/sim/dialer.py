"""Simulated IP phones calling out, for `linebox sim`: the scenario's ``[[dial]]`` tables.

At its ``at`` time a dial places its call through the gateway's outbound route, exactly
as the SIP server does for a real phone (`gateway.outbound.Outbound.place`, with the
configuration's ``[[extension]]``: its ``lines`` and ``dial`` patterns apply), then runs
on the virtual clock: it hears the line through the bridge from the early media on
(recorded to ``record``), plays its steps once the call is answered, and hangs up with
``hangup = "bye"`` (or stays until the line's side goes away). Its side of the story is
published for the transcript: ``phone_dial``, ``phone_progress``, ``phone_hangup``.
"""

from linebox.events import PHONE_DIAL, PHONE_HANGUP, PHONE_PROGRESS
from linebox.gateway.outbound import Outbound, Refused
from linebox.hw.line import SILENT_FRAME
from linebox.sim.phones import _frames


class SimDial:
    """One scenario dial."""

    def __init__(self, spec, dialers: "SimDialers") -> None:
        self.spec = spec
        self.dialers = dialers
        self.state = "waiting"           # waiting | calling | done
        self.call = None
        self.heard = []
        self._out = None

    def step(self) -> None:
        if self.state == "waiting":
            if self.dialers.now() >= self.spec.at - 1e-9:
                self._dial()
        elif self.state == "calling":
            self._calling()

    def _dial(self) -> None:
        d = self.dialers
        spec = self.spec
        self._publish(PHONE_DIAL, dialled=spec.number)
        ext = (d.config.extensions or {}).get(spec.extension)
        found = d.router.number_for(spec.number)
        try:
            if ext is None:
                raise Refused(403, "Forbidden", f"no [[extension]] {spec.extension}")
            if found is None:
                raise Refused(404, "Not Found", f"{spec.number} is no outside number")
            self.call = d.router.place(ext, found[0], found[1])
        except Refused as e:
            self._publish(PHONE_PROGRESS, state="failed", status=e.status, reason=str(e))
            self._done("refused")
            return
        self.state = "calling"
        self.call.on_change(self._changed)

    def _changed(self, call) -> None:
        fields = {"state": call.state}
        if call.state == "failed":
            fields.update(status=call.status, reason=call.result)
        elif call.state == "answered":
            fields["status"] = 200
        elif call.state == "early":
            fields["status"] = 183
        if call.state in ("early", "answered", "failed"):
            self._publish(PHONE_PROGRESS, **fields)
        if call.state == "answered":
            self._out = _frames(self.spec.steps)

    def _calling(self) -> None:
        end = self.call.phone_end
        if end.closed:
            self._done(f"line:{end.cause}" if end.closed_by_other else end.cause)
            return
        if self.call.state in ("early", "answered"):
            self.heard.append(end.pull())
        if self._out is None:
            end.push(SILENT_FRAME)
            return
        try:
            frame = next(self._out)
        except StopIteration:
            end.close("bye")
            self._done("bye")
            return
        end.push(frame)

    def _done(self, cause: str) -> None:
        if self.state == "calling" or cause != "refused":
            self._publish(PHONE_HANGUP, cause=cause)
        self.state = "done"
        if self.spec.record is not None:
            from array import array

            from linebox.wavfile import write_wav
            audio = array("h")
            for f in self.heard:
                audio += f
            write_wav(self.spec.record, audio)

    def _publish(self, event: str, **fields) -> None:
        line = self.call.line_id if self.call is not None else None
        self.dialers.bus.publish({"event": event, "t": round(self.dialers.now(), 3), "line": line,
                                  "extension": self.spec.extension, **fields})


class SimDialers:
    """The scenario's dials, stepped once a frame by the simulator's loop."""

    def __init__(self, specs, config, runners, bus, clock) -> None:
        self.config = config
        self.bus = bus
        self.now = clock
        self.router = Outbound(config, runners)
        self.dials = [SimDial(s, self) for s in specs]

    def step(self) -> None:
        for d in self.dials:
            d.step()

    @property
    def busy(self) -> bool:
        """A dial is due or under way: the clock must go frame by frame."""
        return any(d.state != "done" for d in self.dials)
