"""The tools timed side by side, all behind one small interface (:class:`Tool`).

- ``bdev CLI``: the venv's ``bdev`` program, one process per operation (what a user waits for);
- ``bdev API``: :class:`bdev.api.Container` in this process (registry already loaded);
- ``LXC CLI``: Debian's ``/usr/bin/lxc-copy``, ``lxc-snapshot``, ``lxc-destroy`` (never the
  venv's ``lxc-*`` scripts, which are bdev's);
- ``LXC API``: python3-lxc (Debian's binding of liblxc) in this process.

Each works on containers of one lxcpath.  ``snapshot`` returns the snapshot's name; ``destroy``
takes the container's snapshots too (``lxc-destroy -s``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bdev.command import run
from bdev.errors import CommandError

REAL_LXC_PATH = "/usr/bin:/bin"  # where Debian's LXC lives; the venv's lxc-* must never be taken for it
LXC_TOOLS = ("lxc-copy", "lxc-snapshot", "lxc-destroy", "lxc-ls", "lxc-create")


class Tool:
    """One way of doing the container operations on the containers of ``lxcpath``."""

    label = "?"
    mode = "?"  # "cli" or "api"
    family = "?"  # "bdev" or "lxc"

    def __init__(self, lxcpath: Path) -> None:
        self.lxcpath = lxcpath
        self.messages: list[str] = []

    def copy(self, name: str, new: str, *, snapshot: bool) -> None:
        """Clone ``name`` into ``new``: a full copy, or a copy-on-write clone with ``snapshot``."""
        raise NotImplementedError

    def snapshot(self, name: str) -> str:
        """Snapshot ``name``; return the snapshot's name."""
        raise NotImplementedError

    def restore(self, name: str, snap: str, new: str | None) -> None:
        """Restore snapshot ``snap`` of ``name`` into ``new``, or in place when ``new`` is None."""
        raise NotImplementedError

    def destroy(self, name: str) -> None:
        """Destroy ``name`` and its snapshots."""
        raise NotImplementedError

    def snapshot_dir_names(self, name: str) -> set[str]:
        """The snapshot names found on disk (``<lxcpath>/<name>/snaps/snapN``)."""
        snaps = self.lxcpath / name / "snaps"
        return {p.name for p in snaps.iterdir() if p.is_dir()} if snaps.is_dir() else set()


# --------------------------------------------------------------------------- bdev


class BdevCli(Tool):
    """bdev's CLI, one process per operation."""

    label, mode, family = "bdev CLI", "cli", "bdev"

    def __init__(self, lxcpath: Path, program: str) -> None:
        super().__init__(lxcpath)
        self.program = program

    def _run(self, *args: str) -> str:
        done = run([self.program, "-P", str(self.lxcpath), *args])
        self.messages.extend(line.strip() for line in done.stderr.splitlines() if line.strip())
        return done.stdout

    def copy(self, name: str, new: str, *, snapshot: bool) -> None:
        self._run("clone", name, new, *(["-s"] if snapshot else []))

    def snapshot(self, name: str) -> str:
        return self._run("snapshot", "create", name).strip()

    def restore(self, name: str, snap: str, new: str | None) -> None:
        self._run("snapshot", "restore", name, snap, *([new] if new else []))

    def destroy(self, name: str) -> None:
        self._run("destroy", "-s", name)


class BdevApi(Tool):
    """bdev's Python API in this process; the plugin registry is loaded once, before timing."""

    label, mode, family = "bdev API", "api", "bdev"

    def __init__(self, lxcpath: Path) -> None:
        super().__init__(lxcpath)
        from bdev.engine.context import default_registry

        self.registry = default_registry()

    def _container(self, name: str) -> Any:
        from bdev.api import Container

        return Container(name, self.lxcpath, registry=self.registry, notify=self.messages.append)

    def copy(self, name: str, new: str, *, snapshot: bool) -> None:
        self._container(name).clone(new, snapshot=snapshot)

    def snapshot(self, name: str) -> str:
        return self._container(name).snapshot()

    def restore(self, name: str, snap: str, new: str | None) -> None:
        self._container(name).snapshot_restore(snap, new)

    def destroy(self, name: str) -> None:
        self._container(name).destroy(with_snapshots=True)


class BdevApiNoFsync(BdevApi):
    """A diagnostic, not a way to run bdev: the API with ``os.fsync`` made a no-op, to show
    what bdev's durable journal and config writes (each one fsynced, file and directory) cost
    against liblxc, which fsyncs nothing."""

    label = "bdev API, no fsync"

    def copy(self, name: str, new: str, *, snapshot: bool) -> None:
        with fsync_disabled():
            super().copy(name, new, snapshot=snapshot)

    def snapshot(self, name: str) -> str:
        with fsync_disabled():
            return super().snapshot(name)

    def restore(self, name: str, snap: str, new: str | None) -> None:
        with fsync_disabled():
            super().restore(name, snap, new)

    def destroy(self, name: str) -> None:
        with fsync_disabled():
            super().destroy(name)


@contextlib.contextmanager
def fsync_disabled() -> Iterator[None]:
    """``os.fsync`` does nothing in the body (this process only)."""
    real = os.fsync
    os.fsync = lambda fd: None
    try:
        yield
    finally:
        os.fsync = real


# --------------------------------------------------------------------------- real LXC


def real_lxc_tools() -> dict[str, str]:
    """Debian's LXC programs found in ``/usr/bin`` (name -> path)."""
    return {tool: found for tool in LXC_TOOLS if (found := shutil.which(tool, path=REAL_LXC_PATH))}


