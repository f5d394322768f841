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
  lvm2 thin-provisioning-tools python3-pyudev python3-seccomp python3-prctl iproute2
  openssh-server openssh-client python3-zstandard debootstrap zstd xz-utils psmisc
  qemu-system-x86 qemu-utils
  man-db groff-base locales bash-completion zsh python3-matplotlib
  ceph-mon ceph-mgr ceph-osd ceph-common python3-rbd python3-rados rbd-fuse fuse
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
  # The sshd template needs the OpenSSH server binary, not the host's own ssh service: when
  # this script is what installed it, switch the service off again rather than leave a new
  # listener on port 22.
  if [[ " ${missing[*]} " == *" openssh-server "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
    echo "setup.sh: installed openssh-server for the sshd template and left the host's ssh service off"
  fi
fi

# A Debian kernel, unpacked, for the tests that boot a throwaway qemu machine on this
# machine's own root (cgroup v2 with every controller): .cache/test-kernel.
if [ ! -d .cache/test-kernel/boot ]; then
  kernel_pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
  rm -rf .cache/kernel-download && mkdir -p .cache/kernel-download
  (cd .cache/kernel-download && apt-get -o APT::Sandbox::User=root download -q "$kernel_pkg" >/dev/null)
  dpkg-deb -x .cache/kernel-download/*.deb .cache/kernel-download/tree
  rm -rf .cache/test-kernel && mv .cache/kernel-download/tree .cache/test-kernel
  rm -rf .cache/kernel-download
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
# Built from the sources each time (seconds): the compiled message catalogs, the manual pages
# (English and Japanese, into the venv's share/man, where man finds them next to its bin on
# PATH) and the bash/zsh completion scripts.
./scripts/i18n.sh compile >/dev/null
.venv/bin/python -m bdev.manuals install >/dev/null
.venv/bin/python -m bdev.cli.completion install >/dev/null
echo "setup.sh: ready; commands are in $(pwd)/.venv/bin"
