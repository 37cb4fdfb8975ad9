"""sd_notify against a real AF_UNIX datagram socket, as systemd listens on one."""

import logging
import os
import socket
import uuid

import pytest

from linebox import sdnotify


@pytest.fixture
def path_socket(tmp_path, monkeypatch):
    """A systemd-like notification socket at a filesystem path."""
    path = tmp_path / "notify"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(2.0)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield s
    s.close()


@pytest.fixture
def abstract_socket(monkeypatch):
    """A notification socket in the abstract namespace (systemd's usual choice)."""
    name = f"linebox-test-{uuid.uuid4().hex}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(b"\0" + name.encode())
    s.settimeout(2.0)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield s
    s.close()


def test_ready_with_status_is_one_datagram_on_a_path_socket(path_socket):
    assert sdnotify.ready("2 lines idle") is True
    assert path_socket.recv(4096) == b"READY=1\nSTATUS=2 lines idle"


def test_watchdog_reaches_an_abstract_socket(abstract_socket):
    assert sdnotify.watchdog() is True
    assert abstract_socket.recv(4096) == b"WATCHDOG=1"


def test_each_helper_sends_exactly_its_fields_in_order(abstract_socket):
    sdnotify.status("box 100: 3 new")
    sdnotify.stopping()
    sdnotify.stopping("closing lines")
    sdnotify.notify("RELOADING=1", "STATUS=reloading")
    got = [abstract_socket.recv(4096) for _ in range(4)]
    assert got == [b"STATUS=box 100: 3 new", b"STOPPING=1",
                   b"STOPPING=1\nSTATUS=closing lines", b"RELOADING=1\nSTATUS=reloading"]


def test_a_newline_in_a_status_cannot_inject_another_field(path_socket):
    sdnotify.status("line 1 fault\nREADY=1")
    assert path_socket.recv(4096) == b"STATUS=line 1 fault READY=1"


def test_without_notify_socket_nothing_is_sent_and_false_returned(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready() is False
    assert sdnotify.watchdog() is False


def test_an_unsupported_address_is_ignored(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.watchdog() is False


def test_a_vanished_socket_returns_false_and_logs_at_debug(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    with caplog.at_level(logging.DEBUG, logger="linebox.sdnotify"):
        assert sdnotify.watchdog() is False
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert "WATCHDOG=1" in caplog.records[0].getMessage()


def test_a_socket_nobody_reads_does_not_raise(tmp_path, monkeypatch):
    # A stream socket at that path: sendto() fails with EPROTOTYPE/ECONNREFUSED.
    path = tmp_path / "stream"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        assert sdnotify.ready() is False
    finally:
        s.close()


@pytest.mark.parametrize(("usec", "pid", "expected"), [
    ("30000000", None, 30.0),
    ("30000000", "self", 30.0),
    ("500000", "self", 0.5),
    ("30000000", "other", None),
    ("30000000", "junk", None),
    ("0", None, None),
    ("soon", None, None),
    (None, None, None),
])
def test_watchdog_interval_from_the_environment(monkeypatch, usec, pid, expected):
    for key, value in (("WATCHDOG_USEC", usec),
                       ("WATCHDOG_PID", {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(pid, pid))):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    assert sdnotify.watchdog_interval() == expected


@pytest.mark.parametrize(("lines", "new", "text"), [
    ({1: "idle", 2: "idle"}, {"100": 3, "200": 0}, "2 lines idle, box 100: 3 new"),
    ({1: "idle"}, {"100": 0}, "1 line idle, no new messages"),
    ({2: "idle", 1: "recording", 3: "ringing"}, {"100": 1, "101": 2},
     "1 line idle, 1 line ringing, 1 line recording, box 100: 1 new, box 101: 2 new"),
    ({1: "fault", 2: "idle", 3: "fault"}, {}, "1 line idle, line 1 fault, line 3 fault, no new messages"),
    ({}, {"100": 0}, "no lines, no new messages"),
])
def test_summary_is_the_one_line_status_systemctl_shows(lines, new, text):
    assert sdnotify.summary(lines, new) == text
