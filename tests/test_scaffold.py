"""``bdev plugin new NAME``: the skeleton installs, is listed as a usable backend without
capabilities, and its generated kit module passes or skips everything with a reason."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from bdev.cli.main import cli

pytestmark = [pytest.mark.unprivileged]

BIN = Path(sys.executable).parent
NAME = "scaffoldfs"


def run_bdev(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "bdev"), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def skeleton(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("scaffold")
    proc = run_bdev("plugin", "new", NAME, "--directory", str(base))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote the {NAME} plugin skeleton to {base / f'bdev-{NAME}'}" in proc.stderr
    return base / f"bdev-{NAME}"


@pytest.fixture(scope="module")
def installed(skeleton: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The skeleton pip-installed (``--no-deps``) into a private ``--target`` directory on
    ``PYTHONPATH``, not the shared virtualenv, so no other test run sees it come and go."""
    site = tmp_path_factory.mktemp("scaffold-site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
         "--no-build-isolation", "--no-compile", "--target", str(site), str(skeleton)],
        capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("BDEV_DISABLE_PLUGINS", "BDEV_TRACE")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    yield env


def test_the_skeleton_has_every_file(skeleton: Path) -> None:
    files = sorted(str(p.relative_to(skeleton)) for p in skeleton.rglob("*") if p.is_file())
    assert files == sorted([
        "README.md", "pyproject.toml", f"bdev_{NAME}/__init__.py", f"bdev_{NAME}/backend.py", f"tests/test_{NAME}.py",
    ])
    pyproject = (skeleton / "pyproject.toml").read_text()
    assert f'[project.entry-points."bdev.plugins"]\n{NAME} = "bdev_{NAME}"' in pyproject
    assert f'name = "bdev-{NAME}"' in pyproject
    test_module = (skeleton / f"tests/test_{NAME}.py").read_text()
    assert f'class TestScaffoldfs(BackendContract):\n    """Every contract test, for {NAME}."""\n\n    backend_name = "{NAME}"' in test_module
    for path in skeleton.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")


def test_the_skeleton_backend_raises_not_supported_with_todo_docstrings(skeleton: Path) -> None:
    """Each operation the base class refuses is present, documented with a TODO, and refuses
    with NotSupported naming the backend; capabilities are all off."""
    from bdev.backend import Backend
    from bdev.errors import NotSupported
    from bdev.records import Capabilities, CreateOptions, Placement, Rootfs

    spec = importlib.util.spec_from_file_location(f"bdev_{NAME}_backend", skeleton / f"bdev_{NAME}/backend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    cls = module.ScaffoldfsBackend
    assert issubclass(cls, Backend) and cls.name == NAME and cls.description
    assert cls.capabilities.flags() == [] and cls.capabilities == Capabilities(can_backup=False)
    backend = cls()
    rootfs, place, options = Rootfs(NAME, "/nowhere"), Placement(Path("/nowhere"), "c1"), CreateOptions()
    calls = {
        "default_source": (place, options), "create": (place, options), "destroy": (rootfs,), "exists": (rootfs,),
        "identity": (rootfs,), "mount": (rootfs, Path("/nowhere")), "umount": (rootfs, Path("/nowhere")),
        "resize": (rootfs, 1 << 30), "diff": (rootfs,), "snapshot": (rootfs, backend, place, options),
    }
    for method, args in calls.items():
        assert method in vars(cls), method
        assert "TODO" in (getattr(cls, method).__doc__ or ""), method
        with pytest.raises(NotSupported) as refused:
            getattr(backend, method)(*args)
        assert refused.value.backend == NAME and NAME in str(refused.value)
    assert backend.data_path(rootfs) is None and backend.freeze(rootfs, place) is None
    assert "swap" not in vars(cls)  # absent until atomic: bdev then refuses restore in place


def test_bdev_backends_lists_the_installed_skeleton_usable_without_capabilities(installed: dict[str, str]) -> None:
    proc = run_bdev("backends", "--format", "json", env=installed)
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document["problems"] == []
    record = next(b for b in document["backends"] if b["name"] == NAME)
    assert record["usable"] and record["capabilities"] == []
    assert (record["plugin"], record["distribution"], record["version"]) == (NAME, f"bdev-{NAME}", "0.1.0")


def test_the_generated_kit_module_passes_the_capability_checks(
    skeleton: Path, installed: dict[str, str], tmp_path: Path
) -> None:
    """"Passes the kit's capability checks out of the box": every capability the skeleton does
    not declare is skipped with a reason, and nothing fails for any other cause than an
    operation the skeleton leaves unimplemented (its own "does not support ... yet")."""
    if importlib.util.find_spec("bdev.testing.kit") is None:
        pytest.skip("the conformance kit (bdev.testing.kit) is not installed in this tree yet")
    report = tmp_path / "report.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={report}", "tests"],
        capture_output=True, text=True, env=installed, cwd=skeleton, timeout=1800,
    )
    assert report.is_file(), proc.stdout[-4000:] + proc.stderr[-2000:]
    cases = ElementTree.parse(report).getroot().iter("testcase")
    unimplemented = re.compile(rf"NotSupported: .*the {NAME} backend does not support [a-z ]+ yet")
    outcomes: dict[str, int] = {"passed": 0, "skipped": 0, "unimplemented": 0}
    for case in cases:
        test = f"{case.get('classname')}::{case.get('name')}"
        failed = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        if failed is not None:
            text = (failed.get("message") or "") + (failed.text or "")
            assert unimplemented.search(text), f"{test} failed for another reason than a TODO:\n{text[-3000:]}"
            outcomes["unimplemented"] += 1
        elif skipped is not None:
            assert (skipped.get("message") or "").strip(), f"{test} was skipped without a reason"
            outcomes["skipped"] += 1
        else:
            outcomes["passed"] += 1
    assert sum(outcomes.values()) > 0, proc.stdout[-4000:]
    assert outcomes["skipped"] > 0, outcomes
    skipped_reasons = [s.get("message", "") for s in ElementTree.parse(report).getroot().iter("skipped")]
    assert any(f"backend {NAME} does not declare" in r for r in skipped_reasons), skipped_reasons[:5]


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("bad", ["MyFs", "1fs", "my-fs", "_fs", "", "a b"])
def test_a_bad_name_is_refused_with_one_sentence(bad: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plugin", "new", bad, "--directory", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [
        f"bdev: Plugin name {bad!r} is not valid: use a lower-case letter followed by lower-case letters, digits or underscores."
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("taken", ["dir", "directory"])
def test_an_installed_backend_name_is_refused(taken: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plugin", "new", taken, "--directory", str(tmp_path)])
    assert result.exit_code == 2
    assert "is already the name of an installed backend" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_existing_target_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / f"bdev-{NAME}").mkdir()
    (tmp_path / f"bdev-{NAME}" / "mine").write_text("keep\n")
    result = CliRunner().invoke(cli, ["plugin", "new", NAME, "--directory", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"bdev: The folder {tmp_path / f'bdev-{NAME}'} already exists; choose another --directory or remove it."
    ]
    assert [p.name for p in (tmp_path / f"bdev-{NAME}").iterdir()] == ["mine"]
