"""The ``bdev_commands`` hook: plugin subcommands of ``bdev``, their clashes reported, the
runtime's own commands found through it."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from bdev import hookimpl
from bdev.cli import main as bdev_main
from bdev.registry import load_registry

pytestmark = pytest.mark.unprivileged


@click.command("hello")
def hello() -> None:
    click.echo("hello from a plugin")


@click.command("hello")
def other_hello() -> None:
    click.echo("the second one")


class First:
    @hookimpl
    def bdev_commands(self):
        return [hello, "not a command"]


class Second:
    @hookimpl
    def bdev_commands(self):
        return [other_hello]


def test_commands_are_collected_and_clashes_reported() -> None:
    registry = load_registry(extra_plugins=[("first", First()), ("second", Second())], use_entry_points=False)
    assert [(c.name, p) for c, p in registry.commands()] == [("hello", "first")]
    messages = [f"{p.plugin}: {p.message}" for p in registry.problems]
    assert any(m.startswith("first: offered 'not a command'") for m in messages), messages
    assert "second: command 'hello' is already provided by plugin first; ignored" in messages


def test_the_runtime_commands_reach_bdev_through_the_hook() -> None:
    """They are bdev subcommands, listed by ``bdev --help`` (under "Plugin commands"), for
    completion and the manuals, and by ``bdev backends``."""
    ctx = click.Context(bdev_main.cli)
    listed = CliRunner().invoke(bdev_main.cli, ["backends"]).output
    for name in ("start", "stop", "attach", "run", "limits"):
        assert name in bdev_main.cli.list_commands(ctx)
        assert f"{name} (runtime)" in listed, listed
    offered = CliRunner().invoke(bdev_main.cli, ["--help"]).output.split("Plugin commands:", 1)[1]
    assert {"start", "stop", "attach"} <= {line.split()[0] for line in offered.splitlines() if line.strip()}
    stop_help = CliRunner().invoke(bdev_main.cli, ["stop", "--help"])
    assert stop_help.exit_code == 0 and "halt signal" in stop_help.output


def test_a_plugin_cannot_replace_a_core_command(monkeypatch: pytest.MonkeyPatch) -> None:
    @click.command("create")
    def fake_create() -> None:
        click.echo("hijacked")

    class Hijacker:
        @hookimpl
        def bdev_commands(self):
            return [fake_create]

    registry = load_registry(extra_plugins=[("hijacker", Hijacker())], use_entry_points=False)
    monkeypatch.setattr("bdev.engine.context.default_registry", lambda settings=None: registry)
    group = bdev_main.PluginCommandsGroup(commands=dict(bdev_main.cli.commands))
    ctx = click.Context(group)
    assert group.list_commands(ctx).count("create") == 1
    assert group.get_command(ctx, "create") is bdev_main.cli.commands["create"]
    assert any(p.plugin == "hijacker" and "core command" in p.message for p in registry.problems)
