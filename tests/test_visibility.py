"""What a plugin author sees: ``bdev backends`` names the distribution and version each backend
came from, ``BDEV_TRACE`` traces hook calls, and bad plugins are named while the rest work.

Bad plugins are real distributions: a ``*.dist-info`` with an entry point and a module, put on
``PYTHONPATH`` for a ``bdev`` subprocess, found exactly as an installed plugin is.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unprivileged]

BIN = Path(sys.executable).parent

BAD_PLUGINS = {
    # entry-point name (after "dir", so dir loads first): module source
    "zz_raises": "from bdev import hookimpl\n\n@hookimpl\ndef bdev_backends():\n    raise RuntimeError('kaboom in the hook')\n",
    "zz_taken": (
        "from bdev import Backend, hookimpl\n\nclass Impostor(Backend):\n    name = 'dir'\n\n"
        "@hookimpl\ndef bdev_backends():\n    return [Impostor]\n"
    ),
    "zz_malformed": "from bdev import hookimpl\n\n@hookimpl\ndef bdev_backends():\n    return ['not a backend class']\n",
}
EXPECTED = {
    "zz_raises": "bdev_backends failed: RuntimeError: kaboom in the hook",
    "zz_taken": "backend name 'dir' is already provided by plugin dir; ignored",
    "zz_malformed": "offered 'not a backend class', which is not a named Backend subclass",
}


def run_bdev(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "bdev"), *args], capture_output=True, text=True, env=env, timeout=120)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BDEV_TRACE", "BDEV_DISABLE_PLUGINS")}
    env.update(extra)
    return env


def fake_site(root: Path, plugins: dict[str, str]) -> Path:
    """A directory holding one distribution per plugin (``bdevtest-<name>`` 0.1)."""
    site = root / "site"
    for name, source in plugins.items():
        dist = site / f"bdevtest_{name}-0.1.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: bdevtest-{name}\nVersion: 0.1\n")
        (dist / "entry_points.txt").write_text(f"[bdev.plugins]\n{name} = bdevtest_{name}_mod\n")
        (site / f"bdevtest_{name}_mod.py").write_text(source)
    return site


def with_site(site: Path, **extra: str) -> dict[str, str]:
    env = clean_env(**extra)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    return env


# ---------------------------------------------------------------------------- where from


def test_backends_name_their_distribution_and_version() -> None:
    proc = run_bdev("backends", "--format", "json", env=clean_env())
    assert proc.returncode == 0, proc.stderr
    record = next(b for b in json.loads(proc.stdout)["backends"] if b["name"] == "dir")
    assert (record["plugin"], record["distribution"], record["version"]) == ("dir", "bdev-dir", md.version("bdev-dir"))
    text = run_bdev("backends", env=clean_env()).stdout
    block = text.split("\ndir: ", 1)[1].split("\n\n", 1)[0]
    assert f"  from:           plugin dir, bdev-dir {md.version('bdev-dir')}" in block.splitlines()


def test_a_backend_registered_without_a_distribution_says_so() -> None:
    """A plugin handed to the registry directly (an embedding application) has no
    distribution; the record says null and the text says so."""
    from bdev.cli.commands.plugins import backend_record
    from bdev.registry import load_registry
    from bdev_dir import DirBackend

    class Plugin:
        @staticmethod
        def bdev_backends():
            return [type("Other", (DirBackend,), {"name": "other", "aliases": ()})]

    from bdev import hookimpl

    Plugin.bdev_backends = hookimpl(Plugin.bdev_backends)
    registry = load_registry(extra_plugins=[("embedded", Plugin)], use_entry_points=False)
    (entry,) = registry.backend_entries()
    record = backend_record(entry, registry.plugins)
    assert (record["plugin"], record["distribution"], record["version"]) == ("embedded", None, None)


def test_an_unusable_backend_says_why_in_its_block(tmp_path: Path) -> None:
    site = fake_site(tmp_path, {
        "zz_needy": (
            "from bdev import Backend, hookimpl\nfrom bdev.requirements import Tool\n\n"
            "class Needy(Backend):\n    name = 'needy'\n    requires = (Tool('bdevtest-no-such-tool', package='no-such-pkg'),)\n\n"
            "@hookimpl\ndef bdev_backends():\n    return [Needy]\n"
        ),
    })
    proc = run_bdev("backends", env=with_site(site))
    assert proc.returncode == 0, proc.stderr
    block = proc.stdout.split("\nneedy: ", 1)[1].split("\n\n", 1)[0]
    assert "  from:           plugin zz_needy, bdevtest-zz_needy 0.1" in block
    assert "  unusable here:  bdevtest-no-such-tool is not installed (install no-such-pkg)" in block


# ---------------------------------------------------------------------------- tracing


@pytest.mark.parametrize("value", ["1", "hooks"])
def test_bdev_trace_traces_each_hook_call_on_stderr(value: str) -> None:
    proc = run_bdev("backends", "--format", "json", env=clean_env(BDEV_TRACE=value))
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)  # the trace does not touch standard output
    lines = proc.stderr.splitlines()
    assert all(line.startswith("bdev trace: ") for line in lines), proc.stderr
    assert "bdev trace: bdev_backends of plugin dir [hook]" in lines
    assert any("finish bdev_backends -->" in line and "DirBackend" in line for line in lines)
    assert "bdev trace: bdev_templates of plugin runtime-templates [hook]" in lines


def test_without_bdev_trace_nothing_is_traced() -> None:
    for env in (clean_env(), clean_env(BDEV_TRACE="0"), clean_env(BDEV_TRACE="")):
        proc = run_bdev("backends", env=env)
        assert proc.returncode == 0 and "bdev trace" not in proc.stderr, proc.stderr


def test_tracing_names_a_hook_that_raises(tmp_path: Path) -> None:
    site = fake_site(tmp_path, {"zz_raises": BAD_PLUGINS["zz_raises"]})
    proc = run_bdev("backends", env=with_site(site, BDEV_TRACE="1"))
    assert proc.returncode == 0, proc.stderr
    assert "bdev trace: bdev_backends of plugin zz_raises [hook]" in proc.stderr.splitlines()
    assert "Traceback" not in proc.stderr


def test_tracing_requested_reads_the_environment() -> None:
    from bdev.registry import tracing_requested

    assert [tracing_requested({"BDEV_TRACE": v}) for v in ("1", "hooks", "all", "x,hooks", "0", "", "no")] == [
        True, True, True, True, False, False, False,
    ]
    assert tracing_requested({}) is False


# ---------------------------------------------------------------------------- bad plugins


@pytest.mark.parametrize("name", sorted(BAD_PLUGINS))
def test_a_bad_plugin_is_named_and_the_others_keep_working(tmp_path: Path, name: str) -> None:
    """A hook that raises, a name already taken, a malformed record: ``bdev backends`` exits 0,
    lists dir (the real one), and names the bad plugin with the cause, in text and JSON."""
    env = with_site(fake_site(tmp_path, {name: BAD_PLUGINS[name]}))
    proc = run_bdev("backends", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert any(line.split()[:1] == ["dir"] for line in proc.stdout.splitlines())
    problems = proc.stdout.split("\nPlugin problems:\n", 1)[1].splitlines()
    assert problems == [f"  plugin {name}: {EXPECTED[name]}"]
    document = json.loads(run_bdev("backends", "--format", "json", env=env).stdout)
    assert document["problems"] == [{"plugin": name, "message": EXPECTED[name]}]
    dir_record = next(b for b in document["backends"] if b["name"] == "dir")
    assert (dir_record["plugin"], dir_record["distribution"], dir_record["usable"]) == ("dir", "bdev-dir", True)


def test_all_bad_plugins_at_once_and_the_cli_keeps_working(tmp_path: Path) -> None:
    env = with_site(fake_site(tmp_path, BAD_PLUGINS))
    document = json.loads(run_bdev("backends", "--format", "json", env=env).stdout)
    assert {p["plugin"]: p["message"] for p in document["problems"]} == EXPECTED
    assert {p["name"]: p["status"] for p in document["plugins"] if p["name"].startswith("zz_")} == dict.fromkeys(
        BAD_PLUGINS, "loaded"
    )
    source = tmp_path / "src"
    (source / "etc").mkdir(parents=True)
    lxcpath = tmp_path / "lxc"
    proc = run_bdev("-P", str(lxcpath), "create", "c1", "--source", str(source), env=env)
    assert proc.returncode == 0, proc.stderr
    assert (lxcpath / "c1" / "config").is_file()
