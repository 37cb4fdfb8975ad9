"""The emulated voice modem itself: ``ModemCore`` and its line sides.

Sources are named in ``linebox.hw.modem.emulator`` (the package docstring); "ASSUMED"
marks what no source settled.
"""

import operator
import re
from array import array
from collections import deque

from linebox import FRAME, RATE
from linebox.dsp.callerid import CallerIdDetector
from linebox.dsp.dtmf import DtmfDetector
from linebox.dsp.plans import get_plan
from linebox.dsp.progress import ProgressDetector
from linebox.hw.line import SILENT_FRAME
from linebox.hw.modem.emulator.codecs import decode, encode, escape

DLE, ETX, SUB, CAN, DC4 = 0x10, 0x03, 0x1A, 0x18, 0x14
F = FRAME / RATE
SHIELD_REPEAT = 0.07           # [VG] IS_101.c: the key repeated every 70 ms during the tone
BUSY_REPEAT = 4.0              # [RCV144] DLE b every 4 s while busy goes on
DIAL_REPEAT = 3.0              # [RCV144] DLE d every 3 s while dial tone goes on
# [CX930] lists these +GCI codes (the CX930xx release notes; ASSUMED: this subset).
CONEXANT_GCI = ("00", "09", "0A", "0F", "16", "20", "26", "31", "3C", "3D", "42", "46",
                "50", "53", "57", "58", "59", "61", "73", "7B", "7E", "82", "8A", "8B",
                "9C", "9F", "A0", "A5", "A6", "B4", "B5", "FE")

PERSONALITIES = {
    # USRobotics USR5637 ("56K FAX USB"). ASSUMED: the ATI3/+GMM wording and firmware
    # version; ATI 5601 is [VG] detect.c and [CA].
    "usr": {
        "ATI": ["5601"],
        "ATI3": ["U.S. Robotics 56K FAX USB V1.2.23"],
        "AT+GMI": ["U.S. Robotics"],
        "AT+GMM": ["U.S. Robotics 56K FAX USB"],
        "vsm": ['1,"UNSIGNED PCM",8,0,(7200,8000),(0),(0)',      # [USR] p. 142, verbatim
                '128,"8-BIT LINEAR",8,0,(7200,8000),(0),(0)',
                '129,"ADPCM",4,0,(7200,8000),(0),(0)',
                '130,"UNSIGNED PCM",8,0,(7200,8000),(0),(0)',
                '131,"ULAW",8,0,(7200,8000),(0),(0)',
                '132,"ALAW",8,0,(7200,8000),(0),(0)',
                '133,"LINEAR",16,0,(7200,8000),(0),(0)'],
        "cid_sep": " = ",             # [CA] parses "NMBR = "
        "vls_answer": "VCON",         # [VG] US_Robotics.c pick_phone_answr "VCON"
        "vtr_test": True,             # issue 17: AT+VTR=? answers OK on the USR5637
        "full_duplex": True,
        "shielded": False,            # [USR] Table 6-2 / [RCV144]: one DLE <key> per press
        "gci": False,                 # ASSUMED: the US model has no +GCI
        "extra_ok": (),
    },
    # Conexant CX93001 (Zoom 3095, StarTech USB56KEMH2, "CX93010" USB sticks). The ATI3
    # string is the one in [NCID]/[CA] logs of the Zoom 3095.
    "conexant": {
        "ATI": ["56000"],
        "ATI3": ["CX93001-EIS_V0.2002-V92"],
        "AT+GMI": ["CONEXANT"],
        "AT+GMM": ["CX93001-EIS_V0.2002-V92"],
        "vsm": ['0,"SIGNED PCM",8,0,8000,0,0',                   # [NCID], [CX818] layout
                '1,"UNSIGNED PCM",8,0,8000,0,0',
                '129,"IMA ADPCM",4,0,8000,0,0',                  # [CX818]
                '130,"UNSIGNED PCM",8,0,8000,0,0',               # [CX818]
                '131,"Mu-Law",8,0,8000,0,0',                     # [NCID]
                '132,"A-Law",8,0,8000,0,0',                      # ASSUMED (the "..." in [NCID])
                '133,"14 bit PCM",14,0,8000,0,0'],               # [NCID]
        "cid_sep": " = ",             # [NCID] ncidd logs: "NMBR = ..."
        "vls_answer": "OK",           # [CX930] +VLS result code OK
        "vtr_test": False,            # [NCID]: AT+VTR=? ERROR ...
        "full_duplex": True,          # ... although AT+VTR works
        "shielded": True,             # issue 17, [CA] thess: DLE / <key> ... DLE ~
        "gci": True,                  # [CX930] +GCI
        "extra_ok": ("AT-SCID=1", "AT!4886="),   # [CA]: -SCID, and users' AT!4886= init
    },
}

