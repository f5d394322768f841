#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: as root, with real mounts, then the
# unprivileged subset again as an ordinary user, then the guest suite on a real kernel in a
# qemu machine (scripts/guest-test.sh).  Extra arguments go to the host's pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
trap 'exit 130' INT
./scripts/setup.sh
# Third-party example plugins (examples/*/) are installed as real packages, never editable, so
# the suite finds them only through their entry points, as a user's pip install would.
for example in examples/*/; do
  if [ -f "$example/pyproject.toml" ]; then
    PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
      --force-reinstall "$example"
  fi
done
host=0
.venv/bin/python tests/run_suite.py "$@" || host=$?
# Then the guest suite on a real kernel (LVM, kernel ZFS) in a qemu machine, in its ci profile
# (what fits under software emulation; BDEV_GUEST_PROFILE=full runs every case, an hour and
# more without KVM); BDEV_SKIP_GUEST=1 skips it, saying so.
guest=0
# (measured on a loaded 2-core machine: image build 11.5 min once, boot and install 5 min,
# lvm 16.5 min, zfs 17 min; hence the hour)
BDEV_GUEST_TIMEOUT=${BDEV_GUEST_TIMEOUT:-60m} ./scripts/guest-test.sh --profile "${BDEV_GUEST_PROFILE:-ci}" || guest=$?
verdict() { if [ "$1" -eq 0 ]; then echo passed; else echo "FAILED (exit $1)"; fi; }
guest_verdict="$(verdict "$guest") (profile ${BDEV_GUEST_PROFILE:-ci})"
[ -n "${BDEV_SKIP_GUEST:-}" ] && [ "$BDEV_SKIP_GUEST" != 0 ] && guest_verdict="SKIPPED (BDEV_SKIP_GUEST)"
echo "test.sh: host suite $(verdict "$host"), guest suite $guest_verdict"
[ "$host" -eq 0 ] && [ "$guest" -eq 0 ]
