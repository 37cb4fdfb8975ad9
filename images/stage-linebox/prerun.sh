#!/bin/bash -e
# pi-gen: this stage starts from the root file system of the stage before it (stage2,
# Raspberry Pi OS Lite).
if [ ! -d "${ROOTFS_DIR}" ]; then
	copy_previous
fi
