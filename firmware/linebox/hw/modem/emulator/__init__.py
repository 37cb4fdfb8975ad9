"""A voice modem built from the chipsets' manuals and from logs of the real parts.

It was written from the documents below, not from the driver, so that the driver is
checked against what the parts are documented to do. Every behaviour names its source;
"ASSUMED" marks what no source settled.

Sources
    [V253]   ITU-T V.253 (the voice command set), via the vendors' copies of its tables
    [CX930]  Conexant "AT Commands for CX930xx Modem Reference Manual" 102752B/C (2006):
             +VTR ("two methods to leave the Voice Duplex State: <DLE><^> ... or the
             inactivity timer"), +GCI (3-9: T.35 codes, default B5)
    [CX818]  Conexant "AT Commands for CX81801/CX06833/CX81300/CX06827" 102184B: +VSM=?
             answered with bare fields ``1,"UNSIGNED PCM",8,0,8000,0,0``
    [NCID]   ncidd logs of CX93001 modems quoted in the NCID documentation: +VSM=? one
             format a line, no parentheses (``0,"SIGNED PCM",8,0,8000,0,0`` ...
             ``131,"Mu-Law",8,0,8000,0,0`` ... ``133,"14 bit PCM",14,0,8000,0,0``);
             AT+VTR=? answers ERROR although AT+VTR works
    [RC56]   Rockwell RC56 Command Reference 1199, Table 6-3 (DTE codes: ETX end transmit,
             CAN clear transmit buffer, ! receive abort; no DC4)
    [RCV144] Rockwell RCV144ACX AT Command Reference 1048, Table 7-2: DLE b "after any
             remaining data in the voice receive buffer ... every 4 seconds", DLE d "every
             3 seconds", "only one <DLE> code per DTMF button pushed"
    [HAYES]  Hayes voice reference "Tone and Status Monitoring": codes are sent in voice
             transmit and online voice command mode too
    [USR]    USRobotics 56K Softmodem Command Reference: +VSM=? with parentheses
             (p. 142: ``1,"UNSIGNED PCM",8,0,(7200,8000),(0),(0)`` ...
             ``133,"LINEAR",16,0,(7200,8000),(0),(0)``), Table 6-2 DLE codes
    [VG]     mgetty/vgetty libvoice: IS_101.c (shielded DTMF "<DLE><value> is repeated
             every 70 ms during tone"; stop codes), V253modem.c (duplex left by DLE ^),
             US_Robotics.c (false DLE d while recording/playing), detect.c (ATI 5601 USR,
             56000 Rockwell/Conexant), ZyXEL_1496.c (DLE DC4: ZyXEL only)
    [CA]     callattendant hardware/modem.py (emxsys, thess): ATI 5601 / 56000, USR answers
             DLE ! with DLE ETX, Conexant shielded keys ``DLE / ... DLE ~``, NMBR = lines
    [V250]   ITU-T V.250 &D2: DTR on-to-off hangs up and returns to command mode

``ModemCore`` is the modem itself, pure and clocked by whoever drives it: ``receive``
(bytes from the computer), ``advance(now)`` (time passes on the line, 20 ms at a time),
``take_output()`` (bytes to the computer). Its line side is either ``ScriptedLine`` (tests
script audio and keys) or a ``linebox.sim.exchange.SimLine`` (the simulated exchange). The modem
hears the line with linebox's DSP detectors (DTMF, call progress, FSK caller ID) and
reports what it hears the way its chipset's manual says.

``PtyModem`` puts a core behind a pty for the real driver and pyserial (tests, ``linebox
run``); ``ModemSimLine`` runs the real ``ModemLine`` against a core on the virtual clock
of ``linebox sim`` (``driver = "modem-sim"``).
"""

from linebox.hw.modem.emulator.codecs import decode, encode, escape, sine
from linebox.hw.modem.emulator.core import (
    PERSONALITIES,
    ModemCore,
    ScriptedLine,
    SimLineSide,
)
from linebox.hw.modem.emulator.pty import PtyModem
from linebox.hw.modem.emulator.virtual import EmulatedPort, ModemSimLine

__all__ = ["PERSONALITIES", "EmulatedPort", "ModemCore", "ModemSimLine", "PtyModem",
           "ScriptedLine", "SimLineSide", "decode", "encode", "escape", "sine"]
