#!/usr/bin/env bash
# The guest suite: bdev's tests for what the host kernel lacks, run as root on a real kernel
# (the qemu guest of vagrant/qemu, or the Vagrant box) against real device-mapper/LVM, kernel
# OpenZFS, btrfs and the kernel's rbd and nbd drivers.  It copies the project to a scratch directory, installs it into the guest's
# virtualenv, makes a volume group `lxc` with a thin pool `lxc` (LXC's defaults) and a ZFS pool,
# runs each suite in its own pytest session and prints one line saying what ran where.
#
# usage: guest-suite.sh [--lvm-disk DEV] [--zfs-disk DEV] [--results DIR] [--suites a,b] [--profile P]
#                       [--venv DIR] [--wheels DIR] [--files-from LIST] [-- PYTEST_ARGS...]
#   --lvm-disk, --zfs-disk  whole disks given to LVM and ZFS (wiped); without them, sparse files
#                           (a loop device for LVM, a file vdev for ZFS) that are removed after
#   --results DIR           where each suite's JUnit XML and exit status, guest.env (kernel,
#                           zfs and LVM versions) and summary.json go (default: a temp dir,
#                           removed after); earlier results there are removed first
#   --suites                a subset of: lvm zfs btrfs rbd contract (default: lvm,zfs,btrfs,rbd;
#                           the lvm and zfs contracts run in their own modules, so `contract`
#                           adds the generic module's cases: btrfs, and lvm or zfs should they
#                           move; rbd: the rbd backend through krbd and rbd-nbd, on a throwaway
#                           Ceph cluster its tests start)
#   --profile full|ci       full (default): every case of each suite.  ci: what fits CI's budget
#                           under software emulation, chosen for what the host cannot test:
#                           the lvm and zfs contracts on one storage kind (tmpdir; the host
#                           runs the storage kinds with dir, btrfs, overlay and loop), crash
#                           tests at one step (restore:after-swap), zfs cases through
#                           libzfs_core (pyzfs) plus the zfs command's restore cases, rbd's
#                           kernel cases but its restores (librbd's work, which the host runs
#                           through rbd-fuse; about 4 of 7 minutes kept); pytest reports the
#                           rest as deselected and the summary says ci
#   --venv                  the virtualenv (default /opt/bdev-guest/venv, made if missing)
#   --wheels DIR            install the project from these wheels (built elsewhere) instead of
#                           building it from the copy
#   --files-from LIST       copy only these files of the checkout (one relative path a line);
#                           by default all but .git, .venv, build output and caches
# Tests find the storage through BDEV_TEST_LVM_VG (a VG with the thin pool `lxc`) and
# BDEV_TEST_ZFS_POOL.  Exit status: 0 only if every selected suite ran and passed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source_dir=$(dirname "$here")
lvm_disk="" zfs_disk="" results="" wheels="" files_from="" venv=/opt/bdev-guest/venv
selected=(lvm zfs btrfs rbd)
profile=full
pytest_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --lvm-disk) lvm_disk=$2; shift 2 ;;
    --zfs-disk) zfs_disk=$2; shift 2 ;;
    --results) results=$2; shift 2 ;;
    --suites) IFS=, read -r -a selected <<< "$2"; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --venv) venv=$2; shift 2 ;;
    --wheels) wheels=$2; shift 2 ;;
    --files-from) files_from=$2; shift 2 ;;
    --) shift; pytest_args=("$@"); break ;;
    *) echo "guest-suite: unknown argument '$1' (see the usage at the top of $0)" >&2; exit 2 ;;
  esac
done
for suite in "${selected[@]}"; do
  case $suite in
    lvm|zfs|btrfs|rbd|contract) ;;
    *) echo "guest-suite: unknown suite '$suite' (known: lvm zfs btrfs rbd contract)" >&2; exit 2 ;;
  esac
done
case $profile in
  full|ci) ;;
  *) echo "guest-suite: unknown profile '$profile' (known: full ci)" >&2; exit 2 ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "guest-suite: run as root (LVM, ZFS and mounts)" >&2; exit 2; }

VG=lxc
THIN_POOL=lxc
ZPOOL=bdevguest
scratch=$(mktemp -d /var/tmp/bdev-guest-suite.XXXXXX)
results=${results:-$scratch/results}
rm -rf "$results/suites" "$results/guest.env" "$results/summary.json"
mkdir -p "$results/suites"
loop_dev=""

say() { echo "guest-suite [+${SECONDS}s]: $*"; }

