"""Packaging: installed import names are specific to bdev, built-in plugins are found through
the public entry-point group, and the plugin contract is documented."""

from __future__ import annotations

import importlib.metadata as md
import inspect
import json
import subprocess
import sys

import pytest

from bdev import hookspecs
from bdev.backend import Backend

pytestmark = [pytest.mark.unprivileged]


def test_installed_import_names_are_not_generic(tmp_path) -> None:
    """Run from an empty directory, so the source tree is not on sys.path."""
    code = (
        "import importlib.util, json\n"
        "names = ['bdev', 'bdev_dir', 'bdev_runtime', 'plugins', 'runtime']\n"
        "print(json.dumps({n: importlib.util.find_spec(n) is not None for n in names}))\n"
    )
    found = json.loads(subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True).stdout)
    assert found == {"bdev": True, "bdev_dir": True, "bdev_runtime": True, "plugins": False, "runtime": False}


def test_built_in_plugins_come_through_the_public_entry_point_group() -> None:
    eps = {ep.name: ep for ep in md.entry_points(group=hookspecs.ENTRY_POINT_GROUP)}
    assert eps["dir"].value == "bdev_dir" and eps["dir"].dist.name == "bdev-dir"
    assert eps["runtime-templates"].dist.name == "bdev-runtime"


def test_every_hook_is_documented_with_an_example() -> None:
    hooks = [f for name, f in vars(hookspecs).items() if name.startswith("bdev_") and callable(f)]
    assert hooks, "no hooks found"
    for hook in hooks:
        doc = inspect.getdoc(hook) or ""
        assert ":return:" in doc and "Example" in doc, f"{hook.__name__} lacks a documented return and example"


def test_every_public_backend_operation_is_documented() -> None:
    undocumented = [
        name
        for name, member in vars(Backend).items()
        if not name.startswith("_") and callable(member) and not (inspect.getdoc(member) or "").strip()
    ]
    assert undocumented == []


@pytest.mark.parametrize("script", ["bdev", "lxc-create", "lxc-clone", "lxc-copy", "lxc-snapshot", "lxc-destroy", "lxc-ls"])
def test_console_scripts_are_installed(script: str) -> None:
    scripts = {ep.name for ep in md.entry_points(group="console_scripts") if ep.dist and ep.dist.name == "bdev"}
    assert script in scripts
