"""The appliance files: the systemd unit, the sysusers.d file, the udev rule and the
install script say what the daemon and each other expect."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from linebox.cli import DEFAULT_CONFIG
from linebox.config import DeviceConfig

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "systemd"
UNIT = SYSTEMD / "linebox.service"
INSTALL = ROOT / "scripts" / "install.sh"
GROUPS = {"gpio", "audio", "dialout", "plugdev"}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: [Section], Key=value, a key may repeat; # and ; comment."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"line {n} is not Key=value in a section: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit():
    return parse_unit(UNIT.read_text())


def one(section: dict, key: str) -> str:
    values = section.get(key)
    assert values is not None and len(values) == 1, f"{key}: {values}"
    return values[0]


def test_service_notifies_readiness_and_feeds_a_30_second_watchdog(unit):
    s = unit["Service"]
    assert {k: one(s, k) for k in ("Type", "NotifyAccess", "WatchdogSec")} == {
        "Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30"}


def test_service_always_restarts_and_stops_with_sigterm_within_15_seconds(unit):
    s = unit["Service"]
    assert {k: one(s, k) for k in ("Restart", "RestartSec", "KillSignal", "TimeoutStopSec")} == {
        "Restart": "always", "RestartSec": "5", "KillSignal": "SIGTERM", "TimeoutStopSec": "15"}


def test_service_runs_linebox_from_the_appliance_venv_with_the_default_config(unit):
    assert one(unit["Service"], "ExecStart") == \
        f"/opt/linebox/venv/bin/linebox run --config {DEFAULT_CONFIG}"


def test_service_runs_as_linebox_with_the_hardware_groups(unit):
    s = unit["Service"]
    assert (one(s, "User"), one(s, "Group")) == ("linebox", "linebox")
    assert set(one(s, "SupplementaryGroups").split()) == GROUPS


def test_state_directory_is_the_default_data_dir_and_config_directory_holds_the_config(unit):
    s = unit["Service"]
    assert Path("/var/lib") / one(s, "StateDirectory") == DeviceConfig.data_dir
    assert Path("/etc") / one(s, "ConfigurationDirectory") == Path(DEFAULT_CONFIG).parent


def test_service_is_hardened_but_keeps_the_devices(unit):
    s = unit["Service"]
    hardening = {
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "NoNewPrivileges": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
        "RestrictNamespaces": "yes", "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
    }
    assert {k: one(s, k) for k in hardening} == hardening
    # /dev/gpiochip*, /dev/snd/* and /dev/ttyACM* must stay visible.
    for hides_devices in ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProcSubset"):
        assert hides_devices not in s


def test_service_logs_to_the_journal_with_level_prefixes(unit):
    s = unit["Service"]
    assert one(s, "StandardOutput") == "journal"
    assert "SyslogLevelPrefix" not in s          # the default, yes, reads <N> prefixes


def test_service_waits_for_the_marker_install_sh_leaves_until_configured(unit):
    marker = re.search(r"^UNCONFIGURED=\$CONF_DIR/(\S+)$", INSTALL.read_text(), re.M).group(1)
    conf_dir = re.search(r"^CONF_DIR=(\S+)$", INSTALL.read_text(), re.M).group(1)
    assert one(unit["Unit"], "ConditionPathExists") == f"!{conf_dir}/{marker}"
    assert one(unit["Install"], "WantedBy") == "multi-user.target"


def _verify(tmp_path, text):
    copy = tmp_path / "linebox.service"
    copy.write_text(text.replace("/opt/linebox/venv/bin/linebox", shutil.which("true")))
    r = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True,
                       timeout=60)
    # Lines about other units on this machine are not ours to judge.
    return r.returncode, [line for line in r.stderr.splitlines() if "linebox.service" in line]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_finds_nothing_wrong(tmp_path):
    assert _verify(tmp_path, UNIT.read_text()) == (0, [])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_would_report_a_bad_setting(tmp_path):
    _, errors = _verify(tmp_path, UNIT.read_text().replace("WatchdogSec=30", "WatchdogSec=thirty"))
    assert len(errors) == 1 and errors[0].endswith("Failed to parse sec value, ignoring: thirty")


# ------------------------------------------------------------------ sysusers.d

def test_sysusers_creates_the_static_user_and_the_groups_the_unit_names(unit):
    lines = [line.split() for line in (SYSTEMD / "linebox.sysusers").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    users = [ln for ln in lines if ln[0] == "u"]
    assert len(users) == 1
    assert users[0][:3] == ["u", "linebox", "-"] and users[0][-2:] == ["/var/lib/linebox", "/usr/sbin/nologin"]
    memberships = {ln[2] for ln in lines if ln[0] == "m" and ln[1] == "linebox"}
    assert memberships == set(one(unit["Service"], "SupplementaryGroups").split()) == GROUPS


# ------------------------------------------------------------------ udev

RULE_ITEM = re.compile(r'\s*(?P<key>[A-Z_]+)(?:\{(?P<attr>[^}]+)\})?(?P<op>==|!=|\+=|-=|:=|=)"(?P<value>[^"]*)"\s*(?:,|$)')


def parse_rules(text: str) -> list[list[tuple[str, str | None, str, str]]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        items, pos = [], 0
        while pos < len(line):
            m = RULE_ITEM.match(line, pos)
            assert m, f"not udev syntax at {line[pos:]!r} in {raw!r}"
            items.append((m["key"], m["attr"], m["op"], m["value"]))
            pos = m.end()
        rules.append(items)
    return rules


@pytest.fixture(scope="module")
def rules():
    return parse_rules((SYSTEMD / "90-linebox-modem.rules").read_text())


def test_udev_rule_names_the_supported_modems(rules):
    ids = set()
    for items in rules:
        attrs = {(k, a): v for k, a, op, v in items if k == "ATTRS" and op == "=="}
        if ("ATTRS", "idVendor") in attrs:
            vendor = attrs[("ATTRS", "idVendor")]
            ids |= {(vendor, p) for p in attrs[("ATTRS", "idProduct")].split("|")}
            assert ("GOTO", None, "=", "linebox_modem") in items
    assert {("0baf", "0303"), ("0572", "1321"), ("0572", "1329"), ("0572", "1340"),
            ("0803", "3095")} <= ids


def test_udev_rule_gives_modems_a_stable_name_in_dialout_away_from_modemmanager(rules):
    labels = [i for i, items in enumerate(rules) if items == [("LABEL", None, "=", "linebox_modem")]]
    assert len(labels) == 1
    assert rules[labels[0] + 1] == [("SYMLINK", None, "+=", "linebox-modem%n"),
                                    ("GROUP", None, "=", "dialout"), ("MODE", None, "=", "0660"),
                                    ("ENV", "ID_MM_DEVICE_IGNORE", "=", "1")]


def test_every_udev_goto_has_its_label(rules):
    gotos = {v for items in rules for k, _, _, v in items if k == "GOTO"}
    labels = {v for items in rules for k, _, _, v in items if k == "LABEL"}
    assert gotos == labels == {"linebox_modem", "linebox_gpio", "linebox_end"}


# ------------------------------------------------------------------ install.sh

def test_install_script_is_valid_bash():
    r = subprocess.run(["bash", "-n", str(INSTALL)], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (0, "")


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_install_script_and_image_recipe_pass_shellcheck():
    scripts = [INSTALL, *sorted((ROOT / "images").rglob("*.sh"))]
    r = subprocess.run(["shellcheck", "--shell=bash", *map(str, scripts)], capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "")


def test_install_script_installs_every_appliance_file():
    text = INSTALL.read_text()
    shipped = {p.name for p in SYSTEMD.iterdir()} - {"README.md"}
    assert {name for name in shipped if f"systemd/{name}" in text} == shipped


def test_install_script_refuses_an_unknown_option_before_doing_anything():
    r = subprocess.run(["bash", str(INSTALL), "--frobnicate"], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", "install.sh: error: unknown option --frobnicate (see --help)\n")


def test_install_script_help_describes_its_usage():
    r = subprocess.run(["bash", str(INSTALL), "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert "scripts/install.sh [--no-systemctl] [SOURCE]" in r.stdout
    assert "set -euo" not in r.stdout


def test_install_script_refuses_to_run_without_root():
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    r = subprocess.run([*as_user, "bash", str(INSTALL)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.startswith("install.sh: error: run as root (sudo ")
