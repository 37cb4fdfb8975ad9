"""The strict configuration loader and `linebox config check` (contract §4)."""

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT, run_linebox
from linebox.config import (
    AttendantConfig,
    BoxConfig,
    Config,
    ConfigError,
    DeviceConfig,
    EmailConfig,
    LineConfig,
    MqttConfig,
    load_config,
    parse_config,
)
from linebox.voicemail.pins import hash_pin, verify_pin

EXAMPLE = ROOT / "examples" / "linebox.toml"
HASH = hash_pin("1234", salt=b"\x01" * 16)

MINIMAL = f"""
[[line]]
id = 1
driver = "sim"
route = "100"

[[box]]
number = "100"
pin_hash = "{HASH}"
"""

FXO_LINE = """
[[line]]
id = 2
driver = "fxo"
route = "100"
audio = "plughw:CARD=Device"
hook_pin = 17
ring_pin = 27
"""

SECOND_BOX = f"""
[[box]]
number = "101"
pin_hash = "{HASH}"
"""

ATTENDANT = """
[attendant]
options = { "1" = "100", "*" = "login" }
default = "100"
"""


def parse(text: str, source: str = "<test>") -> Config:
    return parse_config(tomllib.loads(text), source)


def error_of(text: str, source: str = "<test>") -> str:
    with pytest.raises(ConfigError) as e:
        parse(text, source)
    return str(e.value)


def set_key(text: str, table_header: str, key: str, value: str, nth: int = 1) -> str:
    """``text`` with ``key = value`` added to the nth table headed ``table_header``."""
    parts = text.split(table_header)
    assert len(parts) > nth, f"no {table_header} #{nth}"
    parts[nth] = f"\n{key} = {value}" + parts[nth]
    return table_header.join(parts)


def without_key(text: str, key: str) -> str:
    out = re.sub(rf"^{key} = .*\n", "", text, count=1, flags=re.M)
    assert out != text
    return out


# ------------------------------------------------------------------ what a good file gives


def test_minimal_file_gets_the_documented_defaults():
    cfg = parse(MINIMAL)
    assert cfg.device == DeviceConfig(id="linebox", name="Linebox",
                                      data_dir=Path("/var/lib/linebox"),
                                      status_led_pin=None, timezone=None)
    assert cfg.lines == (LineConfig(id=1, driver="sim", plan="us", rings=4, toll_saver_rings=0,
                                    route="100", answer=True),)
    assert cfg.boxes == {"100": BoxConfig(
        number="100", name="Box 100", language="en", pin_hash=HASH, pin_required=True,
        email=(), email_on_new=False, led_pin=None, max_messages=100,
        max_message_seconds=180, keep_heard_days=30.0, trash_days=7.0, retract_minutes=15.0)}
    assert (cfg.attendant, cfg.mqtt, cfg.email) == (None, None, None)
    assert cfg.source == "<test>"


def test_fxo_line_gets_its_pins_and_polarity_defaults():
    line = parse(MINIMAL + FXO_LINE).line(2)
    assert (line.audio, line.hook_pin, line.ring_pin, line.loop_pin) == ("plughw:CARD=Device", 17, 27, None)
    assert (line.hook_active_high, line.ring_active_low, line.loop_active_low) == (True, True, True)
    assert (line.rx_gain_db, line.tx_gain_db, line.port) == (0.0, 0.0, None)


def test_modem_line_gets_its_port_and_default_baud():
    text = MINIMAL + '[[line]]\nid = 3\ndriver = "modem"\nroute = "100"\nport = "/dev/ttyACM0"\n'
    line = parse(text).line(3)
    assert (line.port, line.baud, line.audio, line.hook_pin) == ("/dev/ttyACM0", 115200, None, None)


def test_boxes_keep_file_order():
    text = MINIMAL + SECOND_BOX.replace('"101"', '"300"') + SECOND_BOX.replace('"101"', '"200"')
    assert list(parse(text).boxes) == ["100", "300", "200"]


def test_attendant_options_and_default_timeout():
    cfg = parse(MINIMAL.replace('route = "100"', 'route = "attendant"') + ATTENDANT)
    assert cfg.attendant == AttendantConfig(prompt="attendant", options={"1": "100", "*": "login"},
                                            default="100", timeout_seconds=5.0)
    assert cfg.boxes_for_line(1) == (cfg.boxes["100"],)


