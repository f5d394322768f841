#!/usr/bin/env bash
# Install everything bdev needs on Debian 12 as root: system packages, then a virtualenv
# (.venv, built on Debian's python3 so it sees python3-btrfsutil and python3-lxc) holding
# bdev, its runtime and every plugin under plugins/ (editable).  Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv python3-pip python3-btrfsutil python3-lxc
  btrfs-progs xfsprogs e2fsprogs util-linux mount rsync attr acl
  busybox-static uidmap lxc libcap2-bin squashfs-tools zfs-fuse
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages and makes real mounts in tests)" >&2
  exit 1
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -q
  apt-get -o DPkg::Lock::Timeout=300 install -y -q "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
plugin_dirs=()
for d in plugins/*/; do
  [ -f "$d/pyproject.toml" ] && plugin_dirs+=(-e "$d")
done
# Editable installs follow the source; reinstall only when packaging metadata changes
# (a new plugin folder, an entry point, a dependency).
stamp=$(cat pyproject.toml runtime/pyproject.toml plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.bdev-installed 2>/dev/null)" != "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip>=23.1"
  PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q --disable-pip-version-check \
    -e ".[test]" -e runtime "${plugin_dirs[@]}"
  echo "$stamp" > .venv/.bdev-installed
fi
echo "setup.sh: ready; commands are in $(pwd)/.venv/bin"
