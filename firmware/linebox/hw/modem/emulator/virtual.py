"""An emulated modem in the same process, on the virtual clock of ``linebox sim``."""

from array import array

from linebox.clock import ManualClock
from linebox.hw.line import Line, Tick
from linebox.hw.modem.emulator.core import F, ModemCore, SimLineSide


class EmulatedPort:
    """The driver's port to a ``ModemCore`` in the same process.

    A read returns what the modem has sent. With nothing there, line time passes (one
    frame at a time) while the modem is making something (receive audio, a transmit
    buffer playing out); else the modem has nothing to say: the clock jumps to the
    deadline."""

    def __init__(self, core: ModemCore, clock: ManualClock) -> None:
        self.core = core
        self.clock = clock

    def read(self, deadline: float) -> bytes | None:
        core, clock = self.core, self.clock
        while True:
            core.now = clock.now()
            core._due(core.now)
            data = core.take_output()
            if data:
                return data
            # The driver waits for what the modem makes only as time passes (audio in
            # receive, the OK after its transmit buffer played out): let line time pass.
            busy = (core.mode in ("vrx", "vtr") and core.streaming) or \
                (core._ending and core._tx_raw)
            if not busy or clock.now() + F > deadline:
                clock.sleep(deadline - clock.now())
                return None
            clock.sleep(F)
            core.step(clock.now())

    def write(self, data: bytes) -> None:
        self.core.now = self.clock.now()
        self.core.receive(data)

    def drop_dtr(self, seconds: float) -> None:
        self.core.dtr_drop()

    def close(self) -> None:
        self.core.dtr_drop()       # closing the port drops DTR (HUPCL)


class ModemSimLine(Line):
    """``driver = "modem-sim"``: the real ``ModemLine`` and an emulated ``chipset`` modem on
    a simulated exchange line, all on the virtual clock (one line frame per tick)."""

    reports_dtmf = True
    reports_hangup = True

    def __init__(self, simline, line_id: int, plan: str, chipset: str, *,
                 duplex: str = "auto", init: str | None = None) -> None:
        from linebox.hw.modem.line import ModemLine

        super().__init__(line_id, plan)
        self.clock = ManualClock()
        self.core = ModemCore(chipset, SimLineSide(simline), plan=plan, record=False)
        self.simline = simline
        self.driver = ModemLine(
            line_id, f"emulated {chipset} modem", plan, rtscts=False, duplex=duplex,
            init=init, serial_factory=lambda *a, clock: EmulatedPort(self.core, clock),
            clock=self.clock, callerid_quiet=0.3)
        self._frame_t = 0.0

    @property
    def full_duplex(self) -> bool:
        return self.driver.full_duplex

    def tick(self, out: array | None = None) -> Tick:
        self._frame_t += F
        self.clock.t = max(self.clock.t, self._frame_t)
        self.core.step(self.clock.t)
        return self.driver.tick(out)

    def set_hook(self, off_hook: bool) -> None:
        self.off_hook = off_hook
        self.driver.set_hook(off_hook)

    def identify(self) -> dict:
        return self.driver.identify()

    def close(self) -> None:
        self.driver.close()
