"""The one command table (linebox.commands): each command against a real Appliance and
store in a temporary data folder, the settings that survive a restart and a reload, the
hostile payloads of the adversarial run, and `linebox cmd` as a user runs it."""

import json
import re
import tomllib
from pathlib import Path

import pytest

from conftest import run_linebox
from linebox import commands
from linebox.app import Appliance
from linebox.commands import TABLE, CommandError, dispatch, parse_payload
from linebox.config import parse_config
from linebox.events import Bus
from linebox.linesettings import FILE as SETTINGS_FILE
from linebox.report.discovery import configured_extensions, web_url
from linebox.voicemail.pins import hash_pin

ROOT = Path(__file__).resolve().parent.parent
PIN_HASH = hash_pin("4321")
CONFIG = """
[device]
id = "office"
name = "Office line box"
data_dir = "{data}"
[[line]]
id = 1
driver = "sim"
rings = {rings}
toll_saver_rings = 2
route = "100"
[[line]]
id = 2
driver = "sim"
rings = 6
answer = false
route = "101"
[[box]]
number = "100"
name = "Main office"
pin_hash = "{pin}"
[[box]]
number = "101"
name = "Sales"
pin_hash = "{pin}"
"""


def config_text(data: Path, rings: int = 4) -> str:
    return CONFIG.format(data=data, pin=PIN_HASH, rings=rings)


def make_app(tmp_path: Path, rings: int = 4) -> Appliance:
    path = tmp_path / "linebox.toml"
    path.write_text(config_text(tmp_path / "data", rings))
    cfg = parse_config(tomllib.loads(path.read_text()), str(path))
    app = Appliance(cfg, Bus())
    app.open()
    return app


@pytest.fixture
def app(tmp_path):
    a = make_app(tmp_path)
    yield a
    a.close()


def leave(app, box="100", number="5551234567", name="JOHN DOE", line=1) -> str:
    pending = app.store.start_recording(box, line, number, name)
    pending.write(__import__("array").array("h", [1000, -1000] * 8000))
    return pending.finish()["id"]


def run(app, action, args=None, **kw):
    return dispatch(app, action, {} if args is None else args, **kw)


def settings(app):
    """Answering and rings per line, as the retained topics show them."""
    return {i: {k: s[k] for k in ("answering", "rings")} for i, s in app.line_settings().items()}


def state(app, message):
    return app.store.get(message)["state"]


# ---------------------------------------------------------------- the store's commands

def test_mark_heard_changes_only_new_messages(app):
    new, saved, trashed = leave(app), leave(app), leave(app)
    app.store.set_state(saved, "saved")
    app.store.delete(trashed)
    assert run(app, "mark_heard", {"message": saved}) == {
        "ok": True, "error": None, "action": "mark_heard", "request_id": None, "result": 0}
    assert run(app, "mark_heard", {"message": trashed})["result"] == 0
    assert (state(app, saved), state(app, trashed)) == ("saved", "trash")   # not demoted, not revived
    assert run(app, "mark_heard", {"message": new})["result"] == 1
    assert state(app, new) == "heard"


def test_mark_heard_of_a_box_marks_its_new_messages_only(app):
    a, b, other = leave(app), leave(app), leave(app, box="101")
    app.store.set_state(b, "saved")
    assert run(app, "mark_heard", {"box": "100"})["result"] == 1
    assert (state(app, a), state(app, b), state(app, other)) == ("heard", "saved", "new")
    assert run(app, "mark_heard", {"box": "100", "message": a})["error"] == \
        'give either "box" or "message"'


def test_delete_takes_a_message_only_and_undelete_brings_it_back(app):
    m = leave(app)
    app.store.set_state(m, "saved")
    assert run(app, "delete", {"box": "100"})["error"] == "unknown key 'box' (expected message)"
    assert run(app, "delete", {"message": m})["result"] == m
    assert state(app, m) == "trash"
    assert run(app, "delete", {"message": m})["error"] == f"message {m} is already in the trash"
    assert run(app, "undelete", {"message": m})["result"] == m
    assert state(app, m) == "saved"                          # the state it had
    assert run(app, "undelete", {"message": m})["error"] == f"message {m} is not in the trash"
    assert run(app, "delete", {"message": "000099"})["error"] == "no message 000099"


