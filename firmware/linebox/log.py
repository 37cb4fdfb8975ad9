"""Logging to stdout with journald level prefixes (``<3>`` error ... ``<7>`` debug)."""

import logging
import sys

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = f"<{_PRIORITY.get(record.levelno, 6)}>{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            # log.exception: keep what went wrong, on the same line (the journal takes
            # one entry a line), and where.
            e = record.exc_info[1]
            tb = e.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = f" (at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})" if tb else ""
            text += f": {type(e).__name__}: {' '.join(str(e).split())}{where}"
        return text


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


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"linebox.{name}")