KIND_BY_NAME = {"8-BIT LINEAR": "lin8u", "UNSIGNED PCM": "lin8u", "SIGNED PCM": "lin8s",
                "16-BIT LINEAR": "lin16", "LINEAR": "lin16", "8-BIT ULAW": "ulaw",
                "ULAW": "ulaw", "MU-LAW": "ulaw", "G.711U": "ulaw", "8-BIT ALAW": "alaw",
                "ALAW": "alaw", "A-LAW": "alaw", "G.711A": "alaw"}


# -- line sides ----------------------------------------------------------------------
class ScriptedLine:
    """The line as a test scripts it: audio queued by ``feed``, heard once off-hook."""

    def __init__(self) -> None:
        self.audio: deque[int] = deque()
        self.off_hook = False

    def feed(self, samples) -> None:
        self.audio.extend(samples)

    def set_hook(self, off_hook: bool) -> None:
        self.off_hook = off_hook

    def frame(self, out) -> tuple[array, bool]:
        if not self.off_hook or not self.audio:
            return SILENT_FRAME, False
        a = self.audio
        return array("h", (a.popleft() if a else 0 for _ in range(FRAME))), False


class SimLineSide:
    """A ``linebox.sim.exchange.SimLine`` as the modem's line (the simulated exchange)."""

    def __init__(self, simline) -> None:
        self.simline = simline

    def set_hook(self, off_hook: bool) -> None:
        self.simline.set_hook(off_hook)

    def frame(self, out) -> tuple[array, bool]:
        tick = self.simline.tick(out)
        return tick.audio, tick.ringing


