"""Logging to stdout with journald level prefixes (``<3>`` error ... ``<7>`` debug).

Every module logs to ``logging.getLogger(__name__)``: a journal line names the module
(``<4>linebox.voicemail.store: ...``), and everything under ``linebox`` reaches the one
handler ``setup`` puts on the ``linebox`` logger. (``linebox.web.audit`` is the one
logger named for what it records, not where: the portal's audit trail.)
"""

import logging
import sys

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    """One journal line per record, and for ``log.exception`` the exception's own text on
    that line (``...; hanging up: PermissionError: [Errno 13] ...``), then its traceback.

    journald makes every stdout line a record of its own, at the priority its ``<N>``
    prefix says, so each traceback line carries the prefix too: the whole story stays
    at the record's level and reads in order in ``journalctl -u linebox``.
    """

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITY.get(record.levelno, 6)}>{record.name}: "
        text = " ".join(record.getMessage().splitlines())
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return prefix + text
        what = " ".join(str(exc).split())
        text += f": {type(exc).__name__}" + (f": {what}" if what else "")
        trace = self.formatException(record.exc_info).splitlines()
        return "\n".join([prefix + text] + [f"{prefix}  {line}" for line in trace])


def setup(level: str = "info", stream=None) -> None:
    """Route the ``linebox`` loggers to ``stream`` (stderr by default, so that command
    output on stdout stays machine-readable; the daemon passes stdout)."""
    root = logging.getLogger("linebox")
    root.handlers.clear()
    h = logging.StreamHandler(stream or sys.stderr)
    h.setFormatter(_JournalFormatter())
    root.addHandler(h)
    root.setLevel(level.upper())
    root.propagate = False
