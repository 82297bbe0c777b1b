#!/usr/bin/env bash
# Installs what kernlab needs on a Debian 12 host (run as root): QEMU, the
# guest image's host binaries (static busybox, dropbear, kexec,
# makedumpfile), kmod for depmod, e2fsprogs and crash for dumps, mmdebstrap
# and qemu-utils for `image: debian` and users' disk images, headless
# Chromium for the test that opens report.html, and the C toolchain and
# OpenSSL headers the ssh2 crate builds against.
# Kernels are not installed here: kernlab fetches them into its cache with
# apt-get download on first use.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  qemu-system-x86   # the VM
  qemu-system-arm   # arm64 guests (qemu-system-aarch64), under TCG on this host
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross   # modules and static programs cross-built for arm64 guests
  binutils          # readelf: the libraries of a foreign guest's programs
  qemu-utils        # qemu-img: users' disk images and their per-run overlays (qemu-io in tests)
  busybox-static    # the guest's userland
  dropbear-bin      # the guest's sshd, and dropbearkey for per-run host keys
  kmod              # depmod for the kernels' module trees
  gcc make pkg-config libssl-dev   # building libssh2 for the ssh2 crate
  libc6-dev         # static workload programs (churn) for the guest
  dwarves           # pahole: 6.12 kernels' module builds (BTF) look for it
  apt               # apt-get download / apt-cache for kernels and headers
  kexec-tools       # kexec -p in the guest, for in-guest kdump
  makedumpfile      # the capture kernel's dump writer
  e2fsprogs         # mkfs.ext4 -d and debugfs for the dump disk
  dosfstools        # fsck.fat: the tests check the cloud-init seed disk with it
  mmdebstrap        # image: debian's root file system (--mode=unshare: no mounts)
  uidmap            # newuidmap/newgidmap for mmdebstrap --mode=unshare as a user (only Recommended by it)
  crash             # vmcore triage (the host's own architecture)
  python3-drgn      # vmcore triage of any architecture (triage.engine: drgn; arm64 guests on this host)
  jq                # scripts/test.sh reads cargo's list of test executables
  git               # kernlab bisect: a module's history (git archive, rev-list)
  dkms              # the reference tests/dkms.rs compares kernlab's reading of a dkms.conf with
  patch             # modules[].patches and a dkms.conf's PATCH
  chromium          # headless: the report.html test opens the page and takes a screenshot
  ca-certificates
)
# Twice: installing one package can remove another that the machine came
# with (a newer qemu-utils from backports conflicts with Debian 12's
# qemu-system-common and is removed); the second pass installs Debian
# 12's own.
for pass in 1 2; do
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    break
  fi
  [ "$pass" = 1 ] && apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
done
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || { echo "setup: $p is still not installed" >&2; exit 1; }
done
