"""The report: a text table per backend with absolute figures and the ratios bdev/LXC and
bdev/rsync, the targets of issue 10 checked against them, and the same as JSON, Markdown and a
PNG chart of the ratios (log scale).

Every ratio divides two medians of the same run.  Below 1, bdev is faster.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from operations import ANCHOR_LABELS, OPERATIONS
from timing import Row

NO_FSYNC = "bdev API, no fsync"
TOOLS = ("bdev CLI", "bdev API", NO_FSYNC, "LXC CLI", "LXC API", *ANCHOR_LABELS.values())
# ratio column -> (numerator tool, denominator tool)
RATIOS = {
    "CLI/LXC": ("bdev CLI", "LXC CLI"),
    "API/LXC": ("bdev API", "LXC API"),
    "nofsync/LXC": (NO_FSYNC, "LXC API"),
    "CLI/rsync": ("bdev CLI", ANCHOR_LABELS["rsync"]),
    "API/rsync": ("bdev API", ANCHOR_LABELS["rsync"]),
}


def index(rows: Iterable[Row]) -> dict[tuple[str, str, str], Row]:
    return {(r.backend, r.operation, r.tool): r for r in rows}


def ratios(rows: Iterable[Row]) -> dict[str, dict[str, dict[str, float]]]:
    """backend -> operation -> ratio column -> value, for every pair measured in the run."""
    found: dict[str, dict[str, dict[str, float]]] = {}
    by_key = index(rows)
    for (backend, operation, _tool) in by_key:
        for column, (top, bottom) in RATIOS.items():
            a, b = by_key.get((backend, operation, top)), by_key.get((backend, operation, bottom))
            if a and b and a.stats and b.stats and b.stats.median > 0:
                found.setdefault(backend, {}).setdefault(operation, {})[column] = a.stats.median / b.stats.median
    return found


def cell(row: Row | None) -> str:
    if row is None:
        return ""
    if row.stats:
        return f"{row.stats.median:.3f}"
    return "FAIL" if row.failed else "skip"


def table_lines(backend: str, rows: list[Row], markdown: bool = False) -> list[str]:
    """One backend's table (operations down, tools and ratios across) and its notes."""
    by_key = index(rows)
    found = ratios(rows).get(backend, {})
    tools = [t for t in TOOLS if any((backend, op, t) in by_key for op in OPERATIONS)]
    head = ["operation", *(f"{t} s" for t in tools), *RATIOS]
    body = []
    for operation in OPERATIONS:
        if not any((backend, operation, t) in by_key for t in tools):
            continue
        cells = [operation, *(cell(by_key.get((backend, operation, t))) for t in tools)]
        if markdown:
            cells[1:] = [spread(by_key.get((backend, operation, t))) for t in tools]
        cells += [f"{found[operation][c]:.2f}" if c in found.get(operation, {}) else "" for c in RATIOS]
        body.append(cells)
    notes = [f"{r.operation} / {r.tool}: {r.status}: {r.failed or r.skipped}"
             for r in rows if r.failed or (r.skipped and not r.times)]
    if markdown:
        lines = [f"### {backend}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c for c in cells) + " |" for cells in body]
        lines += [""] + [f"- {note}" for note in notes]
        return lines + [""]
    widths = [max(len(x) for x in column) for column in zip(head, *body)]
    fmt = lambda cells: "  ".join(  # noqa: E731
        (c.ljust(w) if i == 0 else c.rjust(w)) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    lines = [f"== {backend} ==", fmt(head), "  ".join("-" * w for w in widths), *(fmt(c) for c in body)]
    return lines + [f"  note: {note}" for note in notes] + [""]


def spread(row: Row | None) -> str:
    """``median (min–max)`` for Markdown."""
    if row is None or not row.stats:
        return cell(row)
    s = row.stats
    return f"{s.median:.3f} ({s.low:.3f}–{s.high:.3f})"


# --------------------------------------------------------------------------- targets


@dataclass
class Check:
    """One target of issue 10 against this run's figures."""

    target: str
    value: float | None  # the measured ratio or figure
    limit: float
    detail: str

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "not measured"
        return "holds" if self.value <= self.limit else "MISSES"

    def line(self) -> str:
        if self.value is None:
            return f"{self.verdict:12} {self.target}: {self.detail}"
        return f"{self.verdict:12} {self.target}: {self.value:.3g} (limit {self.limit:g}; {self.detail})"


def checks(results: dict[str, Any], rows: list[Row]) -> list[Check]:
    """The targets, each with its figure from this run (None when not measured)."""
    found = ratios(rows)
    by_key = index(rows)
    out: list[Check] = []

    def ratio(backend: str, operation: str, column: str) -> float | None:
        return found.get(backend, {}).get(operation, {}).get(column)

    def check(target: str, backend: str, operation: str, column: str, limit: float) -> Check:
        """A ratio target; when it has no figure, the detail says which side was not measured and why."""
        value = ratio(backend, operation, column)
        detail = column
        if value is None:
            for tool in RATIOS[column]:
                row = by_key.get((backend, operation, tool))
                if row is None or not row.stats:
                    why = "no row" if row is None else (row.failed or row.skipped or "no figure")
                    detail = f"{tool}: {why}"[:160]
                    break
        return Check(target, value, limit, detail)

    for backend in ("btrfs", "overlay", "zfs"):
        for operation in ("snapshot clone", "container snapshot", "restore to new name", "restore in place"):
            out.append(check(f"{backend} {operation}, in-process vs python3-lxc", backend, operation, "API/LXC", 1.2))
    for backend in ("dir (ext4)", "dir (xfs)", "dir (btrfs)"):  # LXC's classic: an overlay over a dir
        out.append(check(f"{backend} snapshot clone (overlay over the dir), in-process vs python3-lxc",
                         backend, "snapshot clone", "API/LXC", 1.2))
    for key, factor in results.get("payload_scaling", {}).get("ratios", {}).items():
        out.append(Check(f"{key}, {results['payload_scaling']['factor']:g}x payload vs 1x", factor, 1.5,
                         "bdev API median at the larger payload / at the smaller"))
    for backend, limit in (("dir (ext4)", 1.0), ("dir (xfs)", 0.7), ("dir (btrfs)", 0.7)):
        for column in ("CLI/rsync", "API/rsync", "CLI/LXC", "API/LXC"):
            out.append(check(f"{backend} full copy {column}", backend, "full copy", column, limit))
    for backend, limit in (("loop", 0.3), ("dir (xfs)", 0.7), ("dir (btrfs)", 0.7)):
        for column in ("CLI/LXC", "API/LXC"):
            out.append(check(f"{backend} container snapshot {column}", backend, "container snapshot", column, limit))
    for backend in (b for b in results["backends"] if "@" not in b):
        for column in ("CLI/LXC", "API/LXC"):
            out.append(check(f"{backend} destroy with snapshots {column}", backend, "destroy with snapshots", column, 1.0))
    startup = results.get("startup", {})
    ours, click = startup.get("bdev lxc-ls -P <empty>"), startup.get("python3 -c 'import click'")
    out.append(Check("our lxc-ls on an empty lxcpath vs python3 -c 'import click'",
                     ours["median"] / click["median"] if ours and click else None, 1.5, "warm medians"))
    for label, figures in results.get("listing", {}).get("commands", {}).items():
        out.append(Check(f"{label} of {results['listing']['count']} containers", figures.get("median"), 1.0,
                         "seconds, warm median"))
    rss = results.get("peak_rss", {})
    out.append(Check(f"peak RSS of {rss.get('what', 'a big copy')}",
                     rss["kib"] / 1024 if "kib" in rss else None, 100, "MiB"))
    return out


# --------------------------------------------------------------------------- outputs


def text_report(results: dict[str, Any], rows: list[Row]) -> str:
    lines = []
    for backend in results["backends"]:
        lines += table_lines(backend, [r for r in rows if r.backend == backend])
    return "\n".join(lines)


def markdown_report(results: dict[str, Any], rows: list[Row], header: list[str], extra: list[str]) -> str:
    lines = ["# bdev benchmark", "", *header, ""]
    for backend in results["backends"]:
        lines += table_lines(backend, [r for r in rows if r.backend == backend], markdown=True)
    lines += ["```", *extra, "```", "", "## Targets", ""]
    lines += [f"- {c.line()}" for c in checks(results, rows)]
    return "\n".join(lines) + "\n"


def write_json(path: Path, results: dict[str, Any], rows: list[Row]) -> None:
    data = dict(results)
    data["rows"] = [r.as_dict() for r in rows]
    data["ratios"] = ratios(rows)
    data["ratio_columns"] = {column: {"numerator": a, "denominator": b} for column, (a, b) in RATIOS.items()}
    data["targets"] = [{"target": c.target, "value": c.value, "limit": c.limit, "verdict": c.verdict}
                       for c in checks(results, rows)]
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def chart_backends(rows: list[Row]) -> list[str]:
    """The backends the chart shows: those with a ratio (not the scaling rows)."""
    found = ratios(rows)
    return [b for b in dict.fromkeys(r.backend for r in rows) if b in found and "@" not in b]


def chart_problem(rows: list[Row]) -> str | None:
    """Why the PNG cannot be drawn, or None."""
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed (apt-get install python3-matplotlib)"
    if not chart_backends(rows):
        return "no ratio was measured"
    return None


def write_chart(path: Path, rows: list[Row]) -> None:
    """Bars of every ratio per operation, one panel per backend, log scale, 1 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches
    import matplotlib.pyplot as plt

    found = ratios(rows)
    backends = chart_backends(rows)
    colors = dict(zip(RATIOS, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")))
    fig, axes = plt.subplots(len(backends), 1, figsize=(11, 2.6 * max(1, len(backends))), squeeze=False)
    width = 0.8 / len(RATIOS)
    for ax, backend in zip(axes[:, 0], backends):
        for k, column in enumerate(RATIOS):
            xs, ys = [], []
            for i, operation in enumerate(OPERATIONS):
                value = found[backend].get(operation, {}).get(column)
                if value:
                    xs.append(i + (k - len(RATIOS) / 2 + 0.5) * width)
                    ys.append(value)
            ax.bar(xs, ys, width, label=column, color=colors[column])
        ax.set_yscale("log")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_title(backend, fontsize=10)
        ax.set_xticks(range(len(OPERATIONS)), OPERATIONS, fontsize=8)
        ax.set_ylabel("bdev / other")
    handles = [matplotlib.patches.Patch(color=colors[c], label=c) for c in RATIOS]
    fig.legend(handles=handles, loc="upper center", ncols=len(RATIOS), fontsize=8, bbox_to_anchor=(0.5, 0.985))
    fig.suptitle("bdev time / other tool's time, medians of the same run (below 1: bdev faster)", y=0.998)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=90)
    plt.close(fig)
