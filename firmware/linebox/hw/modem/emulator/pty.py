"""An emulated modem behind a pty, on wall time, for the real driver and pyserial."""

import os
import select
import threading
import time
import tty
from pathlib import Path

from linebox.hw.modem.emulator.codecs import decode
from linebox.hw.modem.emulator.core import ModemCore, ScriptedLine


class PtyModem:
    """A ``ModemCore`` behind a pty, on wall time; use as a context manager.

    The driver opens ``path``: a symlink to the current pty, so ``unplug()`` and
    ``replug()`` look like a USB modem going away and coming back. The emulator holds no
    slave fd: when the driver closes the port, the master reads EIO, which is taken as
    DTR going low ([V250] &D2: hang up, command mode).
    """

    def __init__(self, chipset: str, link: str | Path, **core_kw) -> None:
        self.core = ModemCore(chipset, ScriptedLine(), **core_kw)
        self.personality = chipset
        self.path = str(link)
        self.lock = threading.RLock()
        self._master = None
        self._dte_open = False
        self._stop = threading.Event()
        self._thread = None
        self._open_pty()

    # The core's record, read through the harness.
    commands = property(lambda self: self.core.commands)
    stops = property(lambda self: self.core.stops)
    mode = property(lambda self: self.core.mode)
    kind = property(lambda self: self.core.kind)
    offhook = property(lambda self: self.core.offhook)
    p = property(lambda self: self.core.p)
    dtr_drops = property(lambda self: self.core.dtr_drops)

    @property
    def responding(self) -> bool:
        return self.core.responding

    @responding.setter
    def responding(self, value: bool) -> None:
        self.core.responding = value

    @property
    def streaming(self) -> bool:
        return self.core.streaming

    @streaming.setter
    def streaming(self, value: bool) -> None:
        self.core.streaming = value

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, name="modem-emulator", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        self._close_pty()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        tmp = f"{self.path}.tmp"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)
        os.close(slave)
        self._master = master
        self._dte_open = False

    def _close_pty(self) -> None:
        if self._master is not None:
            os.close(self._master)
        self._master = None

    # -- scripting --------------------------------------------------------------------
    def unplug(self) -> None:
        """The USB modem goes away: the port errors and its device file vanishes."""
        with self.lock:
            self._close_pty()
            os.unlink(self.path)
            self.core.out.clear()
            self.core._scheduled.clear()
            self.core._reset()

    def replug(self) -> None:
        """The modem comes back, at the same path, freshly powered up."""
        with self.lock:
            self.core._reset()
            self._open_pty()

    def ring(self, times: int = 1, callerid: dict | None = None, period: float = 0.4) -> None:
        """``times`` RINGs ``period`` s apart; caller ID between the first and second.
        ``callerid`` keys: date, time, number, name (``P``/``O`` for absent), mesg (bytes)."""
        now = time.monotonic()
        with self.lock:
            for i in range(times):
                self.core.schedule(now + i * period, b"\r\nRING\r\n")
            if callerid:
                self.core.schedule(now + period / 2, self.core._callerid_block(callerid))

    def feed_audio(self, samples) -> None:
        """Line audio the modem will hear once off-hook, after what is already queued."""
        with self.lock:
            self.core.line.feed(samples)

    def send_dle(self, code: str | bytes, split: bool = False) -> None:
        """``DLE <code>`` into the stream; ``split``: the DLE, a pause, the code."""
        code = code.encode("latin-1") if isinstance(code, str) else code
        with self.lock:
            if split:
                self.core.inject(b"\x10", 0.1)
                self.core.inject(code)
            else:
                self.core.inject(b"\x10" + code)

    def press_dtmf(self, digit: str, shielded: bool | None = None, repeats: int = 1) -> None:
        """A key as this modem reports it: shielded (``DLE /``, the key ``1 + repeats``
        times, ``DLE ~``) or plain (one ``DLE <key>``)."""
        d = digit.encode()
        if shielded is None:
            shielded = self.core.p["shielded"]
        raw = (b"\x10/" + (b"\x10" + d) * (1 + repeats) + b"\x10~") if shielded else b"\x10" + d
        with self.lock:
            self.core.inject(raw)

    def send_raw(self, data: bytes) -> None:
        with self.lock:
            self.core.inject(data)

    def end_receive(self) -> None:
        with self.lock:
            self.core.end_receive()

    def received_audio(self) -> list[int]:
        """What the modem was given to play, decoded."""
        with self.lock:
            return decode(self.core.kind or "lin16", self._received())

    def received_bytes(self) -> bytes:
        with self.lock:
            return self._received()

    def _received(self) -> bytes:
        return bytes(self.core.audio_in)

    def wait_for(self, predicate, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self):
                    return True
            time.sleep(0.005)
        return False

    # -- the loop ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            with self.lock:
                master = self._master
            if master is None:
                time.sleep(0.005)
                continue
            try:
                ready, _, _ = select.select([master], [], [], 0.005)
            except (OSError, ValueError):
                continue
            with self.lock:
                if master != self._master:
                    continue
                core = self.core
                if ready:
                    try:
                        data = os.read(master, 4096)
                    except OSError:
                        data = None         # no slave open: the driver closed the port
                    if data is None:
                        if self._dte_open:
                            self._dte_open = False
                            core.dtr_drop()
                    else:
                        self._dte_open = True
                        core.now = time.monotonic()
                        core.receive(data)
                else:
                    self._dte_open = True
                core.advance(time.monotonic())
                if not self._dte_open:
                    core.out.clear()
                else:
                    self._flush(core)
            if ready and not self._dte_open:
                time.sleep(0.005)

    def _flush(self, core: ModemCore) -> None:
        if not core.out:
            return
        try:
            n = os.write(self._master, core.out[:4096])
        except BlockingIOError:
            return
        except OSError:
            core.out.clear()
            return
        del core.out[:n]
