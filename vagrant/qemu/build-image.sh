#!/usr/bin/env bash
# Build the qemu test guest's image into OUT, a new directory.  The runner (guest.py) builds
# in a temporary directory and renames it into its cache only when this script succeeds; the
# cache key is a hash of this script and of the lists it installs, so any change here or there
# makes a new image.  OUT receives:
#   base.qcow2            the guest's root filesystem (ext4): Debian 12 minbase, the packages
#                         of ../guest-packages.txt, ZFS built by DKMS for the guest kernel, and
#                         a virtualenv with the wheels of ../guest-requirements.txt
#   vmlinuz, initrd.img   the guest kernel (linux-image-amd64) and its initramfs
#   wheels/               the pinned wheels the image's virtualenv was made from
#   image.env             KERNEL=, ZFS=, LVM=, PYTHON=: what the image holds
# Everything runs in a private mount namespace: the chroot's /proc, /sys and /dev mounts
# vanish with this script however it ends, and the host never sees them (so removing a
# half-built tree can never reach the host's /dev).
# usage: build-image.sh OUT    (as root; needs debootstrap, e2fsprogs, qemu-utils, python3-pip)
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: $0 OUT" >&2
  exit 2
fi
if [ -z "${BDEV_GUEST_BUILD_NAMESPACE:-}" ]; then
  BDEV_GUEST_BUILD_NAMESPACE=1 exec unshare --mount --propagation private -- "$0" "$@"
fi

here=$(cd "$(dirname "$0")" && pwd)
vagrant_dir=$(dirname "$here")
mkdir -p "$1"
out=$(realpath "$1")
tree=$out/tree
suite=bookworm
# The host's own Debian mirror (as apt is set up here), unless BDEV_GUEST_MIRROR names one;
# with neither, debootstrap's default.
mirror=${BDEV_GUEST_MIRROR:-$(apt-get indextargets --format '$(REPO_URI)' "Release: $suite" \
  'Identifier: Packages' 2>/dev/null | head -n1)}
started=$SECONDS

step() { echo "[build-image +$((SECONDS - started))s] $*"; }
in_chroot() {
  chroot "$tree" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
    DEBIAN_FRONTEND=noninteractive HOME=/root "$@"
}
packages() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$vagrant_dir/guest-packages.txt"; }

step "debootstrap $suite (minbase, main and contrib) into $tree"
debootstrap --variant=minbase --components=main,contrib "$suite" "$tree" ${mirror:+"$mirror"}

mount -t proc proc "$tree/proc"
mount -t sysfs sysfs "$tree/sys"
mount --rbind /dev "$tree/dev"
cp /etc/resolv.conf "$tree/etc/resolv.conf"
# No service starts inside the chroot (zfsutils-linux, lxc and udev would try).
printf '#!/bin/sh\nexit 101\n' > "$tree/usr/sbin/policy-rc.d"
chmod 755 "$tree/usr/sbin/policy-rc.d"

step "apt-get install $(packages | wc -l) packages (zfs-dkms compiles ZFS for the guest kernel)"
in_chroot apt-get update -q
# shellcheck disable=SC2046  # one package a word
in_chroot apt-get install -y -q --no-install-recommends $(packages)

vmlinuz=("$tree"/boot/vmlinuz-*)
if [ ${#vmlinuz[@]} -ne 1 ] || [ ! -f "${vmlinuz[0]}" ]; then
  echo "build-image: expected one kernel in $tree/boot, found: ${vmlinuz[*]}" >&2
  exit 1
fi
kernel=${vmlinuz[0]##*/vmlinuz-}
step "ZFS module for $kernel"
# DKMS builds for the running kernel and the newest installed one; make sure of the guest's.
in_chroot dkms autoinstall -k "$kernel"
zfs_version=$(in_chroot modinfo -k "$kernel" -F version zfs)
lvm_version=$(in_chroot dpkg-query -W -f '${Version}' lvm2)

step "virtualenv with the pinned wheels"
guest_dir=$tree/opt/bdev-guest
mkdir -p "$guest_dir/wheels"
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  -d "$guest_dir/wheels" -r "$vagrant_dir/guest-requirements.txt"
cp "$vagrant_dir/guest-requirements.txt" "$vagrant_dir/guest-venv.sh" "$guest_dir/"
in_chroot /opt/bdev-guest/guest-venv.sh /opt/bdev-guest/venv \
  /opt/bdev-guest/guest-requirements.txt /opt/bdev-guest/wheels
python_version=$(in_chroot /opt/bdev-guest/venv/bin/python -c 'import platform; print(platform.python_version())')

step "init, then the root filesystem"
# PID 1: mount the project's share and hand over to its vagrant/qemu/guest-init.sh, so what
# the guest does at run time follows the checkout without rebuilding the image.
cat > "$tree/usr/local/sbin/bdev-guest-init" <<'INIT'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /mnt/bdev-src
if mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 bdev-src /mnt/bdev-src &&
  [ -f /mnt/bdev-src/vagrant/qemu/guest-init.sh ]; then
  exec /bin/bash /mnt/bdev-src/vagrant/qemu/guest-init.sh
fi
echo "bdev-guest-init: no project share (9p tag bdev-src with vagrant/qemu/guest-init.sh)" >/dev/console
sync
echo o > /proc/sysrq-trigger
INIT
chmod 755 "$tree/usr/local/sbin/bdev-guest-init"
echo bdev-guest > "$tree/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tbdev-guest\n' > "$tree/etc/hosts"
: > "$tree/etc/resolv.conf"
rm -f "$tree/usr/sbin/policy-rc.d"
in_chroot apt-get clean
rm -rf "$tree"/var/lib/apt/lists/*
umount -R -l "$tree/dev" "$tree/sys" "$tree/proc"

cp -r "$guest_dir/wheels" "$out/wheels"  # the host builds the project's wheels with these
cp -L "$tree/boot/vmlinuz-$kernel" "$out/vmlinuz"
cp -L "$tree/boot/initrd.img-$kernel" "$out/initrd.img"
# Room for the tests' loop files and scratch trees; the qcow2 stores only what is written.
size_mb=$(($(du -sm "$tree" | cut -f1) + 8192))
mkfs.ext4 -q -F -L bdev-guest -d "$tree" "$out/root.raw" "${size_mb}M"
qemu-img convert -O qcow2 "$out/root.raw" "$out/base.qcow2"
rm -f "$out/root.raw"
rm -rf "$tree"
cat > "$out/image.env" <<ENV
KERNEL=$kernel
ZFS=$zfs_version
LVM=$lvm_version
PYTHON=$python_version
ENV
step "done: kernel $kernel, zfs $zfs_version, lvm2 $lvm_version, python $python_version"
