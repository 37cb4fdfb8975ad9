"""The journal formatter: levels as journald prefixes, and log.exception keeps the
exception's text (a call flow that fails must say why in `journalctl -u linebox`)."""

import io
import logging

from linebox import log


def _logged(fn) -> list[str]:
    out = io.StringIO()
    log.setup("debug", out)
    try:
        fn(log.get("engine"))
    finally:
        logging.getLogger("linebox").handlers.clear()
    return out.getvalue().splitlines()


def test_a_plain_record_is_one_line_with_its_priority():
    lines = _logged(lambda lg: lg.warning("line %s: no dial tone", 1))
    assert lines == ["<4>linebox.engine: line 1: no dial tone"]


def test_log_exception_keeps_the_exception_text_on_the_first_line():
    def fail(lg):
        try:
            open("/nonexistent/linebox/greeting.wav", "rb")
        except OSError:
            lg.exception("line %s: the call flow failed; hanging up", 1)

    lines = _logged(fail)
    assert lines[0] == ("<3>linebox.engine: line 1: the call flow failed; hanging up: "
                        "FileNotFoundError: [Errno 2] No such file or directory: "
                        "'/nonexistent/linebox/greeting.wav'")
    # The traceback follows, every line at the same priority (journald reads each
    # stdout line as its own record).
    assert lines[1] == "<3>linebox.engine:   Traceback (most recent call last):"
    assert all(line.startswith("<3>linebox.engine:   ") for line in lines[1:])
    assert lines[-1].endswith("FileNotFoundError: [Errno 2] No such file or directory: "
                              "'/nonexistent/linebox/greeting.wav'")


def test_an_exception_without_text_names_its_type():
    def fail(lg):
        try:
            raise KeyError()
        except KeyError:
            lg.exception("oops")

    assert _logged(fail)[0] == "<3>linebox.engine: oops: KeyError"


def test_a_message_with_a_newline_stays_one_journal_record():
    assert _logged(lambda lg: lg.info("a\nb")) == ["<6>linebox.engine: a b"]
