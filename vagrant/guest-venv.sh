#!/usr/bin/env bash
# Make the test guest's virtualenv: Debian's python3 with --system-site-packages (so the guest
# sees python3-pyzfs, python3-btrfsutil, python3-lxc, ...), plus the pinned packages of
# guest-requirements.txt, offline from WHEELDIR when given, else from the package index.
# usage: guest-venv.sh VENV REQUIREMENTS [WHEELDIR]
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 VENV REQUIREMENTS [WHEELDIR]" >&2
  exit 2
fi
venv=$1 requirements=$2 wheels=${3:-}
python3 -m venv --system-site-packages "$venv"
source_args=()
[ -n "$wheels" ] && source_args=(--no-index --find-links "$wheels")
"$venv/bin/python" -m pip install -q --disable-pip-version-check "${source_args[@]}" -r "$requirements"
