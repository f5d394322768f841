#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run bdev's main job end to end in a fresh scratch lxcpath:
# create a busybox container, snapshot it, change it, clone it, restore the snapshot in place,
# and list everything, with bdev's own commands and (where installed) real LXC's.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
export PATH="$PWD/.venv/bin:$PATH"
P=$(mktemp -d "${TMPDIR:-/tmp}/bdev-demo.XXXXXX")
REAL_LXC_LS=$(PATH=/usr/bin:/bin command -v lxc-ls || true)

step() { printf '\n\033[1m$'; printf ' %q' "$@"; printf '\033[0m\n'; "$@"; }
note() { printf '\n# %s\n' "$*"; }

note "Backends the installed plugins offer, and whether they work here"
step bdev backends
note "A busybox container on the dir backend, in the scratch lxcpath $P"
step bdev -P "$P" create base -t busybox -B dir
step bdev -P "$P" snapshot create base --comment "pristine busybox"
note "Change it: an 'upgrade'"
step sh -c "echo 'upgraded to v2' > '$P/base/rootfs/etc/motd' && rm '$P/base/rootfs/bin/vi'"
step bdev -P "$P" clone base web1
note "Restore the snapshot in place (built aside, swapped atomically, old tree removed)"
step bdev -P "$P" snapshot restore base snap0
note "Results: base is pristine again, web1 keeps the upgrade and has its own name"
step sh -c "cat '$P/base/rootfs/etc/motd' 2>/dev/null || echo '(base: no /etc/motd: restored)'; test -e '$P/base/rootfs/bin/vi' && echo '(base: /bin/vi is back)'"
step cat "$P/web1/rootfs/etc/motd" "$P/web1/rootfs/etc/hostname"
step bdev -P "$P" snapshot list base
step lxc-snapshot -P "$P" -n base -L -C
step bdev -P "$P" ls
step lxc-ls -P "$P" -f
if [ -n "$REAL_LXC_LS" ]; then
  note "Real LXC sees the same containers"
  step "$REAL_LXC_LS" -P "$P" -f
fi
step bdev -P "$P" info web1
note "Everything is in $P; remove it with: bdev -P $P destroy -s base; bdev -P $P destroy web1; rmdir $P"
