"""`linebox sip-password EXT [--config C]`: the HA1 to put in an [[extension]]'s ``ha1``."""

import re
import sys

from linebox.errors import LineboxError
from linebox.sip.auth import ha1


def cmd_sip_password(args) -> int:
    from linebox.config import read_sip_table

    if not re.fullmatch(r"[0-9]{2,8}", args.extension):
        raise LineboxError("sip-password: the extension must be 2 to 8 digits")
    # Only [sip] is read: the HA1 is made before its [[extension]] is in the file.
    sip = read_sip_table(args.config)
    if sip is None:
        raise LineboxError(f"sip-password: {args.config} has no [sip] table (its realm makes the HA1)")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise LineboxError("sip-password: no password on standard input")
    print(ha1(args.extension, sip.realm, password))
    return 0
