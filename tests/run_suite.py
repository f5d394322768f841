"""Run bdev's whole test suite: everything as root (real mounts), then the tests marked
``unprivileged`` again as an ordinary user (uid 65534), and print one closing line adding both
runs up.  Extra arguments go to both pytest runs.  Exit status is non-zero if either run failed
or ran nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNPRIVILEGED_UID = 65534


def counts(junit: Path) -> dict[str, int]:
    """passed/failed/skipped counted from a JUnit XML report."""
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    try:
        tree = ET.parse(junit)
    except (OSError, ET.ParseError):
        return {"passed": 0, "failed": 1, "skipped": 0}
    for suite in tree.getroot().iter("testsuite"):
        for key in total:
            total[key] += int(suite.get(key, 0))
    failed = total["failures"] + total["errors"]
    return {"passed": total["tests"] - failed - total["skipped"], "failed": failed, "skipped": total["skipped"]}


def run_pytest(label: str, args: list[str], junit: Path, *, as_user: bool) -> tuple[int, dict[str, int]]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={junit}", *args]
    if as_user:
        home = Path(tempfile.mkdtemp(prefix="bdev-user-home-"))
        os.chown(home, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        os.chown(junit.parent, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        env.update(HOME=str(home), USER="nobody", LOGNAME="nobody", XDG_RUNTIME_DIR=str(home / "run"))
        env.pop("BDEV_LXC_CONF", None)
        argv = ["setpriv", f"--reuid={UNPRIVILEGED_UID}", f"--regid={UNPRIVILEGED_UID}", "--clear-groups", *argv]
    print(f"\n=== {label}: {' '.join(argv)}", flush=True)
    code = subprocess.call(argv, cwd=ROOT, env=env)
    return code, counts(junit)


def main() -> int:
    extra = sys.argv[1:]
    results = []
    with tempfile.TemporaryDirectory(prefix="bdev-suite-") as tmp:
        os.chmod(tmp, 0o755)
        root_code, root_counts = run_pytest("root suite", extra, Path(tmp) / "root.xml", as_user=False)
        results.append(("root", root_code, root_counts))
        if os.geteuid() == 0:
            user_dir = Path(tmp) / "user"
            user_dir.mkdir()
            user_code, user_counts = run_pytest(
                f"unprivileged subset (uid {UNPRIVILEGED_UID})", ["-m", "unprivileged", *extra],
                user_dir / "user.xml", as_user=True,
            )
            results.append(("unprivileged", user_code, user_counts))
    print()
    for label, code, c in results:
        print(f"{label}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped (pytest exit {code})")
    total = {k: sum(c[k] for _, _, c in results) for k in ("passed", "failed", "skipped")}
    print(f"suite: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
    ok = all(code == 0 for _, code, _ in results) and total["passed"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
