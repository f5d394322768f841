"""Add up the guest suite (guest-suite.sh): which suites ran on which kernel, with their counts.

``python3 guest_summary.py RESULTS SUITE...`` reads ``RESULTS/guest.env`` and, per suite,
``RESULTS/suites/<suite>.exit`` and ``<suite>.xml``; writes ``RESULTS/summary.json`` (read by
the qemu runner on the host) and prints the summary line.  Exit status 0 only if every suite
ran, passed and ran at least one test: a suite that is missing, collected nothing or skipped
everything on a real kernel is a failure, never a quiet pass.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from run_suite import counts  # noqa: E402  (the test suite's own JUnit counting)


@dataclass(frozen=True)
class SuiteResult:
    """One suite's outcome: ``status`` is pytest's exit status, or ``missing`` (no test file)
    or ``not run``."""

    name: str
    status: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def ok(self) -> bool:
        """It ran, pytest exited 0 and at least one test passed."""
        return self.status == "0" and self.passed > 0 and self.failed == 0

    def describe(self) -> str:
        """``zfs 40 passed, 0 failed, 2 skipped`` or ``lvm missing`` (with pytest's exit)."""
        if self.status in ("missing", "not run"):
            return f"{self.name} {self.status}"
        text = f"{self.name} {self.passed} passed, {self.failed} failed, {self.skipped} skipped"
        return text if self.status == "0" else f"{text} (pytest exit {self.status})"


def read_env(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of ``path`` (empty when it does not exist)."""
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def suite_result(results: Path, name: str) -> SuiteResult:
    """The outcome of suite ``name`` from its files under ``results/suites``."""
    exit_file = results / "suites" / f"{name}.exit"
    if not exit_file.is_file():
        return SuiteResult(name, "not run")
    status = exit_file.read_text().strip()
    if status == "missing":
        return SuiteResult(name, status)
    c = counts(results / "suites" / f"{name}.xml")
    return SuiteResult(name, status, c["passed"], c["failed"], c["skipped"])


def summary_line(env: dict[str, str], suites: list[SuiteResult]) -> str:
    """One line: the kernel, the zfs and LVM versions, each suite's counts and the total."""
    total = {key: sum(getattr(s, key) for s in suites) for key in ("passed", "failed", "skipped")}
    where = (
        f"Linux {env.get('KERNEL', '?')} (zfs {env.get('ZFS', '?')}, LVM {env.get('LVM', '?')})"
    )
    per_suite = "; ".join(s.describe() for s in suites)
    verdict = "ok" if suites and all(s.ok for s in suites) else "FAILED"
    profile = env.get("PROFILE", "full")
    if profile != "full":  # a narrowed run must never read as the whole suite
        verdict += f" (profile {profile}: a narrowed selection, the rest deselected)"
    return (
        f"guest suite {verdict} on {where}: {per_suite}; total {total['passed']} passed, "
        f"{total['failed']} failed, {total['skipped']} skipped"
    )


def main(argv: list[str]) -> int:
    """Write ``summary.json``, print the line, return 0 only if every suite is ok."""
    if len(argv) < 2:
        print("usage: guest_summary.py RESULTS SUITE...", file=sys.stderr)
        return 2
    results = Path(argv[0])
    env = read_env(results / "guest.env")
    suites = [suite_result(results, name) for name in argv[1:]]
    line = summary_line(env, suites)
    ok = all(s.ok for s in suites)
    summary = {"env": env, "suites": [asdict(s) | {"ok": s.ok} for s in suites], "ok": ok, "line": line}
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(line, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