def test_a_line_routed_to_the_attendant_serves_the_boxes_its_menu_leads_to():
    text = (MINIMAL.replace('route = "100"', 'route = "attendant"') + SECOND_BOX
            + SECOND_BOX.replace('"101"', '"102"')
            + '[attendant]\noptions = { "2" = "102", "0" = "login" }\ndefault = "100"\n')
    cfg = parse(text)
    assert [b.number for b in cfg.boxes_for_line(1)] == ["100", "102"]


def test_attendant_wav_prompt_is_found_beside_the_config_file(tmp_path):
    (tmp_path / "menu.wav").write_bytes(b"RIFF")
    path = tmp_path / "linebox.toml"
    path.write_text(MINIMAL.replace('route = "100"', 'route = "attendant"') + ATTENDANT
                    + 'prompt = "menu.wav"\n')
    assert load_config(path).attendant.prompt == str(tmp_path / "menu.wav")


def test_mqtt_defaults_and_tls_port():
    cfg = parse(MINIMAL + '[mqtt]\nhost = "broker"\n')
    assert cfg.mqtt == MqttConfig(host="broker", port=1883, username=None, password=None, tls=False,
                                  ca_file=None, base_topic="linebox", discovery=True, keepalive=60)
    assert parse(MINIMAL + '[mqtt]\nhost = "broker"\ntls = true\n').mqtt.port == 8883


def test_email_defaults_and_tls_port():
    cfg = parse(MINIMAL + '[email]\nsmtp_host = "mx"\nfrom = "box@example.com"\n')
    assert cfg.email == EmailConfig(smtp_host="mx", smtp_port=587, starttls=True, tls=False,
                                    username=None, password=None, sender="box@example.com",
                                    max_attachment_bytes=10_000_000, timeout_seconds=30.0)
    tls = parse(MINIMAL + '[email]\nsmtp_host = "mx"\ntls = true\nfrom = "Box <b@example.com>"\n').email
    assert (tls.smtp_port, tls.starttls, tls.tls, tls.sender) == (465, False, True, "Box <b@example.com>")


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    path = tmp_path / "linebox.toml"
    path.write_text(MINIMAL.replace("[[line]]", '[device]\ndata_dir = "data"\n\n[[line]]', 1)
                    + '[mqtt]\nhost = "b"\ntls = true\nca_file = "ca.pem"\n')
    cfg = load_config(path)
    assert cfg.device.data_dir == tmp_path / "data"
    assert cfg.mqtt.ca_file == tmp_path / "ca.pem"
    assert cfg.source == str(path)


def test_data_dir_argument_overrides_the_file(tmp_path):
    path = tmp_path / "linebox.toml"
    path.write_text(MINIMAL)
    assert load_config(path, data_dir=tmp_path / "d").device.data_dir == tmp_path / "d"


def test_timezone_is_kept_when_it_exists():
    text = '[device]\ntimezone = "Europe/Berlin"\n' + MINIMAL
    assert parse(text).device.timezone == "Europe/Berlin"


def test_box_without_pin_is_allowed_when_pin_is_not_required():
    text = without_key(MINIMAL, "pin_hash").replace('number = "100"', 'number = "100"\npin_required = false')
    box = parse(text).boxes["100"]
    assert (box.pin_hash, box.pin_required) == (None, False)


