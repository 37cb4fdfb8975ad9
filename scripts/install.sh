#!/bin/bash
# Install (or upgrade) Linebox as an appliance on Raspberry Pi OS Bookworm or Debian 12.
# The one installer: the image recipe (images/) runs it in the image's chroot, and an
# administrator runs it by hand on an existing Pi. Run as root:
#
#   scripts/install.sh [--no-systemctl] [SOURCE]
#
# SOURCE is a Linebox source tree or wheel (default: the tree this script is in). The
# systemd units, the udev rule and the example configuration always come from the
# tree this script is in.
#
# What it does, each step only as far as needed (running it again changes nothing but
# the Python environment, which is rebuilt):
#   - Debian packages, runtime needs only (no test tools): Python, venv, ALSA and USB
#     tools; on a Pi the [pi] extra, the RPi.GPIO API (python3-rpi-lgpio on Raspberry
#     Pi OS, else from PyPI); pyalsaaudio from Debian when new enough, else what pip
#     needs to build it;
#   - the system user `linebox` (systemd-sysusers, or useradd where it is missing);
#   - a fresh virtual environment /opt/linebox/venvs/<time> (with the system's site
#     packages, so the distribution's lgpio is used), pointed to by the symlink
#     /opt/linebox/venv once it works; the previous one is kept for a rollback;
#   - the unit, the sysusers.d file and the udev rule;
#   - /etc/linebox/linebox.toml from the example, only if there is none (an upgrade
#     keeps the configuration; /var/lib/linebox is never touched: the daemon migrates
#     the data folder when it starts);
#   - enables linebox.service; (re)starts it only when it is configured.
#
# --no-systemctl: for a chroot (image build, tests), where systemd is not running:
# the service is enabled by its symlink, and nothing is reloaded or started.
set -euo pipefail

PREFIX=/opt/linebox
UNIT_DIR=/usr/lib/systemd/system
SYSUSERS_DIR=/usr/lib/sysusers.d
UDEV_DIR=/etc/udev/rules.d
CONF_DIR=/etc/linebox
DATA_DIR=/var/lib/linebox
UNCONFIGURED=$CONF_DIR/UNCONFIGURED

TREE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SYSTEMCTL=1
SOURCE=""

say() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

while [ $# -gt 0 ]; do
    case $1 in
        --no-systemctl) SYSTEMCTL=0 ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$SOURCE" ] || die "one SOURCE only"; SOURCE=$1 ;;
    esac
    shift
done
SOURCE=${SOURCE:-$TREE}
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
[ -e "$SOURCE" ] || die "no such source tree or wheel: $SOURCE"
SOURCE=$(cd "$(dirname "$SOURCE")" && pwd)/$(basename "$SOURCE")
for f in systemd/linebox.service systemd/linebox.sysusers systemd/90-linebox-modem.rules \
         examples/linebox.toml; do
    [ -f "$TREE/$f" ] || die "$TREE/$f is missing: run the install.sh of a complete Linebox tree"
done

# ------------------------------------------------------------------ Debian packages
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# The version apt would install ("" when the package does not exist here).
candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '^(none)$' || true; }

APT_UPDATED=0
apt_update_once() {
    [ "$APT_UPDATED" -eq 1 ] && return
    say "apt-get update"
    apt-get update -q >/dev/null || say "warning: apt-get update failed; trying with what apt knows"
    APT_UPDATED=1
}

# Runtime needs only: no test tools on the appliance (those are scripts/ensure-deps --test).
# alsa-utils (aplay -l, alsamixer) and usbutils (lsusb) are what hwcheck's hints name.
PKGS="python3 python3-venv ca-certificates alsa-utils usbutils systemd udev"
PIP_EXTRAS=""
# A fresh machine may never have run apt-get update: the optional packages below are
# looked up in a current index.
[ -n "$(candidate python3-venv)" ] || apt_update_once

# RPi.GPIO's API, Linebox's [pi] extra (rpi-lgpio: it works on every Pi, the Pi 5
# included). A Pi is an ARM machine (the image is built in an ARM chroot on a PC, where
# /proc/device-tree is the PC's) or says so in its device tree. Raspberry Pi OS packages
# rpi-lgpio: installed from there, pip finds the extra satisfied through the system
# site packages; elsewhere pip installs it. Off a Pi there is no GPIO to drive.
ON_PI=0
case $(dpkg --print-architecture) in arm64|armhf|armel) ON_PI=1 ;; esac
grep -qs "Raspberry Pi" /proc/device-tree/model && ON_PI=1
if [ "$ON_PI" -eq 1 ]; then
    PIP_EXTRAS="[pi]"
    if [ -n "$(candidate python3-rpi-lgpio)" ]; then
        PKGS="$PKGS python3-rpi-lgpio"
    else
        say "python3-rpi-lgpio is not packaged here: pip installs rpi-lgpio"
    fi
