#!/usr/bin/env bash
# Run bdev's guest suite (LVM, kernel OpenZFS, btrfs) on a real Debian 12 kernel in a qemu
# virtual machine: install what the runner needs, build the guest image once per machine (or
# reuse it), boot it and report (vagrant/qemu/guest.py; vagrant/README.md says more).
# BDEV_SKIP_GUEST=1 skips it, loudly.  Arguments go to guest.py (--suites, --timeout, -- ARGS).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/sbin:/sbin

if [ -n "${BDEV_SKIP_GUEST:-}" ] && [ "${BDEV_SKIP_GUEST}" != 0 ]; then
  echo "guest-test.sh: GUEST SUITE SKIPPED (BDEV_SKIP_GUEST=$BDEV_SKIP_GUEST):" \
    "LVM and kernel ZFS were not tested on a real kernel in this run"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "guest-test.sh: run as root (it installs Debian packages and builds the guest image)" >&2
  exit 1
fi

# command the runner needs -> the Debian package that brings it
declare -A NEEDS=([qemu-system-x86_64]=qemu-system-x86 [qemu-img]=qemu-utils [debootstrap]=debootstrap
  [mkfs.ext4]=e2fsprogs [unshare]=util-linux [chroot]=coreutils)
missing=()
for command in "${!NEEDS[@]}"; do
  command -v "$command" >/dev/null || missing+=("${NEEDS[$command]}")
done
/usr/bin/python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)  # pip download of the wheels
if [ ${#missing[@]} -gt 0 ]; then
  echo "guest-test.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -q
  apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
fi
exec /usr/bin/python3 vagrant/qemu/guest.py "$@"
