"""The journal formatter: levels as journald prefixes, and log.exception keeps the
exception's text (a call flow that fails must say why in `journalctl -u linebox`)."""

import io
import logging

from linebox import log


def _logged(fn) -> list[str]:
    out = io.StringIO()
    log.setup("debug", out)
    try:
        fn(logging.getLogger("linebox.calls.engine"))
    finally:
        logging.getLogger("linebox").handlers.clear()
    return out.getvalue().splitlines()


def test_a_plain_record_is_one_line_with_its_priority():
    lines = _logged(lambda lg: lg.warning("line %s: no dial tone", 1))
    assert lines == ["<4>linebox.calls.engine: line 1: no dial tone"]


def test_log_exception_keeps_the_exception_text_on_the_first_line():
    def fail(lg):
        try:
            open("/nonexistent/linebox/greeting.wav", "rb")
        except OSError:
            lg.exception("line %s: the call flow failed; hanging up", 1)

    lines = _logged(fail)
    assert lines[0] == ("<3>linebox.calls.engine: line 1: the call flow failed; hanging up: "
                        "FileNotFoundError: [Errno 2] No such file or directory: "
                        "'/nonexistent/linebox/greeting.wav'")
    # The traceback follows, every line at the same priority (journald reads each
    # stdout line as its own record).
    assert lines[1] == "<3>linebox.calls.engine:   Traceback (most recent call last):"
    assert all(line.startswith("<3>linebox.calls.engine:   ") for line in lines[1:])
    assert lines[-1].endswith("FileNotFoundError: [Errno 2] No such file or directory: "
                              "'/nonexistent/linebox/greeting.wav'")


def test_an_exception_without_text_names_its_type():
    def fail(lg):
        try:
            raise KeyError()
        except KeyError:
            lg.exception("oops")

    assert _logged(fail)[0] == "<3>linebox.calls.engine: oops: KeyError"


def test_a_message_with_a_newline_stays_one_journal_record():
    assert _logged(lambda lg: lg.info("a\nb")) == ["<6>linebox.calls.engine: a b"]


def test_every_module_logs_under_its_own_name():
    # One convention (issue 9): logging.getLogger(__name__), so a journal line names its
    # module and the `linebox` handler of log.setup catches every one of them.
    import importlib
    import pkgutil

    import linebox

    named = {}
    for info in pkgutil.walk_packages(linebox.__path__, "linebox."):
        if info.name.endswith("__main__"):
            continue       # it would run the CLI
        try:
            mod = importlib.import_module(info.name)
        except ImportError:
            continue       # an optional dependency (RPi.GPIO, serial...)
        for attr in ("log", "_log"):
            lg = getattr(mod, attr, None)
            if isinstance(lg, logging.Logger):
                named[info.name] = lg.name
    assert len(named) >= 20, named
    assert {m: n for m, n in named.items() if n != m} == {}


def test_the_documented_fail2ban_filter_matches_a_failed_login_line():
    import re
    from pathlib import Path

    from linebox.sip.auth import DigestAuth

    doc = (Path(__file__).resolve().parent.parent / "docs" / "sip.md").read_text()
    (failregex,) = re.findall(r"^\s*failregex = (.+)$", doc, re.M)
    pattern = re.compile(failregex.replace("<HOST>", r"(?P<host>[0-9.]+)"))
    lines = _logged(lambda _lg: DigestAuth("linebox", {"201": "pw"})._failed(
        ("192.168.1.50", 5062), "201", "wrong password"))
    assert len(lines) == 1
    m = pattern.search(lines[0])
    assert m and m["host"] == "192.168.1.50", lines
