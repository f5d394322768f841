#!/usr/bin/env bash
# Provision the Vagrant box (debian/bookworm64) for the guest suite: enable contrib, install
# the packages of guest-packages.txt (zfs-dkms builds ZFS for the installed kernels), make the
# virtualenv of guest-venv.sh, and check that the running kernel can load ZFS and thin pools.
set -euo pipefail
here=/bdev/vagrant
export DEBIAN_FRONTEND=noninteractive

# contrib from the same mirrors the box already uses for main
apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' 'Component: main' |
  sort -u | while read -r uri release; do echo "deb $uri $release contrib"; done \
  > /etc/apt/sources.list.d/bdev-contrib.list
apt-get update -q
# shellcheck disable=SC2046  # one package a word
apt-get install -y -q --no-install-recommends \
  $(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/guest-packages.txt")
# The metapackage's headers are for the newest kernel; the running one needs its own.
if apt-get install -y -q --no-install-recommends "linux-headers-$(uname -r)"; then
  dkms autoinstall -k "$(uname -r)"
fi
[ -x /opt/bdev-guest/venv/bin/python ] ||
  "$here/guest-venv.sh" /opt/bdev-guest/venv "$here/guest-requirements.txt"

for module in zfs dm_thin_pool dm_snapshot btrfs; do
  if ! modprobe "$module"; then
    echo "provision: the running kernel $(uname -r) cannot load $module; a newer kernel was" \
      "installed with it: run 'vagrant reload', which runs the suite after the reboot" >&2
    exit 1
  fi
done
echo "provision: ready (kernel $(uname -r), zfs $(cat /sys/module/zfs/version))"