def test_config_objects_are_frozen():
    cfg = parse(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.device.id = "x"


# ------------------------------------------------------------------ the example file


def test_example_file_passes_config_check():
    r = run_linebox("config", "check", "--config", EXAMPLE)
    assert (r.returncode, r.stderr) == (0, b"")
    assert r.stdout == b"config OK: 2 lines, 3 boxes, attendant, mqtt, email\n"


def test_example_file_pins_are_1234_as_its_comment_says():
    cfg = load_config(EXAMPLE)
    assert [verify_pin("1234", b.pin_hash) for b in cfg.boxes.values()] == [True, True, True]
    assert "PIN below is 1234" in EXAMPLE.read_text()


def test_example_file_mentions_every_key_the_loader_knows():
    from linebox.config import TABLES

    text = EXAMPLE.read_text()
    for table, (keys, is_array) in TABLES.items():
        assert (f"[[{table}]]" if is_array else f"[{table}]") in text
        for key in keys:
            assert re.search(rf"^(# )?{key} = ", text, re.M), f"{table}.{key} not in the example"


def test_check_summary_counts_singular(tmp_path):
    (tmp_path / "linebox.toml").write_text(MINIMAL)
    r = run_linebox("config", "check", "--config", tmp_path / "linebox.toml")
    assert (r.returncode, r.stdout) == (0, b"config OK: 1 line, 1 box\n")


# ------------------------------------------------------------------ one line per mistake

L1 = "[[line]] #1"
B1 = "[[box]] #1"
FXO = MINIMAL + FXO_LINE       # the fxo line is [[line]] #2
MODEM = MINIMAL + '[[line]]\nid = 3\ndriver = "modem"\nroute = "100"\nport = "/dev/ttyACM0"\n'
ATT = MINIMAL.replace('route = "100"', 'route = "attendant"') + ATTENDANT

CASES = {
    # structure
    "unknown key": (set_key(MINIMAL, "[[line]]", "ringz", "4"),
                    f"config: {L1}: unknown key 'ringz'"),
    "unknown table": (MINIMAL + "[foo]\nx = 1\n", "config: unknown table [foo]"),
    "key outside a table": ("debug = true\n" + MINIMAL, "config: unknown key 'debug' outside any table"),
    "line as a single table": (MINIMAL.replace("[[line]]", "[line]"),
                               "config: [line] must be written [[line]], one table each"),
    "device as an array": ("[[device]]\nid = \"x\"\n" + MINIMAL,
                           "config: [[device]] must be written [device], a single table"),
    "no line": (MINIMAL.split("[[box]]")[1].join(["[[box]]", ""]),
                "config: at least one [[line]] is required"),
    "no box": (MINIMAL.split("[[box]]")[0], "config: at least one [[box]] is required"),
    "unknown key shown on one line": (set_key(MINIMAL, "[[box]]", '"a\\nb"', "1"),
                                      f'config: {B1}: unknown key "a\\nb"'),
    # [device]
    "device id": ('[device]\nid = "Office"\n' + MINIMAL,
                  "config: [device] key 'id': must be lowercase letters, digits, '_' or '-'"),
    "device name empty": ('[device]\nname = ""\n' + MINIMAL,
                          "config: [device] key 'name': must be a non-empty string"),
    "timezone": ('[device]\ntimezone = "Europe/Berln"\n' + MINIMAL,
                 "config: [device] key 'timezone': unknown time zone 'Europe/Berln' "
                 '(an IANA name like "Europe/Berlin")'),
    "status led pin": ('[device]\nstatus_led_pin = 28\n' + MINIMAL,
                       "config: [device] key 'status_led_pin': must be a BCM GPIO number from 0 to 27"),
    # [[line]]
    "missing route": (without_key(MINIMAL, "route"), f"config: {L1} key 'route': missing"),
    "missing id": (without_key(MINIMAL, "id"), f"config: {L1} key 'id': missing"),
    "id zero": (MINIMAL.replace("id = 1", "id = 0"), f"config: {L1} key 'id': must be a positive integer"),
    "duplicate line id": (FXO.replace("id = 2", "id = 1"),
                          "config: [[line]] #2 key 'id': 1 is already used by [[line]] #1"),
    "driver": (MINIMAL.replace('"sim"', '"voip"'), f"config: {L1} key 'driver': must be one of fxo, modem, sim, modem-sim"),
    "plan": (set_key(MINIMAL, "[[line]]", "plan", '"jp"'),
             f"config: {L1} key 'plan': must be one of us, uk, de, fr, eu"),
    "rings bool is not an integer": (set_key(MINIMAL, "[[line]]", "rings", "true"),
                                     f"config: {L1} key 'rings': must be an integer from 1 to 20"),
    "rings too many": (set_key(MINIMAL, "[[line]]", "rings", "21"),
                       f"config: {L1} key 'rings': must be an integer from 1 to 20"),
    "rings as string": (set_key(MINIMAL, "[[line]]", "rings", '"4"'),
                        f"config: {L1} key 'rings': must be an integer from 1 to 20"),
    "toll saver out of range": (set_key(MINIMAL, "[[line]]", "toll_saver_rings", "-1"),
                                f"config: {L1} key 'toll_saver_rings': must be an integer from 0 to 20"),
    "toll saver not sooner": (set_key(MINIMAL, "[[line]]", "toll_saver_rings", "4"),
                              f"config: {L1} key 'toll_saver_rings': must be less than rings (4), or 0 for off"),
    "answer not bool": (set_key(MINIMAL, "[[line]]", "answer", "1"),
                        f"config: {L1} key 'answer': must be true or false"),
    "route malformed": (MINIMAL.replace('route = "100"', 'route = "box1"'),
                        f"config: {L1} key 'route': must be a box number or \"attendant\""),
    "route to no box": (MINIMAL.replace('route = "100"', 'route = "105"'),
                        f"config: {L1} key 'route': no [[box]] with number \"105\""),
    "route to attendant without one": (MINIMAL.replace('route = "100"', 'route = "attendant"'),
                                       f"config: {L1} key 'route': \"attendant\" needs an [attendant] table"),
    "fxo without audio": (without_key(FXO, "audio"),
                          "config: [[line]] #2 key 'audio': missing (driver \"fxo\" needs it)"),
    "fxo without ring pin": (without_key(FXO, "ring_pin"),
                             "config: [[line]] #2 key 'ring_pin': missing (driver \"fxo\" needs it)"),
    "pin out of range": (FXO.replace("ring_pin = 27", "ring_pin = 40"),
                         "config: [[line]] #2 key 'ring_pin': must be a BCM GPIO number from 0 to 27"),
    "pin used twice in a line": (FXO.replace("ring_pin = 27", "ring_pin = 17"),
                                 "config: [[line]] #2 key 'ring_pin': GPIO 17 is already used by [[line]] #2 key 'hook_pin'"),
    "pin used by a line and a box led": (set_key(FXO, "[[box]]", "led_pin", "27"),
                                         f"config: {B1} key 'led_pin': GPIO 27 is already used by [[line]] #2 key 'ring_pin'"),
    "pin used by status led and a line": ("[device]\nstatus_led_pin = 17\n" + FXO,
                                          "config: [[line]] #2 key 'hook_pin': GPIO 17 is already used by [device] key 'status_led_pin'"),
    "modem key on fxo line": (set_key(FXO, "[[line]]", "port", '"/dev/ttyACM0"', nth=2),
                              "config: [[line]] #2 key 'port': only for driver \"modem\""),
    "fxo key on modem line": (set_key(MODEM, "[[line]]", "audio", '"hw:1"', nth=2),
                              "config: [[line]] #2 key 'audio': only for driver \"fxo\""),
    "fxo key on sim line": (set_key(MINIMAL, "[[line]]", "hook_pin", "4"),
                            f"config: {L1} key 'hook_pin': only for driver \"fxo\""),
    "modem without port": (without_key(MODEM, "port"),
                           "config: [[line]] #2 key 'port': missing (driver \"modem\" needs it)"),
    "modem baud": (MODEM + "baud = 1234\n",
                   "config: [[line]] #2 key 'baud': must be one of 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600"),
    "audio shared by two lines": (FXO + FXO_LINE.replace("id = 2", "id = 3").replace("17", "5").replace("27", "6"),
                                  "config: [[line]] #3 key 'audio': \"plughw:CARD=Device\" is already used by [[line]] #2"),
    "gain out of range": (FXO + "tx_gain_db = 31\n",
                          "config: [[line]] #2 key 'tx_gain_db': must be a number from -30 to 30"),
    # [[box]]
    "box number too short": (MINIMAL.replace('number = "100"', 'number = "1"'),
                             f"config: {B1} key 'number': must be a string of 2 to 8 digits, in quotes (number = \"100\")"),
    "box number not quoted": (MINIMAL.replace('number = "100"', "number = 100"),
                              f"config: {B1} key 'number': must be a string of 2 to 8 digits, in quotes (number = \"100\")"),
    "duplicate box number": (MINIMAL + SECOND_BOX.replace('"101"', '"100"'),
                             "config: [[box]] #2 key 'number': \"100\" is already used by [[box]] #1"),
    "max messages zero in second box": (MINIMAL + SECOND_BOX + "max_messages = 0\n",
                                        "config: [[box]] #2 key 'max_messages': must be a positive integer"),
    "max message seconds": (MINIMAL + "max_message_seconds = 3601\n",
                            f"config: {B1} key 'max_message_seconds': must be an integer from 1 to 3600"),
    "keep heard days nan": (MINIMAL + "keep_heard_days = nan\n",
                            f"config: {B1} key 'keep_heard_days': must be a positive number"),
    "trash days zero": (MINIMAL + "trash_days = 0\n", f"config: {B1} key 'trash_days': must be a positive number"),
    "retract negative": (MINIMAL + "retract_minutes = -1\n",
                         f"config: {B1} key 'retract_minutes': must be a number of 0 or more"),
    "language": (MINIMAL + 'language = "ru"\n', f"config: {B1} key 'language': must be one of en, de, fr, es, it"),
    "prompts": (MINIMAL + 'prompts = "human"\n', f"config: {B1} key 'prompts': must be one of auto, espeak"),
    "pin hash malformed": (MINIMAL.replace(HASH, HASH[:-6]),
                           f"config: {B1} key 'pin_hash': not a PIN hash (make one with linebox pin-hash)"),
    "pin hash is a plain pin": (MINIMAL.replace(HASH, "1234"),
                                f"config: {B1} key 'pin_hash': not a PIN hash (make one with linebox pin-hash)"),
    "pin required without hash": (without_key(MINIMAL, "pin_hash"),
                                  f"config: {B1} key 'pin_hash': missing (pin_required is true; make one with linebox pin-hash)"),
    "email address": (MINIMAL + 'email = "office"\n',
                      f"config: {B1} key 'email': must be an e-mail address like name@example.com"),
    "email on new without email": (MINIMAL + "email_on_new = true\n",
                                   f"config: {B1} key 'email_on_new': needs 'email', the address to send to"),
    "email on new without [email]": (MINIMAL + 'email = "a@example.com"\nemail_on_new = true\n',
                                     f"config: {B1} key 'email_on_new': needs an [email] table (the SMTP server)"),
    # [attendant]
    "attendant key not a phone key": (ATT.replace('"*" = "login"', '"A" = "login"'),
                                      "config: [attendant] key 'options': 'A' is not a phone key (0-9, * or #)"),
    "attendant key two digits": (ATT.replace('"*" = "login"', '"12" = "100"'),
                                 "config: [attendant] key 'options': '12' is not a phone key (0-9, * or #)"),
    "attendant option to no box": (ATT.replace('"1" = "100"', '"1" = "999"'),
                                   "config: [attendant] key 'options': '1': no [[box]] with number \"999\""),
    "attendant option malformed": (ATT.replace('"1" = "100"', '"1" = 100'),
                                   "config: [attendant] key 'options': '1': must be a box number or \"login\""),
    "attendant options empty": (ATT.replace('{ "1" = "100", "*" = "login" }', "{}"),
                                "config: [attendant] key 'options': must be a table like { \"1\" = \"101\", \"*\" = \"login\" }"),
    "attendant default missing": (without_key(ATT, "default"), "config: [attendant] key 'default': missing"),
    "attendant default login": (ATT.replace('default = "100"', 'default = "login"'),
                                "config: [attendant] key 'default': must be a box number"),
    "attendant default to no box": (ATT.replace('default = "100"', 'default = "555"'),
                                    "config: [attendant] key 'default': no [[box]] with number \"555\""),
    "attendant wav missing": (ATT + 'prompt = "/nonexistent/menu.wav"\n',
                              "config: [attendant] key 'prompt': no such file: /nonexistent/menu.wav"),
    "attendant prompt odd": (ATT + 'prompt = "Main Menu"\n',
                             "config: [attendant] key 'prompt': must be a prompt name or a .wav file"),
    # [mqtt]
    "mqtt port": (MINIMAL.replace("[[line]]", '[mqtt]\nhost = "b"\nport = 70000\n\n[[line]]', 1),
                  "config: [mqtt] key 'port': must be an integer from 1 to 65535"),
    "mqtt host missing": ("[mqtt]\nport = 1883\n" + MINIMAL, "config: [mqtt] key 'host': missing"),
    "mqtt ca file missing": ('[mqtt]\nhost = "b"\ntls = true\nca_file = "/nonexistent/ca.pem"\n' + MINIMAL,
                             "config: [mqtt] key 'ca_file': no such file: /nonexistent/ca.pem"),
    "mqtt ca file without tls": ('[mqtt]\nhost = "b"\nca_file = "/etc/hostname"\n' + MINIMAL,
                                 "config: [mqtt] key 'ca_file': needs tls = true"),
    "mqtt password without username": ('[mqtt]\nhost = "b"\npassword = "x"\n' + MINIMAL,
                                       "config: [mqtt] key 'password': needs 'username'"),
    "mqtt topic wildcard": ('[mqtt]\nhost = "b"\nbase_topic = "a/#"\n' + MINIMAL,
                            "config: [mqtt] key 'base_topic': must be a topic like \"linebox\" or "
                            "\"home/linebox\" (no +, #, spaces or empty levels)"),
    "mqtt discovery": ('[mqtt]\nhost = "b"\ndiscovery = "yes"\n' + MINIMAL,
                       "config: [mqtt] key 'discovery': must be true or false"),
    # [email]
    "email from missing": ('[email]\nsmtp_host = "mx"\n' + MINIMAL, "config: [email] key 'from': missing"),
    "email from malformed": ('[email]\nsmtp_host = "mx"\nfrom = "linebox"\n' + MINIMAL,
                             "config: [email] key 'from': must be an e-mail address like linebox@example.com "
                             "or \"Linebox <linebox@example.com>\""),
    "email tls and starttls": ('[email]\nsmtp_host = "mx"\nfrom = "a@b"\ntls = true\nstarttls = true\n' + MINIMAL,
                               "config: [email] key 'starttls': must be false when tls = true "
                               "(the connection is TLS from the start)"),
    "email username without password": ('[email]\nsmtp_host = "mx"\nfrom = "a@b"\nusername = "u"\n' + MINIMAL,
                                        "config: [email] key 'username': needs 'password'"),
    "email attachment size": ('[email]\nsmtp_host = "mx"\nfrom = "a@b"\nmax_attachment_bytes = 0\n' + MINIMAL,
                              "config: [email] key 'max_attachment_bytes': must be a positive integer"),
}


@pytest.mark.parametrize("text, expected", CASES.values(), ids=CASES.keys())
def test_each_mistake_gives_exactly_one_line_naming_table_and_key(text, expected):
    message = error_of(text)
    assert message == expected
    assert "\n" not in message


def test_unknown_key_is_reported_before_a_missing_one():
    # The typo is the cause; "route: missing" would send the user looking elsewhere.
    text = MINIMAL.replace('route = "100"', 'rout = "100"')
    assert error_of(text) == f"config: {L1}: unknown key 'rout'"


# ------------------------------------------------------------------ files and the real CLI


def test_missing_file(tmp_path):
    path = tmp_path / "none.toml"
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"config: {path}: No such file or directory"


def test_invalid_toml_names_file_line_and_column_on_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[device]\nid = "x"\nname = \n')
    with pytest.raises(tomllib.TOMLDecodeError) as parser:
        tomllib.loads(path.read_text())
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"config: {path}: {' '.join(str(parser.value).splitlines())}"
    assert "line 3" in str(e.value)


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[device]\nname = "B\xfcro"\n')
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"config: {path}: not UTF-8 text (line 2)"


def cli_check(path) -> tuple[int, str, bytes]:
    r = run_linebox("config", "check", "--config", path)
    return r.returncode, r.stderr.decode(), r.stdout


@pytest.mark.parametrize("text, expected", [
    CASES["unknown key"], CASES["max messages zero in second box"], CASES["mqtt port"],
    CASES["fxo without audio"],
], ids=["unknown key", "bad value", "plain table", "driver key"])
def test_cli_reports_a_config_mistake_as_one_line_and_exit_2(tmp_path, text, expected):
    path = tmp_path / "linebox.toml"
    path.write_text(text)
    assert cli_check(path) == (2, f"linebox: error: {expected}\n", b"")


def test_cli_reports_a_missing_file_as_one_line_and_exit_2(tmp_path):
    path = tmp_path / "none.toml"
    assert cli_check(path) == (2, f"linebox: error: config: {path}: No such file or directory\n", b"")


def test_cli_reports_invalid_toml_as_one_line_and_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[[line]\nid = 1\n")
    code, err, out = cli_check(path)
    assert (code, out) == (2, b"")
    assert err.startswith(f"linebox: error: config: {path}: ")
    assert err.count("\n") == 1 and "line 1" in err


# ------------------------------------------------------------------ hostile configurations

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
HOSTILE_CONFIGS = {
    "config-nested-500.toml": "values nested too deep",
    "config-email-from-cr.toml": "config: [email] key 'from': must not contain control characters or line breaks",
    "config-email-from-u2028.toml": "config: [email] key 'from': must not contain control characters or line breaks",
    "config-data-dir-nul.toml": "config: [device] key 'data_dir': must not contain control characters or line breaks",
    "config-base-topic-nul.toml": "config: [mqtt] key 'base_topic': must not contain control characters or line breaks",
    "config-device-id-70000.toml": "config: [device] key 'id': is too long (70000 characters; at most 64)",
    "config-weak-scrypt.toml": "config: [[box]] #1 key 'pin_hash': scrypt parameters N=2, r=1 are too weak",
}


@pytest.mark.parametrize("name, expected", HOSTILE_CONFIGS.items(), ids=HOSTILE_CONFIGS.keys())
def test_config_check_refuses_what_would_break_at_run_time(name, expected):
    r = subprocess.run([sys.executable, "-m", "linebox", "config", "check", "--config", str(HOSTILE / name)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("linebox: error: ") and r.stderr.count("\n") == 1
    assert expected in r.stderr


@pytest.mark.parametrize("data", ["", "   ", "a\0b"], ids=["empty", "blank", "nul"])
def test_an_empty_data_option_is_refused(tmp_path, data):
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    with pytest.raises(ConfigError, match="--data: must be the path of a folder"):
        load_config(path, data_dir=data)


def test_a_huge_configuration_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_config(path)


def test_a_box_may_switch_remote_login_off():
    cfg = parse_config(tomllib.loads(MINIMAL + "remote_login = false\n"), "t")
    assert cfg.boxes["100"].remote_login is False
    assert parse_config(tomllib.loads(MINIMAL), "t").boxes["100"].remote_login is True


def test_table_keys_come_from_the_dataclass_fields_with_the_aliases_spelled_out():
    from dataclasses import dataclass

    from linebox.config import _keys, _only

    @dataclass(frozen=True)
    class Demo:
        a: int
        host: str = "0.0.0.0"
        port: int = 1
        sender: str = ""
        gain: float = _only(("fxo",), 0.0)

    # A new field is a new key, without a second list to keep in step.
    assert _keys(Demo) == ("a", "host", "port", "sender", "gain")
    assert _keys(Demo, {"host": "listen", "port": None, "sender": "from"}, ("enabled",)) == (
        "a", "listen", "from", "gain", "enabled")
    assert _keys(Demo, drivers=("fxo",)) == ("gain",)
    # An alias for a field that was renamed or removed is caught at import.
    with pytest.raises(AssertionError, match="no field"):
        _keys(Demo, {"hots": "listen"})


def test_every_driver_only_line_key_names_real_drivers_and_is_refused_elsewhere():
    from dataclasses import fields

    from linebox.config import DRIVERS, LineConfig

    only = {f.name: f.metadata["drivers"] for f in fields(LineConfig) if "drivers" in f.metadata}
    assert set(only) >= {"audio", "port", "init", "chipset"}
    assert all(set(d) <= set(DRIVERS) for d in only.values())
    for key, drivers in only.items():
        other = next(d for d in ("sim", "fxo", "modem") if d not in drivers)
        line = {"id": 1, "driver": other, "route": "100", key: 1}
        with pytest.raises(ConfigError, match=f"'{key}'"):
            parse_config({"line": [line], "box": [{"number": "100", "pin_required": False}]})
