#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: as root, with real mounts, then the
# unprivileged subset again as an ordinary user.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# Third-party example plugins (examples/*/) are installed as real packages, never editable, so
# the suite finds them only through their entry points, as a user's pip install would.
for example in examples/*/; do
  if [ -f "$example/pyproject.toml" ]; then
    PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
      --force-reinstall "$example"
  fi
done
exec .venv/bin/python tests/run_suite.py "$@"
