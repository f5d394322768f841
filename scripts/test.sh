#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: as root, with real mounts, then the
# unprivileged subset again as an ordinary user.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python tests/run_suite.py "$@"
