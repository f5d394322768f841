"""Names and paths from users: one clear sentence per refusal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bdev.errors import InvalidInput
from bdev.naming import normalize_path, validate_name, validate_path, validate_snapshot_name

pytestmark = pytest.mark.unprivileged


@pytest.mark.parametrize(
    "name",
    ["c1", "web-01", "a.b", "a_b", "UPPER", "x" * 255, "é" * 127, "容器", "a b", "snap0", "a..b", "a-", "a."],
)
def test_good_names(name):
    assert validate_name(name) == name
    assert validate_snapshot_name(name) == name


@pytest.mark.parametrize(
    "name,reason",
    [
        ("", "is empty"),
        ("a/b", "contains '/'"),
        ("/", "contains '/'"),
        ("../etc", "contains '/'"),
        (".", "not allowed"),
        ("..", "not allowed"),
        (".hidden", "starts with '.'"),
        ("-n", "starts with '-'"),
        ("--help", "starts with '-'"),
        ("a\0b", "NUL"),
        ("a\nb", "newline"),
        ("a\rb", "control character"),
        ("a\tb", "control character"),
        ("a\x1bb", "control character"),
        ("a\x7fb", "control character"),
        ("a\x85b", "control character"),
        (" a", "whitespace"),
        ("a ", "whitespace"),
        ("a\u00a0", "whitespace"),
        ("x" * 256, "256 bytes"),
        ("é" * 128, "256 bytes"),
        ("a\udcffb", "not valid UTF-8"),
    ],
)
def test_bad_names(name, reason):
    with pytest.raises(InvalidInput) as info:
        validate_name(name)
    message = str(info.value)
    assert reason in message
    assert message.startswith("Container name")
    assert message.endswith(".") and "\n" not in message
    if len(name.encode("utf-8", "surrogatepass")) <= 255 and name:
        assert repr(name) in message


def test_message_shows_newline_escaped():
    with pytest.raises(InvalidInput) as info:
        validate_name("web\nlxc.rootfs.path = dir:/")
    assert str(info.value) == "Container name 'web\\nlxc.rootfs.path = dir:/' contains a newline."


def test_what_names_the_thing():
    with pytest.raises(InvalidInput, match="^Snapshot name"):
        validate_snapshot_name("..")
    with pytest.raises(InvalidInput, match="^Clone name"):
        validate_name("", what="clone")


def test_non_text_refused():
    with pytest.raises(InvalidInput, match="must be text"):
        validate_name(b"c1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="must be text"):
        validate_name(None)  # type: ignore[arg-type]


def test_invalid_input_exit_code():
    with pytest.raises(InvalidInput) as info:
        validate_name("")
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "given,expected",
    [
        ("/var/lib/lxc", "/var/lib/lxc"),
        ("/var/lib/lxc/", "/var/lib/lxc"),
        ("//var//lib/./lxc/../lxc", "/var/lib/lxc"),
        ("///x", "/x"),
        ("/", "/"),
        (Path("/srv/lxc"), "/srv/lxc"),
    ],
)
def test_validate_path_normalises(given, expected):
    assert validate_path(given) == Path(expected)


def test_validate_path_makes_relative_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert validate_path("containers") == tmp_path / "containers"
    assert validate_path("./a/../b") == tmp_path / "b"
    assert validate_path("x/-y") == tmp_path / "x" / "-y"


@pytest.mark.parametrize(
    "given,reason",
    [
        ("", "is empty"),
        ("-P", "starts with '-'"),
        ("--lxcpath=/x", "starts with '-'"),
        ("/var/lib/lxc\n", "newline"),
        ("/var/\0lib", "NUL"),
        ("/var/\x1blib", "control character"),
        ("/a\udcff", "not valid UTF-8"),
        (b"/var/lib/lxc", "bytes"),
        (5, "must be a path"),
    ],
)
def test_validate_path_refuses(given, reason):
    with pytest.raises(InvalidInput, match=reason):
        validate_path(given, what="lxcpath")  # type: ignore[arg-type]


def test_validate_path_names_what():
    with pytest.raises(InvalidInput, match="^Lxcpath '-x'"):
        validate_path("-x", what="lxcpath")


def test_normalize_path_does_not_follow_symlinks(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    assert normalize_path(tmp_path / "link") == tmp_path / "link"
