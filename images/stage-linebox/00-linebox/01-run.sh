#!/bin/bash -e
# pi-gen runs this on the build machine, in this folder, with ROOTFS_DIR the image's root.
# images/build.sh put a copy of the Linebox tree in files/linebox: install it from
# there, in the image's chroot, with the same script an administrator runs on a Pi.
[ -f files/linebox/scripts/install.sh ] || { echo "files/linebox is missing: build with images/build.sh" >&2; exit 1; }
rm -rf "${ROOTFS_DIR}/usr/src/linebox"
install -d "${ROOTFS_DIR}/usr/src/linebox"
cp -a files/linebox/. "${ROOTFS_DIR}/usr/src/linebox/"

on_chroot <<CHROOT
/usr/src/linebox/scripts/install.sh --no-systemctl
CHROOT