else
    say "note: not a Raspberry Pi: GPIO lines (driver fxo, lamps) will not work; modem lines will"
fi
# pyalsaaudio: Debian's if it is new enough (pyproject.toml wants >= 0.10), else built
# by pip, which needs a C compiler, the Python headers and the ALSA headers.
alsa=$(candidate python3-alsaaudio)
if [ -n "$alsa" ] && dpkg --compare-versions "$alsa" ge 0.10; then
    PKGS="$PKGS python3-alsaaudio"
else
    PKGS="$PKGS gcc libc6-dev python3-dev libasound2-dev"
fi

# The prompts' human voices (Asterisk's core sound sets, CC BY-SA 3.0) and espeak-ng for
# the box names; without them Linebox speaks with its shipped espeak-ng clips.
for p in espeak-ng asterisk-core-sounds-en-wav asterisk-core-sounds-fr-wav \
         asterisk-core-sounds-es-wav asterisk-core-sounds-it-wav; do
    if [ -n "$(candidate "$p")" ]; then PKGS="$PKGS $p"; else say "note: $p is not packaged here: espeak-ng prompts instead"; fi
done

missing=""
for p in $PKGS; do installed "$p" || missing="$missing $p"; done
if [ -n "$missing" ]; then
    apt_update_once
    say "installing Debian packages:$missing"
    # shellcheck disable=SC2086 # word splitting of the package list is wanted
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null \
        || die "apt-get install$missing failed"
fi

# ------------------------------------------------------------------ the system user
install -D -m 0644 "$TREE/systemd/linebox.sysusers" "$SYSUSERS_DIR/linebox.conf"
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers "$SYSUSERS_DIR/linebox.conf"
else
    for g in linebox gpio audio dialout plugdev; do
        getent group "$g" >/dev/null || groupadd --system "$g"
    done
    getent passwd linebox >/dev/null || useradd --system --gid linebox --home-dir "$DATA_DIR" \
        --no-create-home --shell /usr/sbin/nologin --comment "Linebox voicemail appliance" linebox
    usermod --append --groups gpio,audio,dialout,plugdev linebox
fi
getent passwd linebox >/dev/null || die "the user linebox could not be created"

# ------------------------------------------------------------------ Python environment
stamp=$(date -u +%Y%m%dT%H%M%SZ)
while [ -e "$PREFIX/venvs/$stamp" ]; do sleep 1; stamp=$(date -u +%Y%m%dT%H%M%SZ); done
NEW=$PREFIX/venvs/$stamp
WORK=$(mktemp -d)
cleanup() {
    rm -rf "$WORK"
    # A half-built environment never stays behind (the symlink moves only at the end).
    if [ -n "${NEW:-}" ] && [ -d "$NEW" ] && [ "$(readlink -f "$PREFIX/venv" 2>/dev/null)" != "$NEW" ]; then
        rm -rf "$NEW"
    fi
}
trap cleanup EXIT

mkdir -p "$PREFIX/venvs"
say "creating $NEW"
python3 -m venv --system-site-packages "$NEW"
pip() { "$NEW/bin/python" -m pip --disable-pip-version-check --no-input -q "$@" >>"$WORK/pip.log" 2>&1; }

if [ -d "$SOURCE" ]; then
    # Build from a copy: pip builds in the tree, and the tree may be a developer's
    # checkout (its .venv and .git are not wanted) or read-only.
    [ -f "$SOURCE/pyproject.toml" ] || die "$SOURCE is not a Linebox source tree (no pyproject.toml)"
    mkdir "$WORK/src"
    tar -C "$SOURCE" --exclude=./.venv --exclude=./.git --exclude=./build --exclude=./dist \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache --exclude=.ruff_cache \
        -cf - . | tar -C "$WORK/src" -xf -
    say "building the Linebox wheel from $SOURCE"
    pip wheel --no-deps --wheel-dir "$WORK/wheel" "$WORK/src" \
        || { cat "$WORK/pip.log" >&2; die "building the wheel failed (pip log above)"; }
    WHEEL=$(ls "$WORK"/wheel/linebox-*.whl)