def test_undelete_of_a_box_brings_back_its_last_deleted(app):
    m = leave(app)
    run(app, "delete", {"message": m})
    assert run(app, "undelete", {"box": "100"})["result"] == m
    assert state(app, m) == "new"
    assert run(app, "undelete", {"box": "100"})["error"] == "box 100: nothing to undelete"


def test_list_gives_a_boxs_messages_without_the_trash_unless_asked(app):
    a, b = leave(app), leave(app, number=None, name=None)
    leave(app, box="101")
    run(app, "delete", {"message": b})
    got = run(app, "list", {"box": "100"})["result"]
    assert [m["id"] for m in got] == [a]
    assert set(got[0]) == {"id", "box", "state", "caller_number", "caller_name", "received",
                           "seconds", "line", "recovered"}
    assert got[0]["caller_number"] == "5551234567" and got[0]["seconds"] == 2.0
    assert [m["id"] for m in run(app, "list", {"box": "100", "state": "trash"})["result"]] == [b]
    assert run(app, "list", {"box": "100", "state": "gone"})["error"] == \
        "state must be one of new, heard, saved, trash"
    json.dumps(got)                                           # JSON-able as it stands


def test_unlock_lifts_a_pin_lockout(app):
    while not app.store.login_failed("100"):
        pass
    assert app.store.is_locked("100")
    assert run(app, "unlock", {"box": "100"})["ok"] is True
    assert not app.store.is_locked("100")


# ---------------------------------------------------------------- settings that stay

def test_answering_and_rings_survive_a_restart(tmp_path):
    app = make_app(tmp_path)
    assert run(app, "answering", {"line": 1, "on": False})["ok"]
    assert run(app, "rings", {"line": 2, "rings": 9})["ok"]
    app.close()
    again = make_app(tmp_path)
    try:
        assert settings(again) == {1: {"answering": False, "rings": 4},
                                         2: {"answering": False, "rings": 9}}
        saved = json.loads((tmp_path / "data" / SETTINGS_FILE).read_text())
        assert saved == {"1": {"answering": False}, "2": {"rings": 9}}
    finally:
        again.close()


def test_a_setting_back_at_its_default_is_no_override(app, tmp_path):
    run(app, "rings", {"line": 1, "rings": 7})
    run(app, "rings", {"line": 1, "rings": 4})
    assert json.loads((tmp_path / "data" / SETTINGS_FILE).read_text()) == {}


def test_reload_keeps_what_was_set_from_outside_and_takes_new_defaults(tmp_path):
    app = make_app(tmp_path)
    try:
        run(app, "answering", {"line": 2, "on": True})
        (tmp_path / "linebox.toml").write_text(config_text(tmp_path / "data", rings=5))
        assert run(app, "reload")["ok"]
        assert settings(app) == {1: {"answering": True, "rings": 5},
                                       2: {"answering": True, "rings": 6}}
    finally:
        app.close()


def test_rings_can_never_go_below_the_toll_saver(app):
    # line 1 has toll_saver_rings = 2: answering after 2 rings would make it pointless.
    assert run(app, "rings", {"line": 1, "rings": 2})["error"] == \
        "rings must be more than line 1's toll_saver_rings (2)"
    assert run(app, "rings", {"line": 1, "rings": 3})["ok"]
    assert run(app, "rings", {"line": 2, "rings": 1})["ok"]          # no toll saver there
    assert app.rings_needed(app.config.line(1)) == 3


def test_a_damaged_settings_file_is_set_aside(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / SETTINGS_FILE).write_text("[" * 5000)
    app = make_app(tmp_path)
    try:
        assert settings(app)[1] == {"answering": True, "rings": 4}
        assert any(p.name.startswith(f"{SETTINGS_FILE}.bad-") for p in data.iterdir())
    finally:
        app.close()


def test_a_settings_file_with_out_of_range_values_keeps_the_config(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / SETTINGS_FILE).write_text('{"1": {"rings": 1, "answering": "no"}, "9": {}, '
                                      '"x": 1, "2": {"rings": true}}')
    app = make_app(tmp_path)
    try:
        assert settings(app) == {1: {"answering": True, "rings": 4},
                                       2: {"answering": False, "rings": 6}}
    finally:
        app.close()


# ---------------------------------------------------------------- hostile input