# -- the modem -----------------------------------------------------------------------
class ModemCore:
    """One voice modem (``chipset`` a key of PERSONALITIES), clocked by its driver.

    ``commands`` lists every AT command received (upper case); ``stops`` every DLE code
    received in a data state, as ``(mode, code)``; ``audio_in`` what the modem took as
    audio to play; ``dtr_drops`` how often DTR went low. ``responding``/``streaming``
    False: a modem that stopped answering commands / stopped sending receive audio;
    ``stuck`` True: one that ignores every code in a data state (only DTR gets it out).
    """

    def __init__(self, chipset: str, line=None, *, plan: str = "us", vsm=None,
                 full_duplex: bool | None = None, shielded: bool | None = None,
                 cid_sep: str | None = None, vtr_test: bool | None = None,
                 record: bool = True) -> None:
        self.chipset = chipset
        self.p = dict(PERSONALITIES[chipset])
        for key, value in (("vsm", vsm), ("full_duplex", full_duplex), ("shielded", shielded),
                           ("cid_sep", cid_sep), ("vtr_test", vtr_test)):
            if value is not None:
                self.p[key] = value
        self.line = line if line is not None else ScriptedLine()
        self.plan = get_plan(plan)
        self.commands: list[str] = []
        self.stops: list[tuple[str, bytes]] = []
        self.record = record                  # keep all audio_in (tests), or only what is due
        self.audio_in = bytearray()
        self._tx_raw = bytearray()            # audio to play, not yet on the line
        self._ending = False                  # DLE ETX in transmit: OK once the buffer played
        self.dtr_drops = 0
        self.responding = True
        self.streaming = True
        self.stuck = False          # True: a modem that ignores every code in a data state
        self.out = bytearray()
        self._scheduled: list[tuple[float, bytes]] = []      # on-hook text due at a time
        self._inject: deque[tuple[bytes, float]] = deque()   # raw stream bytes, pause after
        self._hold_until = 0.0
        self._held = bytearray()              # audio kept back while a split DLE code waits
        self._frame_t: float | None = None
        self.now = 0.0
        self.gci = "B5"                       # [CX930] factory default
        self._reset()

    # -- state ---------------------------------------------------------------------
    def _reset(self) -> None:
        self.echo = True
        self.fclass = 0
        self.kind: str | None = None
        self.vit = 0.0                        # ASSUMED: +VIT in seconds, 0 = off
        self._hook(False)
        self.mode = "command"
        self._cmd = bytearray()
        self._dle = False
        self._dte_at = self.now
        self._new_detectors()

    def _new_detectors(self) -> None:
        self._dtmf = DtmfDetector()
        self._progress = ProgressDetector(self.plan.name)
        self._fsk = CallerIdDetector(self.plan.callerid)
        self._key = None
        self._key_repeat_at = 0.0
        self._tone_report_at = 0.0
        self._ringing = False

    def _hook(self, off: bool) -> None:
        self.offhook = off
        self.line.set_hook(off)

    # -- the computer's side -------------------------------------------------------
    def take_output(self) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data

    def receive(self, data: bytes) -> None:
        self._dte_at = self.now
        for b in data:
            if self.mode == "command":
                self._command_byte(b)
            else:
                self._data_byte(b)

    def dtr_drop(self) -> None:
        """[V250] &D2: DTR on-to-off hangs up and returns to command mode."""
        self.dtr_drops += 1
        self.mode = "command"
        self._hook(False)
        self._cmd.clear()
        self._inject.clear()
        self.out.clear()
        self._tx_raw.clear()
        self._ending = False

    def _send(self, data: bytes) -> None:
        self.out += data

    def _result(self, *lines: str) -> None:
        self._send("".join(f"\r\n{line}\r\n" for line in lines).encode())

    def _command_byte(self, b: int) -> None:
        if b != 0x0D:
            self._cmd.append(b)
            return
        # DLE codes typed in command mode are not commands: ignored ([V253] command state).
        text = re.sub(rb"\x10.", b"", bytes(self._cmd)).decode("latin-1")
        self._cmd.clear()
        m = re.search(r"[Aa][Tt]", text)
        if m is None:
            return
        cmd = text[m.start():].strip().upper()
        self.commands.append(cmd)
        if not self.responding:
            return
        if self.echo:
            self._send(text[m.start():].encode("latin-1") + b"\r")
        self._at(cmd)

    def _at(self, cmd: str) -> None:
        p = self.p
        if cmd in ("ATZ", "AT&F", "ATZ0"):
            self._reset()
            self._result("OK")
        elif cmd in ("AT", "ATV1", "ATQ0", "AT+IFC=2,2", "AT+VCID=1") or \
                any(cmd.startswith(x) for x in p["extra_ok"]):
            self._result("OK")
        elif cmd in ("ATE0", "ATE1"):
            self.echo = cmd == "ATE1"
            self._result("OK")
        elif cmd in ("ATH", "ATH0", "AT+VLS=0"):
            self._hook(False)
            self._result("OK")
        elif cmd in ("ATI", "ATI3", "AT+GMI", "AT+GMM"):
            self._result(*p[cmd], "OK")
        elif cmd.startswith("AT+GCI"):
            self._gci(cmd[6:])
        elif cmd.startswith("AT+VIT="):
            self.vit = float(cmd[7:]) if cmd[7:].isdigit() else 0.0
            self._result("OK")
        elif cmd == "AT+FCLASS=8":
            self.fclass = 8
            self._result("OK")
        elif cmd == "AT+VSM=?" and self.fclass == 8:
            self._result(*p["vsm"], "OK")
        elif cmd.startswith("AT+VSM=") and self.fclass == 8:
            self._select_format(cmd[7:])
        elif cmd == "AT+VLS=1" and self.fclass == 8:
            self._hook(True)
            self._new_detectors()
            self._result(p["vls_answer"])
        elif cmd == "AT+VTR=?":
            self._result("(0-255)", "OK") if p["vtr_test"] else self._result("ERROR")
        elif cmd in ("AT+VRX", "AT+VTX") or (cmd == "AT+VTR" and p["full_duplex"]):
            if self.fclass != 8 or self.kind is None or not self.offhook:
                self._result("ERROR")             # [CX930] +VTR: ERROR when not connected
                return
            self._result("CONNECT")
            self.mode = cmd[3:].lower()
            self._dle = False
            self._tx_raw.clear()
            self._ending = False
        else:
            self._result("ERROR")

    def _gci(self, arg: str) -> None:
        if not self.p["gci"]:
            self._result("ERROR")
        elif arg == "=?":
            self._result(f"+GCI: ({','.join(CONEXANT_GCI)})", "OK")
        elif arg == "?":
            self._result(f"+GCI: {self.gci}", "OK")
        elif arg[1:] in CONEXANT_GCI:
            self.gci = arg[1:]
            self._result("OK")
        else:
            self._result("ERROR")

    def _select_format(self, args: str) -> None:
        # +VSM=<cml>,<vsr>[,<scs>,<sel>] ([CX818]; callattendant sends "1,8000,0,0").
        parts = args.split(",")
        for entry in self.p["vsm"]:
            code, name = re.match(r'(\d+),"([^"]*)"', entry).groups()
            kind = KIND_BY_NAME.get(name.upper())
            if parts[0] == code and len(parts) > 1 and parts[1] == "8000" and kind:
                self.kind = kind
                self._result("OK")
                return
        self._result("ERROR")

    def _data_byte(self, b: int) -> None:
        if not self._dle:
            if b == DLE:
                self._dle = True
            elif self.mode in ("vtx", "vtr"):
                # [CX930]: in a data state all that is not DLE-shielded is voice data: an
                # ATZ typed now is played to the caller, not obeyed.
                self._audio_byte(b)
            return                      # ASSUMED: in receive, the computer's data is dropped
        self._dle = False
        if b == DLE:
            if self.mode in ("vtx", "vtr"):
                self._audio_byte(DLE)
        elif b == SUB:
            if self.mode in ("vtx", "vtr"):
                self._audio_byte(DLE)
                self._audio_byte(DLE)
        else:
            self._stop_code(b)

    def _audio_byte(self, b: int) -> None:
        if self.record:
            self.audio_in.append(b)
        self._tx_raw.append(b)

    def _stop_code(self, b: int) -> None:
        mode = self.mode
        self.stops.append((mode, bytes([b])))
        if self.stuck:
            return
        if mode == "vrx" and b == ord("!"):            # [V253] [RC56] receive abort
            self._leave(stream_end=True)
        elif mode == "vtr" and b == ord("^"):          # [CX930] +VTR, [VG] V253modem.c
            self._leave(stream_end=True)
        elif mode == "vtx" and b == ETX:               # [V253] end transmit after playout
            self._ending = True
            if not self._tx_raw:
                self._leave(stream_end=False)
        elif mode == "vtx" and b == CAN:               # [RC56] clear the transmit buffer
            self._tx_raw.clear()
        # Everything else is ignored: DLE DC4 (ZyXEL only: [VG] ZyXEL_1496.c), DLE ! in
        # duplex and transmit, DLE ^ outside duplex, DLE ETX in duplex ([CX930]: only
        # DLE ^ or the inactivity timer leave it).

    def _leave(self, stream_end: bool) -> None:
        self.mode = "command"
        self._ending = False
        self._inject.clear()
        self._held.clear()
        if stream_end:
            self._send(b"\x10\x03")    # [V253] DLE ETX ends the modem's stream, then OK
        self._result("OK")

    # -- time ----------------------------------------------------------------------
    def advance(self, now: float) -> None:
        """Time passes to ``now``: one line frame per 20 ms, timers, scripted output."""
        if self._frame_t is None:
            self._frame_t = now
        self.now = now
        while self._frame_t + F <= now + 1e-9:
            self._frame_t += F
            self._line_frame(self._frame_t)
        self._due(now)

    def step(self, now: float) -> None:
        """Exactly one line frame, at ``now`` (the simulator: one frame per tick)."""
        self.now = now
        self._frame_t = now
        self._line_frame(now)
        self._due(now)

    def _due(self, now: float) -> None:
        if self.mode == "command" and not self.offhook:
            while self._scheduled and self._scheduled[0][0] <= now:
                self._send(self._scheduled.pop(0)[1])
        if self.mode == "command" or now < self._hold_until:
            return
        while self._inject:
            raw, pause = self._inject.popleft()
            self._send(raw)
            if pause:           # nothing may come between a DLE and its code
                self._hold_until = now + pause
                return
        if self._held:
            self._send(bytes(self._held))
            self._held.clear()
        if self.vit and self.mode in ("vtr", "vtx") and now - self._dte_at >= self.vit:
            # [CX930] the inactivity timer leaves voice duplex when the computer sends
            # nothing for that long (ASSUMED: transmit too; seconds).
            self._leave(stream_end=self.mode == "vtr")

    def _line_frame(self, t: float) -> None:
        out = None
        if self.mode in ("vtx", "vtr") and self._tx_raw:
            n = FRAME * (2 if self.kind == "lin16" else 1)
            out = array("h", decode(self.kind, bytes(self._tx_raw[:n])))
            del self._tx_raw[:n]
            if len(out) < FRAME:
                out.extend([0] * (FRAME - len(out)))
            if self._ending and not self._tx_raw:
                self._leave(stream_end=False)          # played out: OK ([V253])
        audio, ringing = self.line.frame(out)
        if not self.offhook:
            self._on_hook_frame(audio, ringing)
            return
        energy = sum(map(operator.mul, audio, audio))
        if self.mode in ("vrx", "vtr") and self.streaming:
            data = escape(encode(self.kind, audio))
            if t < self._hold_until:
                self._held += data
            else:
                self._send(data)
        self._hear_keys(audio, energy, t)
        self._hear_tones(audio, energy, t)

    def _on_hook_frame(self, audio, ringing: bool) -> None:
        if ringing and not self._ringing and self.mode == "command":
            self._result("RING")                      # one RING per burst
        self._ringing = ringing
        energy = sum(map(operator.mul, audio, audio))
        for ev in self._fsk.feed(audio, energy):
            self._send(self._callerid_block({
                "number": ev.get("number") or ev.get("number_absent"),
                "name": ev.get("name") or ev.get("name_absent"),
                "datetime": ev.get("datetime")}))

    def _dle_code(self, code: bytes) -> None:
        # [HAYES]: reported in receive, transmit and online voice command mode alike.
        if self.now < self._hold_until:
            self._held += b"\x10" + code
        else:
            self._send(b"\x10" + code)

    def _hear_keys(self, audio, energy: int, t: float) -> None:
        self._dtmf.feed(audio, energy)
        key = self._dtmf.pressed
        if key is not None and key != self._key:
            if self.p["shielded"]:
                self._dle_code(b"/")
                self._dle_code(key.encode())           # [VG] IS_101.c shielded sequence
                self._key_repeat_at = t + SHIELD_REPEAT
            else:
                self._dle_code(key.encode())           # [RCV144] one code per press
        elif key is not None and self.p["shielded"] and t >= self._key_repeat_at:
            self._dle_code(key.encode())               # repeated while the tone lasts
            self._key_repeat_at = t + SHIELD_REPEAT
        elif key is None and self._key is not None and self.p["shielded"]:
            self._dle_code(b"~")
        self._key = key

    def _hear_tones(self, audio, energy: int, t: float) -> None:
        self._progress.feed(audio, energy)
        tone = self._progress.current
        if tone in ("busy", "reorder", "dial"):
            # [RCV144]: after the buffered audio (this frame's audio went out first), then
            # again while the tone lasts. ASSUMED: reorder is reported as busy.
            if t >= self._tone_report_at:
                self._dle_code(b"d" if tone == "dial" else b"b")
                self._tone_report_at = t + (DIAL_REPEAT if tone == "dial" else BUSY_REPEAT)
        else:
            self._tone_report_at = 0.0

    # -- scripting (the pty harness and the tests) -----------------------------------
    def _callerid_block(self, cid: dict) -> bytes:
        sep = self.p["cid_sep"]
        lines = []
        dt = cid.get("datetime")
        if dt and len(dt) >= 8 and dt[:8].isdigit():
            cid = {**cid, "date": dt[:4], "time": dt[4:8]}
        for key, field in (("date", "DATE"), ("time", "TIME"), ("number", "NMBR"),
                           ("name", "NAME")):
            if cid.get(key):
                lines.append(f"{field}{sep}{cid[key]}")
        if cid.get("mesg"):
            lines.append(f"MESG{sep}{cid['mesg'].hex().upper()}")
        return "".join(f"\r\n{line}" for line in lines).encode() + b"\r\n"

    def schedule(self, at: float, data: bytes) -> None:
        self._scheduled.append((at, data))
        self._scheduled.sort(key=lambda x: x[0])

    def inject(self, raw: bytes, pause: float = 0.0) -> None:
        self._inject.append((raw, pause))

    def end_receive(self) -> None:
        """The modem leaves receive by itself (as on its silence or inactivity timer)."""
        self._leave(stream_end=True)