else
    case $SOURCE in *.whl) WHEEL=$SOURCE ;; *) die "$SOURCE is neither a source tree nor a .whl" ;; esac
fi
say "installing $(basename "$WHEEL")$PIP_EXTRAS and its dependencies"
pip install "$WHEEL$PIP_EXTRAS" || { cat "$WORK/pip.log" >&2; die "pip install failed (pip log above)"; }
version=$("$NEW/bin/linebox" --version) || die "the new environment does not run: $NEW/bin/linebox --version"
if [ -n "$PIP_EXTRAS" ]; then
    "$NEW/bin/python" -c 'import importlib.metadata as m; m.version("rpi-lgpio")' 2>/dev/null \
        || die "the [pi] extra (rpi-lgpio, the RPi.GPIO API) is missing from $NEW"
fi

# Switch atomically: the running daemon keeps its environment until it restarts.
if [ -e "$PREFIX/venv" ] && [ ! -L "$PREFIX/venv" ]; then
    mv "$PREFIX/venv" "$PREFIX/venvs/previous-$stamp"      # a venv made by hand
    ln -s "venvs/previous-$stamp" "$PREFIX/venv"
fi
previous=$(basename "$(readlink "$PREFIX/venv" 2>/dev/null || echo none)")
ln -sfn "venvs/$stamp" "$PREFIX/venv.new"
mv -T "$PREFIX/venv.new" "$PREFIX/venv"
# Keep the new environment and the one before it (to roll back: point the symlink
# back and restart). Chosen by name, not by time: a Pi without a clock battery may
# boot with its clock in the past.
for old in "$PREFIX"/venvs/*; do
    case $(basename "$old") in "$stamp"|"$previous") ;; *) rm -rf "$old" ;; esac
done
install -m 0644 "$TREE/README.md" "$PREFIX/README.md"
say "installed $version in $PREFIX/venv"

# ------------------------------------------------------------------ units and rules
install -D -m 0644 "$TREE/systemd/linebox.service" "$UNIT_DIR/linebox.service"
install -D -m 0644 "$TREE/systemd/90-linebox-modem.rules" "$UDEV_DIR/90-linebox-modem.rules"

# ------------------------------------------------------------------ configuration, data
install -d -m 0750 -o root -g linebox "$CONF_DIR"
if [ ! -e "$CONF_DIR/linebox.toml" ]; then
    install -m 0640 -o root -g linebox "$TREE/examples/linebox.toml" "$CONF_DIR/linebox.toml"
    cat >"$UNCONFIGURED" <<EOF
Linebox is installed but not configured yet: it will not start.
  1. Describe your lines and boxes in $CONF_DIR/linebox.toml (box PINs: linebox pin-hash)
  2. linebox config check --config $CONF_DIR/linebox.toml
  3. linebox hwcheck --config $CONF_DIR/linebox.toml
  4. rm $UNCONFIGURED && systemctl start linebox
EOF
    # The hint on every login, until the marker is removed (then the link dangles and
    # pam_motd skips it).
    mkdir -p /etc/motd.d
    ln -sfn "$UNCONFIGURED" /etc/motd.d/linebox
    say "example configuration installed as $CONF_DIR/linebox.toml"
else
    say "keeping the configuration in $CONF_DIR"
fi
install -d -m 0750 -o linebox -g linebox "$DATA_DIR"
ln -sfn "$PREFIX/venv/bin/linebox" /usr/local/bin/linebox

# ------------------------------------------------------------------ systemd
if [ "$SYSTEMCTL" -eq 0 ]; then
    mkdir -p /etc/systemd/system/multi-user.target.wants
    ln -sfn "$UNIT_DIR/linebox.service" /etc/systemd/system/multi-user.target.wants/linebox.service
    say "linebox.service enabled (no systemctl: nothing reloaded or started)"
elif [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    udevadm control --reload || true
    udevadm trigger --action=add --subsystem-match=tty --subsystem-match=gpio || true
    systemctl enable --quiet linebox.service
    if [ -e "$UNCONFIGURED" ]; then
        say "linebox.service enabled, not started: see $UNCONFIGURED"
    else
        systemctl restart linebox.service
        say "linebox.service (re)started: journalctl -u linebox -f"
    fi
else
    die "systemd is not running here: use --no-systemctl in a chroot"
fi
if [ -e "$UNCONFIGURED" ]; then
    echo
    cat "$UNCONFIGURED"
fi