HOSTILE = [
    ("delete", {"message": "٠٠٠٠٠١"}, 'message must be a message id string like "000012"'),
    ("delete", {"message": "00001²"}, 'message must be a message id string like "000012"'),
    ("delete", {"message": "1" * 13}, 'message must be a message id string like "000012"'),
    ("delete", {"message": ""}, 'message must be a message id string like "000012"'),
    ("mark_heard", {"box": "１００"}, 'box must be a box number string like "100"'),
    ("mark_heard", {"box": 100}, 'box must be a box number string like "100"'),
    ("mark_heard", {"box": "999"}, "no box '999'"),
    ("answering", {"line": True, "on": True}, "line must be an integer"),
    ("answering", {"line": 9, "on": True}, "no line 9"),
    ("answering", {"line": 1, "on": 1}, "on must be true or false"),
    ("rings", {"line": 1, "rings": 21}, "rings must be an integer from 1 to 20"),
    ("rings", {"line": 1, "rings": 3.0}, "rings must be an integer from 1 to 20"),
    ("led_test", {"pattern": ["on"]}, "pattern must be one of off, on, blink, fast or null"),
    ("undelete", {}, 'give either "box" or "message"'),
    ("list", {}, """missing 'box' (like {"box": "100"})"""),
    ("delete", {"message": "1", "x" * 500: 1}, "unknown key '" + "x" * 40 + "' (expected message)"),
    ("delete", {"message": "1", "request_id": "r" * 65},
     "request_id must be a string (at most 64 characters) or an integer"),
    ("frobnicate", {}, "unknown action 'frobnicate' (known: mark_heard, delete, undelete, save, purge, list, "
                       "unlock, answering, rings, led_test, reload)"),
]


@pytest.mark.parametrize("action,args,error", HOSTILE, ids=[f"{a}:{str(x)[:20]}" for a, x, _ in HOSTILE])
def test_bad_arguments_are_refused_in_plain_words_and_call_nothing(app, action, args, error):
    m = leave(app)
    reply = run(app, action, args)
    assert reply["ok"] is False and reply["error"] == error
    assert state(app, m) == "new"


PAYLOADS = [
    (b"[" * 1000, "bad JSON: nested too deeply"),
    (b'{"message": ' + b"9" * 4301 + b"}", "payload too large (4314 bytes; at most 4096)"),
    (b'{"message": ' + b"9" * 4000 + b"}", "a number in the payload is too long"),
    (b'{"line": -1234567890123456789}', "a number in the payload is too long"),
    (b'{"message": NaN}', "NaN is not allowed in a command"),
    (b'{"message": ', "bad JSON: Expecting value at character 11"),
    (b"\xff\xfe", "payload is not UTF-8 text"),
    (b"[1, 2]", 'payload must be a JSON object like {"message": "000012"}'),
    (b"x" * 5000, "payload too large (5000 bytes; at most 4096)"),
]


@pytest.mark.parametrize("payload,error", PAYLOADS, ids=[p[:12].decode("latin-1") for p, _ in PAYLOADS])
def test_hostile_payloads_give_a_plain_error(payload, error):
    with pytest.raises(CommandError) as e:
        parse_payload("delete", payload)
    assert str(e.value) == error


def test_plain_text_stands_for_the_main_argument():
    assert parse_payload("delete", b" 000012\n") == {"message": "000012"}
    assert parse_payload("mark_heard", "100") == {"box": "100"}
    assert parse_payload("reload", b"") == {}
    with pytest.raises(CommandError, match=r'like \{"line": 1, "on": true\}'):
        parse_payload("answering", b"ON")


def test_a_bug_in_a_handler_is_answered_without_python_internals(app, monkeypatch, caplog):
    def broken(*a, **k):
        raise ZeroDivisionError("division by zero in /usr/lib/python3/secret.py")
    monkeypatch.setattr(app.store, "messages", broken)
    reply = run(app, "list", {"box": "100", "request_id": 7})
    assert reply == {"ok": False, "error": "internal error (see the appliance's log)",
                     "action": "list", "request_id": 7}
    assert "ZeroDivisionError" in caplog.text                     # the trace is in the log


