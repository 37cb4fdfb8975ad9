"""A USB voice modem (ITU-T V.253: USRobotics USR5637, Conexant CX93001 ...) as a line.

By responsibility:

- ``at``        the port, the clock, AT commands and result lines
- ``data``      the DLE data states (receive, transmit, duplex) and how each is left
- ``chipsets``  what each chipset documents, and what it is known to get wrong
- ``formats``   ``AT+VSM=?`` in every layout, the audio codecs
- ``callerid``  caller-ID lines gathered into one ``CallerId``
- ``line``      ``ModemLine``, the ``Line`` the call engine drives
- ``emulator``  a voice modem built from the chipsets' manuals and captured logs: over a
                pty for the daemon and the tests, in-process on the virtual clock for
                ``linebox sim`` (``driver = "modem-sim"``)
"""

from linebox.hw.modem.at import ModemError, WallClock, open_serial
from linebox.hw.modem.callerid import callerid_fact
from linebox.hw.modem.chipsets import CHIPSETS, Chipset, detect_chipset
from linebox.hw.modem.data import ModemStuck
from linebox.hw.modem.formats import (
    VsmEntry,
    choose_format,
    classify_format,
    decode_audio,
    encode_audio,
    parse_vsm_list,
)
from linebox.hw.modem.line import SWITCH_BACK_FRAMES, ModemLine, from_config

__all__ = [
    "CHIPSETS", "SWITCH_BACK_FRAMES", "Chipset", "ModemError", "ModemLine",
    "ModemStuck", "VsmEntry", "WallClock", "callerid_fact", "choose_format",
    "classify_format", "decode_audio", "detect_chipset", "encode_audio", "from_config",
    "open_serial", "parse_vsm_list",
]
