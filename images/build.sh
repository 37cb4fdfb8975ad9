#!/bin/bash
# Build a Raspberry Pi OS Lite (Bookworm, 64-bit) image with Linebox installed, using
# pi-gen and the stage in images/stage-linebox. Run as root on a Debian 12 machine:
#
#   images/build.sh [--docker] [WORKDIR]
#
# WORKDIR (default /var/tmp/linebox-image) holds the pi-gen checkout and its work
# folder (about 10 GB). The image lands in WORKDIR/pi-gen/deploy/. See images/README.md.
#
# Environment: PIGEN_REPO, PIGEN_BRANCH (default arm64: the 64-bit Bookworm branch),
# LINEBOX_HOSTNAME (default linebox), LINEBOX_USER (default linebox-admin),
# LINEBOX_TIMEZONE (default Etc/UTC), LINEBOX_LOCALE (default en_US.UTF-8).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TREE=$(cd "$HERE/.." && pwd)
DOCKER=0
WORKDIR=""
while [ $# -gt 0 ]; do
    case $1 in
        --docker) DOCKER=1 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        -*) echo "build.sh: error: unknown option $1" >&2; exit 1 ;;
        *) WORKDIR=$1 ;;
    esac
    shift
done
WORKDIR=${WORKDIR:-/var/tmp/linebox-image}
PIGEN_REPO=${PIGEN_REPO:-https://github.com/RPi-Distro/pi-gen.git}
PIGEN_BRANCH=${PIGEN_BRANCH:-arm64}
[ "$(id -u)" -eq 0 ] || { echo "build.sh: error: run as root (pi-gen needs it)" >&2; exit 1; }
case $WORKDIR in *" "*) echo "build.sh: error: no spaces in WORKDIR (debootstrap)" >&2; exit 1 ;; esac

# pi-gen's own dependencies (its README lists them).
if [ "$DOCKER" -eq 0 ]; then
    apt-get install -y -q coreutils quilt parted qemu-user-static debootstrap zerofree zip \
        dosfstools libarchive-tools libcap2-bin grep rsync xz-utils file git curl bc \
        gpg pigz xxd arch-test >/dev/null
fi

mkdir -p "$WORKDIR"
if [ ! -d "$WORKDIR/pi-gen/.git" ]; then
    git clone --branch "$PIGEN_BRANCH" --depth 1 "$PIGEN_REPO" "$WORKDIR/pi-gen"
fi
PIGEN=$WORKDIR/pi-gen

# The Linebox stage, with a copy of this tree (without the developer's .venv and .git).
STAGE=$PIGEN/stage-linebox
rm -rf "$STAGE"
cp -a "$HERE/stage-linebox" "$STAGE"
mkdir -p "$STAGE/00-linebox/files/linebox"
tar -C "$TREE" --exclude=./.venv --exclude=./.git --exclude='*.egg-info' --exclude=__pycache__ \
    --exclude=.pytest_cache --exclude=.ruff_cache -cf - . | tar -C "$STAGE/00-linebox/files/linebox" -xf -

# Only the Linebox image is exported, not the plain Lite one.
touch "$PIGEN/stage2/SKIP_IMAGES"
cat >"$PIGEN/config" <<EOF
IMG_NAME=linebox
RELEASE=bookworm
DEPLOY_COMPRESSION=xz
TARGET_HOSTNAME=${LINEBOX_HOSTNAME:-linebox}
FIRST_USER_NAME=${LINEBOX_USER:-linebox-admin}
# No FIRST_USER_PASS: set the password (and Wi-Fi, SSH key) with Raspberry Pi Imager's
# OS customisation, or at the first-boot prompt.
DISABLE_FIRST_BOOT_USER_RENAME=0
ENABLE_SSH=1
LOCALE_DEFAULT=${LINEBOX_LOCALE:-en_US.UTF-8}
TIMEZONE_DEFAULT=${LINEBOX_TIMEZONE:-Etc/UTC}
STAGE_LIST="stage0 stage1 stage2 stage-linebox"
EOF

cd "$PIGEN"
if [ "$DOCKER" -eq 1 ]; then
    ./build-docker.sh
else
    ./build.sh
fi
echo "build.sh: image(s) in $PIGEN/deploy:"
ls -l "$PIGEN/deploy"