def test_the_cli_refuses_what_needs_the_daemon(app):
    assert run(app, "led_test", {"pattern": "on"}, daemon=False)["error"] == \
        "led_test needs the running daemon (send it over MQTT)"
    assert run(app, "led_test", {"pattern": "on"})["ok"] is True


# ---------------------------------------------------------------- one edit per command

def test_a_command_is_one_declaration(app):
    @commands.command("ping", "Answer pong.", commands.BOX, example='{"box": "100"}',
                      plain="box")
    def _ping(app, box):
        return f"pong {box}"
    try:
        assert parse_payload("ping", b"101") == {"box": "101"}
        assert run(app, "ping", {"box": "101"})["result"] == "pong 101"
        assert run(app, "ping", {"box": "1"})["error"] == "no box '1'"
        assert "ping" in commands.help_text()
        with pytest.raises(ValueError, match="declared twice"):
            commands.command("ping", "again", example="{}")(_ping)
    finally:
        del TABLE["ping"]


def test_every_command_is_documented():
    doc = (ROOT / "docs" / "commands.md").read_text()
    for name, cmd in TABLE.items():
        assert re.search(rf"^### `{name}`", doc, re.M), f"{name} not in docs/commands.md"
        for arg in cmd.args:
            assert f"`{arg.name}`" in doc


def test_web_url_reads_the_portal_setting_defensively():
    from types import SimpleNamespace as NS

    from linebox.config import WebConfig
    assert web_url(NS()) is None
    assert web_url(NS(web=None)) is None
    assert web_url(NS(web=WebConfig(host="192.168.1.5", port=8080))) == "http://192.168.1.5:8080/"
    assert web_url(NS(web=WebConfig(host="fd00::5", port=443, tls_cert="/c.pem"))) == "https://[fd00::5]:443/"
    assert web_url(NS(web=WebConfig(host="127.0.0.1", port=80, enabled=False))) is None
    assert web_url(NS(web=WebConfig(host="0.0.0.0", port=8080))).endswith(":8080/")


def test_extensions_are_read_defensively():
    from types import SimpleNamespace as NS
    assert configured_extensions(NS()) == []
    assert configured_extensions(NS(extensions=[NS(number="201"), {"number": 202}, "203"])) == [
        "201", "202", "203"]


# ---------------------------------------------------------------- `linebox cmd`

def test_linebox_cmd_runs_a_command_against_the_data_folder(tmp_path):
    app = make_app(tmp_path)
    m = leave(app)
    app.close()
    cfg, data = tmp_path / "linebox.toml", tmp_path / "data"
    r = run_linebox("cmd", "list", "100", "--config", cfg, "--data", data)
    assert r.returncode == 0, r.stderr.decode()
    (line,) = r.stdout.decode().splitlines()
    assert json.loads(line)["id"] == m and json.loads(line)["state"] == "new"
    r = run_linebox("cmd", "mark_heard", json.dumps({"message": m}), "--config", cfg, "--data", data)
    assert (r.returncode, r.stdout) == (0, b"1\n")
    r = run_linebox("cmd", "answering", '{"line": 1, "on": false}', "--config", cfg, "--data", data)
    assert (r.returncode, r.stdout) == (0, b'"ok"\n')
    again = make_app(tmp_path)
    try:
        assert again.store.get(m)["state"] == "heard"
        assert settings(again)[1]["answering"] is False
    finally:
        again.close()


@pytest.mark.parametrize("argv,error", [
    (["delete", '{"message": "٠٠٠٠٠١"}'], 'cmd delete: message must be a message id string like "000012"'),
    (["delete", "[" * 1000], "cmd delete: bad JSON: nested too deeply"),
    (["delete", "000042"], "cmd delete: no message 000042"),
    (["led_test", "on"], "cmd led_test: needs the running daemon (send it over MQTT to "
                         "<base>/cmd/led_test)"),
    (["nope"], "cmd nope: unknown action 'nope' (known: mark_heard, delete, undelete, save, purge, list, "
               "unlock, answering, rings, led_test, reload)"),
])
def test_linebox_cmd_errors_are_one_line(tmp_path, argv, error):
    make_app(tmp_path).close()
    r = run_linebox("cmd", *argv, "--config", tmp_path / "linebox.toml", "--data", tmp_path / "data")
    assert (r.returncode, r.stdout) == (2, b"")
    assert r.stderr.decode() == f"linebox: error: {error}\n"
