"""The LVM commands (through bdev's command helper) and their JSON reports.

Reports come from ``lvs``/``vgs --reportformat json --units b --nosuffix``, so sizes are
whole bytes and nothing depends on column widths.  A failed command becomes one sentence that
names the command and says what LVM meant (no device-mapper, no space, a full thin pool).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bdev.command import run
from bdev.errors import AlreadyExists, BackendUnavailable, BdevError, CommandError, NotFound
from ._i18n import _

BACKEND = "lvm"
ENV = {"LVM_SUPPRESS_FD_WARNINGS": "1"}
LV_FIELDS = (
    "lv_name", "vg_name", "lv_attr", "lv_size", "pool_lv", "origin", "data_percent",
    "metadata_percent", "lv_uuid", "segtype", "lv_tags",
)
VG_FIELDS = ("vg_name", "vg_size", "vg_free", "vg_extent_size")
NO_DM = "Required device-mapper target(s) not detected"


@dataclass(frozen=True)
class VolumeGroup:
    """One row of ``vgs``: sizes in bytes."""

    name: str
    size: int
    free: int
    extent_size: int


@dataclass(frozen=True)
class LogicalVolume:
    """One row of ``lvs``.

    :param attr: LVM's ten-character ``lv_attr`` (type, permissions, allocation, minor,
        state, open, target type, zeroing, health, skip activation).
    :param data_percent: how full a thin pool, thin volume or thick snapshot is; None when
        LVM does not report it (inactive, or a plain volume).
    :param tags: the LV's tags.
    """

    name: str
    vg: str
    attr: str
    size: int
    pool: str
    origin: str
    data_percent: float | None
    metadata_percent: float | None
    uuid: str
    segtype: str
    tags: tuple[str, ...] = ()

    @property
    def thin(self) -> bool:
        """A thin volume (its blocks come from a thin pool)."""
        return self.segtype == "thin"

    @property
    def thin_pool(self) -> bool:
        """A thin pool (not a filesystem volume)."""
        return self.segtype == "thin-pool"

    @property
    def thick_snapshot(self) -> bool:
        """A thick (copy-on-write) snapshot of another volume, valid or invalidated."""
        return self.attr[:1] in ("s", "S")

    @property
    def active(self) -> bool:
        """Whether the volume is active (has a device node)."""
        return self.attr[4:5] == "a"

    @property
    def path(self) -> str:
        """``/dev/<vg>/<lv>``."""
        return f"/dev/{self.vg}/{self.name}"


def _percent(text: str) -> float | None:
    return float(text) if text.strip() else None


def _size(text: str) -> int:
    return int(text.strip() or 0)


def report_rows(text: str, kind: str) -> list[dict[str, str]]:
    """The rows of the ``kind`` (``lv``, ``vg``) table in an LVM JSON report."""
    try:
        document = json.loads(text)
        return [row for section in document["report"] for row in section.get(kind, [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise BdevError(_("cannot read LVM's {kind} report ({error})").format(kind=kind, error=exc),
                        backend=BACKEND) from None


def parse_lvs(text: str) -> list[LogicalVolume]:
    """Logical volumes from ``lvs --reportformat json --units b --nosuffix -o LV_FIELDS``."""
    return [
        LogicalVolume(
            name=row["lv_name"], vg=row["vg_name"], attr=row["lv_attr"], size=_size(row["lv_size"]),
            pool=row.get("pool_lv", ""), origin=row.get("origin", ""),
            data_percent=_percent(row.get("data_percent", "")), metadata_percent=_percent(row.get("metadata_percent", "")),
            uuid=row.get("lv_uuid", ""), segtype=row.get("segtype", ""),
            tags=tuple(t for t in row.get("lv_tags", "").split(",") if t),
        )
        for row in report_rows(text, "lv")
    ]


def parse_vgs(text: str) -> list[VolumeGroup]:
    """Volume groups from ``vgs --reportformat json --units b --nosuffix -o VG_FIELDS``."""
    return [
        VolumeGroup(row["vg_name"], _size(row["vg_size"]), _size(row["vg_free"]), _size(row["vg_extent_size"]))
        for row in report_rows(text, "vg")
    ]


def explain(exc: CommandError) -> BdevError:
    """One sentence for a failed LVM command: what it was and what LVM meant."""
    command = shlex.join([os.path.basename(exc.argv[0]), *exc.argv[1:]])
    lines = [line.strip() for line in exc.stderr.splitlines() if line.strip() and not line.strip().startswith("WARNING")]
    text = " ".join(lines)
    detail = lines[-1] if lines else f"exit status {exc.returncode}"
    if exc.returncode == 127:
        return BackendUnavailable(_("{argv} is not installed (install lvm2)").format(argv=exc.argv[0]), backend=BACKEND)
    if NO_DM in text or "Failure to communicate with kernel device-mapper" in text:
        target = next((line.split(":", 1)[0] for line in lines if NO_DM in line), "device-mapper")
        return BackendUnavailable(
            _("'{command}' failed: this kernel has no device-mapper {target} target, so LVM cannot activate volumes").format(
                command=command, target=target),
            backend=BACKEND,
        )
    if "already exists" in text:
        return AlreadyExists(_("'{command}' failed: {detail}").format(command=command, detail=detail), backend=BACKEND)
    if "not found" in text or "Failed to find" in text:
        return NotFound(_("'{command}' failed: {detail}").format(command=command, detail=detail), backend=BACKEND)
    if "Insufficient free space" in text or "insufficient free" in text.lower():
        return BdevError(_("'{command}' failed: the volume group has not enough free space ({detail})").format(
            command=command, detail=detail), backend=BACKEND)
    if "thin pool" in text.lower() and ("full" in text.lower() or "threshold" in text.lower()):
        return BdevError(_("'{command}' failed: the thin pool is full ({detail})").format(
            command=command, detail=detail), backend=BACKEND)
    return BdevError(_("'{command}' failed: {detail}").format(command=command, detail=detail), backend=BACKEND)


def lvm(tool: str, *args: str, check: bool = True) -> str:
    """Run the LVM tool ``tool`` with ``args`` and return its standard output; a failure is
    one sentence (:func:`explain`)."""
    try:
        return run([tool, *args], env=ENV, check=check, backend=BACKEND).stdout
    except CommandError as exc:
        raise explain(exc) from None


def _report(tool: str, fields: Sequence[str], *targets: str) -> str:
    argv = [tool, "--reportformat", "json", "--units", "b", "--nosuffix", "-o", ",".join(fields), *targets]
    result = run(argv, env=ENV, check=False, backend=BACKEND)
    if result.returncode == 0:
        return result.stdout
    if "not found" in result.stderr or "does not exist" in result.stderr:
        return '{"report": [{}]}'
    raise explain(CommandError(result.argv, result.returncode, result.stderr))


def volume_group(name: str) -> VolumeGroup | None:
    """The volume group ``name``, or None when there is none."""
    found = parse_vgs(_report("vgs", VG_FIELDS, name))
    return found[0] if found else None


def volumes(vg: str) -> dict[str, LogicalVolume]:
    """Every logical volume of ``vg`` by name (hidden ones too); empty when ``vg`` is missing."""
    return {lv.name: lv for lv in parse_lvs(_report("lvs", LV_FIELDS, "-a", vg))}


def volume(vg: str, name: str) -> LogicalVolume | None:
    """The logical volume ``vg/name``, or None."""
    return volumes(vg).get(name)


def device_mapper_problem(proc_misc: Path = Path("/proc/misc"), modules: Path = Path("/lib/modules")) -> str | None:
    """Why this kernel cannot run device-mapper, or None: it is neither registered
    (``/proc/misc``) nor loaded nor available as a module for the running kernel."""
    try:
        if any(line.split()[-1:] == ["device-mapper"] for line in proc_misc.read_text().splitlines()):
            return None
    except OSError:
        pass
    if Path("/sys/module/dm_mod").exists():
        return None
    release = os.uname().release
    for index in ("modules.builtin", "modules.dep"):
        try:
            if "/dm-mod.ko" in (modules / release / index).read_text():
                return None
        except OSError:
            continue
    return (
        _("device-mapper is not in this kernel (Linux {release} has no device-mapper driver and no dm-mod module), "
          "so LVM cannot activate logical volumes").format(
            release=release)
    )
