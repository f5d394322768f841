#!/bin/bash
# PID 1 of the qemu test guest, started by the image's /usr/local/sbin/bdev-guest-init once the
# project's share (9p tag bdev-src, read-only) is mounted at /mnt/bdev-src.  It mounts the results
# share (tag bdev-out), starts udev, runs the guest suite on the two virtio disks the runner
# attached (serials bdev-lvm and bdev-zfs), with the wheels the runner built and the list of
# the checkout's own files it wrote into the results share; writes the suite's exit status
# there and powers the machine off.  Its output is the serial
# console, which the runner streams.
# The runner passes guest-suite.sh arguments in the results share's file `arguments`
# (NUL-separated).
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 HOME=/root
src=/mnt/bdev-src
out=/mnt/bdev-out

power_off() {
  sync
  mountpoint -q "$out" && umount "$out"
  echo o > /proc/sysrq-trigger
  sleep 60  # PID 1 must not exit while the kernel powers off
}

mountpoint -q /run || mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /dev/pts /dev/shm
mountpoint -q /dev/pts || mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mountpoint -q /dev/shm || mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -o remount,rw /
hostname bdev-guest
ip link set lo up  # nothing else brings up loopback here (the rbd suite's Ceph cluster listens on it)
mkdir -p "$out"
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 bdev-out "$out"; then
  echo "guest-init: no results share (9p tag bdev-out)"
  power_off
fi

/lib/systemd/systemd-udevd --daemon
udevadm trigger --action=add --type=subsystems
udevadm trigger --action=add --type=devices
udevadm settle --timeout=60

arguments=()
[ -f "$out/arguments" ] && mapfile -d '' -t arguments < "$out/arguments"
# the project's wheels, built by the runner on the host
"$src/vagrant/guest-suite.sh" --lvm-disk /dev/disk/by-id/virtio-bdev-lvm \
  --zfs-disk /dev/disk/by-id/virtio-bdev-zfs --results "$out" --wheels "$out/wheels" \
  --files-from "$out/source-files" "${arguments[@]}"
echo "$?" > "$out/status"
power_off
