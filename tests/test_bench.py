"""Smoke test of the benchmark (``bench/run.py --quick``): it completes, every operation of
every backend has a row that was measured or says why not, the JSON, Markdown and chart are
written, and each ratio is computed from figures of the same run.  No timing is asserted."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from bdev.command import run
from bdev.testing.storage import loop_devices, mount_table

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"
TOOLS = ("bdev CLI", "bdev API", "LXC CLI", "LXC API")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One ``--quick`` run, its report directory and standard output."""
    out = tmp_path_factory.mktemp("bench") / "report"
    scratch = tmp_path_factory.mktemp("bench-scratch")
    done = run([sys.executable, str(RUN), "--quick", "--out", str(out), "--tmpdir", str(scratch)], timeout=600)
    assert not [m for m in mount_table() if m.startswith(f"{scratch}/")], "the run left a mount behind"
    assert not [d for d in loop_devices() if f"{scratch}/" in d], "the run left a loop device behind"
    assert list(scratch.iterdir()) == [], "the run left its temporary directory behind"
    return out, done.stdout


@pytest.mark.root
def test_quick_run_writes_every_report(quick_run: tuple[Path, str]) -> None:
    out, stdout = quick_run
    data = json.loads((out / "report.json").read_text())
    markdown = (out / "report.md").read_text()
    assert (out / "report.txt").read_text().strip() in stdout
    assert (out / "ratios.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for backend in data["backends"]:
        assert f"### {backend}" in markdown
    assert data["quick"] is True
    assert {t["verdict"] for t in data["targets"]} <= {"holds", "MISSES", "not measured"}


@pytest.mark.root
def test_every_operation_is_measured_or_says_why_not(quick_run: tuple[Path, str]) -> None:
    data = json.loads(quick_run[0].joinpath("report.json").read_text())
    rows = {(r["backend"], r["operation"], r["tool"]): r for r in data["rows"]}
    operations = ("full copy", "snapshot clone", "container snapshot", "restore to new name",
                  "restore in place", "destroy with snapshots")
    for backend in (b for b in data["backends"] if "@" not in b):
        for operation in operations:
            for tool in TOOLS:
                row = rows.get((backend, operation, tool))
                assert row is not None, f"no row for {operation} by {tool} on {backend}"
                if row["status"] == "measured":
                    assert row["times"] and row["min"] <= row["median"] <= row["max"]
                else:
                    assert row.get("reason", "").strip(), f"{operation} by {tool} on {backend}: {row['status']}, no reason"
    # dir on ext4 is always possible here: bdev's rows there must all be measured
    for operation in operations:
        for tool in ("bdev CLI", "bdev API"):
            assert rows[("dir (ext4)", operation, tool)]["status"] == "measured", (operation, tool)
    for name in ("python3 -c 'import click'", "bdev lxc-ls -P <empty>", "bdev --version"):
        assert data["startup"][name]["median"] > 0
    assert data["listing"]["count"] > 0 and all("median" in f for f in data["listing"]["commands"].values())


@pytest.mark.root
def test_ratios_come_from_the_same_run(quick_run: tuple[Path, str]) -> None:
    data = json.loads(quick_run[0].joinpath("report.json").read_text())
    medians = {(r["backend"], r["operation"], r["tool"]): r["median"] for r in data["rows"] if r["status"] == "measured"}
    checked = 0
    for backend, operations in data["ratios"].items():
        for operation, columns in operations.items():
            for column, value in columns.items():
                top, bottom = (data["ratio_columns"][column][k] for k in ("numerator", "denominator"))
                expected = medians[(backend, operation, top)] / medians[(backend, operation, bottom)]
                assert math.isclose(value, expected, rel_tol=1e-9), (backend, operation, column)
                checked += 1
    assert data["ratio_columns"]["CLI/rsync"]["denominator"].startswith("rsync")
    assert data["ratios"]["dir (ext4)"]["full copy"]["CLI/rsync"] > 0
    assert checked >= 1