cleanup() {
  set +e
  if zpool list -H "$ZPOOL" >/dev/null 2>&1; then zpool destroy -f "$ZPOOL" || say "could not destroy zpool $ZPOOL"; fi
  if vgs "$VG" >/dev/null 2>&1; then
    vgremove -f -y "$VG" >/dev/null || say "could not remove volume group $VG"
  fi
  if [ -n "$loop_dev" ]; then
    pvremove -y -q "$loop_dev" >/dev/null 2>&1
    losetup -d "$loop_dev" || say "could not detach $loop_dev"
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

if vgs "$VG" >/dev/null 2>&1 || zpool list -H "$ZPOOL" >/dev/null 2>&1; then
  say "volume group $VG or zpool $ZPOOL exists already; this suite makes (and removes) its own"
  trap - EXIT
  rm -rf "$scratch"
  exit 2
fi

say "kernel $(uname -r); loading dm-snapshot, dm-thin-pool, zfs, btrfs, xfs, loop, overlay"
for module in dm_mod dm_snapshot dm_thin_pool zfs btrfs xfs loop overlay; do
  modprobe "$module" || say "modprobe $module failed"
done
if [[ " ${selected[*]} " == *" rbd "* ]]; then
  say "loading rbd and nbd (the rbd suite maps images through both)"
  for module in rbd nbd; do
    modprobe "$module" || say "modprobe $module failed"
  done
fi

say "volume group $VG with thin pool $THIN_POOL"
if [ -z "$lvm_disk" ]; then
  truncate -s 8G "$scratch/lvm.img"
  loop_dev=$(losetup --find --show "$scratch/lvm.img")
  lvm_disk=$loop_dev
fi
wipefs -q -a "$lvm_disk"
pvcreate -q -y "$lvm_disk" >/dev/null
vgcreate -q "$VG" "$lvm_disk" >/dev/null
lvcreate -q --type thin-pool -l 50%VG -n "$THIN_POOL" "$VG" >/dev/null

say "zpool $ZPOOL"
if [ -z "$zfs_disk" ]; then
  truncate -s 4G "$scratch/zfs.img"
  zfs_disk=$scratch/zfs.img
else
  wipefs -q -a "$zfs_disk"
fi
zpool create -f -m none "$ZPOOL" "$zfs_disk"

{
  echo "KERNEL=$(uname -r)"
  echo "ZFS=$(cat /sys/module/zfs/version 2>/dev/null || echo none)"
  echo "LVM=$(lvm version | sed -n 's/^ *LVM version: *\([^ ]*\).*/\1/p')"
} > "$results/guest.env"

say "installing bdev, its runtime and every plugin into $venv"
[ -x "$venv/bin/python" ] || "$here/guest-venv.sh" "$venv" "$here/guest-requirements.txt"
work=$scratch/bdev
mkdir "$work"
if [ -n "$files_from" ]; then
  rsync -a --files-from="$files_from" "$source_dir/" "$work/"
else
  rsync -a --exclude=/.venv --exclude=/.git --exclude=.vagrant --exclude=/.cache \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=/build "$source_dir/" "$work/"
fi
if [ -n "$wheels" ]; then
  packages=("$wheels"/*.whl)
else
  packages=("$work" "$work/runtime")
  for plugin in "$work"/plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] && packages+=("$plugin")
  done
fi
# Offline, and with their dependencies: one that neither the image's wheels nor Debian's
# packages provide fails here, naming it.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-index --no-build-isolation \
  "${packages[@]}"

export BDEV_TEST_LVM_VG=$VG BDEV_TEST_LVM_THIN_POOL=$THIN_POOL BDEV_TEST_ZFS_POOL=$ZPOOL

run_suite() {  # label test-file [pytest args...]
  local label=$1 file=$2 code
  shift 2
  if [ ! -f "$work/$file" ]; then
    say "suite $label: $file does not exist"
    echo "missing" > "$results/suites/$label.exit"
    return
  fi
  say "suite $label: pytest $file $*"
  set +e
  (cd "$work" && "$venv/bin/python" -m pytest -p no:cacheprovider -v -ra --color=no -o timeout=900 \
    --junitxml="$results/suites/$label.xml" "$file" "$@" "${pytest_args[@]}")
  code=$?
  set -e
  echo "$code" > "$results/suites/$label.exit"
}

narrow=()
zfs_narrow=()
rbd_narrow=()
if [ "$profile" = ci ]; then
  narrow=(--kit-storage=tmpdir --kit-crash-steps=restore:after-swap)
  zfs_narrow=(-k 'pyzfs or (cli and (restore or rollback or swap))')
  rbd_narrow=(-k 'not restores')
fi
echo "PROFILE=$profile" >> "$results/guest.env"

for suite in "${selected[@]}"; do
  case $suite in
    lvm) run_suite lvm tests/test_lvm.py "${narrow[@]}" ;;
    zfs) run_suite zfs tests/test_zfs.py "${narrow[@]}" "${zfs_narrow[@]}" ;;
    btrfs) run_suite btrfs tests/test_btrfs.py ;;
    # krbd and rbd-nbd, each forced; the test module starts (and removes) its Ceph cluster
    rbd) run_suite rbd tests/test_rbd_kernel.py "${rbd_narrow[@]}" ;;
    # the generic contract module's cases for the backends under test (ids [backend-storage])
    contract) run_suite contract tests/test_backend_contract.py -k '[lvm- or [zfs- or [btrfs-' ;;
  esac
done

"$venv/bin/python" "$here/guest_summary.py" "$results" "${selected[@]}"