def python3_lxc_problem() -> str | None:
    """Why python3-lxc cannot be used in this process, or None."""
    try:
        import lxc  # noqa: F401  (Debian's binding, seen through the venv's system site packages)
    except ImportError as exc:
        return f"python3-lxc cannot be imported ({exc})"
    return None


def install_real_lxc(log: Any) -> str | None:
    """Install Debian's ``lxc`` and ``python3-lxc`` when missing; return why they are still
    missing, or None."""
    if len(real_lxc_tools()) == len(LXC_TOOLS) and python3_lxc_problem() is None:
        return None
    log("installing Debian's lxc and python3-lxc (apt-get install -y lxc python3-lxc)")
    try:
        run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q", "lxc", "python3-lxc"],
            env={"DEBIAN_FRONTEND": "noninteractive"})
    except CommandError as exc:
        return f"apt-get install lxc python3-lxc failed: {exc}"
    missing = [t for t in LXC_TOOLS if t not in real_lxc_tools()]
    if missing:
        return f"{', '.join(missing)} still missing after apt-get install lxc"
    return python3_lxc_problem()


class LxcCli(Tool):
    """Real LXC's programs; a failure's reason comes from LXC's own log (``-l ERROR -o``),
    since ``lxc-copy`` and ``lxc-snapshot`` print nothing on failure."""

    label, mode, family = "LXC CLI", "cli", "lxc"

    def __init__(self, lxcpath: Path, tools: dict[str, str], logfile: Path) -> None:
        super().__init__(lxcpath)
        self.tools = tools
        self.logfile = logfile

    def _run(self, tool: str, *args: str) -> None:
        self.logfile.write_text("")
        argv = [self.tools[tool], "-P", str(self.lxcpath), "-l", "ERROR", "-o", str(self.logfile), *args]
        done = run(argv, check=False)
        if done.returncode != 0:
            lines = [line.split(" - ", 1)[-1] for line in self.logfile.read_text(errors="replace").splitlines()
                     if line.strip()]
            # the first error says why; the last one is the tool's summary ("Failed to clone")
            reason = " ... ".join(dict.fromkeys([lines[0], lines[-1]])) if lines else (done.stderr.strip() or "no message")
            raise RuntimeError(f"{tool} exited {done.returncode}: {reason}")

    def copy(self, name: str, new: str, *, snapshot: bool) -> None:
        self._run("lxc-copy", "-n", name, "-N", new, *(["-s"] if snapshot else []))

    def snapshot(self, name: str) -> str:
        before = self.snapshot_dir_names(name)
        self._run("lxc-snapshot", "-n", name)
        made = sorted(self.snapshot_dir_names(name) - before)
        if len(made) != 1:
            raise RuntimeError(f"lxc-snapshot made {len(made)} snapshot directories")
        return made[0]

    def restore(self, name: str, snap: str, new: str | None) -> None:
        self._run("lxc-snapshot", "-n", name, "-r", snap, *(["-N", new] if new else []))

    def destroy(self, name: str) -> None:
        self._run("lxc-destroy", "-n", name, "-s")


class LxcApi(Tool):
    """python3-lxc (liblxc) in this process."""

    label, mode, family = "LXC API", "api", "lxc"

    def _container(self, name: str) -> Any:
        import lxc

        return lxc.Container(name, str(self.lxcpath))

    @staticmethod
    def _check(done: Any, what: str) -> Any:
        if done is False or done is None:
            raise RuntimeError(f"python3-lxc {what} returned False (liblxc says no more; the LXC CLI row has its log)")
        return done

    def copy(self, name: str, new: str, *, snapshot: bool) -> None:
        import lxc

        flags = lxc.LXC_CLONE_SNAPSHOT if snapshot else 0
        self._check(self._container(name).clone(new, config_path=str(self.lxcpath), flags=flags), "clone")

    def snapshot(self, name: str) -> str:
        return str(self._check(self._container(name).snapshot(), "snapshot"))

    def restore(self, name: str, snap: str, new: str | None) -> None:
        self._check(self._container(name).snapshot_restore(snap, new or name), "snapshot_restore")

    def destroy(self, name: str) -> None:
        container = self._container(name)
        for snap in container.snapshot_list():  # what lxc-destroy -s does: every snapshot, then it
            self._check(container.snapshot_destroy(snap[0]), f"snapshot_destroy {snap[0]}")
        self._check(container.destroy(), "destroy")


# --------------------------------------------------------------------------- raw copy anchors


def anchor_argv(tool: str, source: Path, target: Path) -> list[str]:
    """The raw copy anchors: ``rsync -aHAXS --numeric-ids`` and ``cp -a --reflink=auto``
    (a file, such as a loop image, is copied as a file; ``cp`` keeps its holes)."""
    if tool == "rsync":
        if source.is_dir():
            return ["rsync", "-aHAXS", "--numeric-ids", f"{source}/", f"{target}/"]
        return ["rsync", "-aHAXS", "--numeric-ids", str(source), str(target)]
    if tool == "cp":
        return ["cp", "-a", "--reflink=auto", "--sparse=always", str(source), str(target)]
    raise ValueError(tool)


def peak_rss_kib(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` under a fresh Python that waits for it; return the largest resident set of
    that Python's waited-for children (``getrusage(RUSAGE_CHILDREN).ru_maxrss``, KiB) and
    ``argv``'s standard error.  A failure of ``argv`` raises :class:`CommandError`."""
    import sys

    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
    done = run([sys.executable, "-c", probe, *argv])
    return int(done.stdout.split()[-1]), done.stderr
