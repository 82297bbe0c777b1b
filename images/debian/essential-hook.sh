#!/bin/sh
# mmdebstrap --essential-hook, run before the packages are installed.
# kdump-tools' kernel hook runs mkinitramfs with MODULES=dep, which fails in
# a chroot ("failed to determine device for /"): build list-based initrds
# with the drivers of the devices kernlab attaches instead, and the file
# systems a user's own disk may have as its root (image: {disk, root}).
set -e
mkdir -p "$1/etc/initramfs-tools/conf.d"
echo MODULES=list > "$1/etc/initramfs-tools/conf.d/kernlab"
printf '%s\n' virtio_pci virtio_mmio virtio_blk virtio_scsi sd_mod virtio_net ext4 xfs btrfs > "$1/etc/initramfs-tools/modules"
