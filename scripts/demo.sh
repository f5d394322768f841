#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run bdev's main job end to end in a scratch lxcpath:
# create a busybox container, snapshot it, change it, clone it, restore the snapshot, list.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
exec .venv/bin/python -m bdev.demo "$@"
