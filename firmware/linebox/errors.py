"""Errors a person can act on: printed as one line `linebox: error: ...`, never a traceback."""


class LineboxError(Exception):
    """Bad input or environment, reported to the user as one line and exit status 2."""

    exit_code = 2
