"""LxcConfig: exact round trips, edits in place, injection refused, LXC 1.0 keys."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest

from bdev.errors import ConfigError, InvalidInput
from bdev.store.config import LxcConfig, decode_value, encode_value, expand_hwaddr, random_hwaddr
from bdev.store.legacy import needs_upgrade, upgrade_in_place, upgrade_keys

pytestmark = pytest.mark.unprivileged

FIXTURES = Path(__file__).parent / "fixtures" / "lxc-1.0"
MAC = re.compile(r"^00:16:3e(:[0-9a-f]{2}){3}$")

# What LXC 5.0.2's busybox template wrote here (see the lxc-create run in the report).
LXC5_BUSYBOX = """\
# Template used to create this container: /usr/share/lxc/templates/lxc-busybox
# Parameters passed to the template:
# For additional config options, please look at lxc.container.conf(5)

# Uncomment the following line to support nesting containers:
#lxc.include = /usr/share/lxc/config/nesting.conf
# (Be aware this has security implications)

lxc.net.0.type = veth
lxc.net.0.link = lxcbr0
lxc.net.0.flags = up
lxc.apparmor.profile = generated
lxc.apparmor.allow_nesting = 1
lxc.rootfs.path = dir:/var/lib/lxc/t1/rootfs
lxc.signal.halt = SIGUSR1
lxc.uts.name = "t1"
lxc.mount.entry = shm dev/shm tmpfs defaults,create=dir 0 0
lxc.mount.entry = /lib lib none ro,bind 0 0
"""

TRICKY = [
    "",
    "\n",
    "\n\n\n",
    "lxc.arch = amd64",
    "lxc.arch = amd64\n",
    "lxc.arch=amd64\n",
    "lxc.arch\t=\tamd64\t\n",
    "   lxc.arch   =   amd64   \n",
    "lxc.arch =\n",
    "lxc.arch =   \n",
    "# comment only",
    "#lxc.rootfs.path = dir:/x\n  # indented comment\n",
    "lxc.mount.entry = a b\nlxc.mount.entry = c d\nlxc.mount.entry = a b\n",
    "garbage line without equals\nlxc.arch = x\n= value without key\n",
    "lxc.arch = amd64\r\nlxc.tty.max = 4\r\n",
    "lxc.arch = amd64\r\nlxc.tty.max = 4",
    "lone\rcarriage\rreturns\n",
    "lxc.uts.name = \"quoted\"\nlxc.x = 'single'\n",
    "weird = key = with = many = equals\n",
    "unicodé.key = välue\n",
    "lxc.mount.entry = /a b none bind 0 0 # trailing comment\n",
    "\ufefflxc.arch = amd64\n",
    "\x00 nul\n",
    "\t\n \n\t \n",
    LXC5_BUSYBOX,
]


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# ---------------------------------------------------------------------- round trips


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_is_exact(text):
    assert LxcConfig.parse(text).render() == text


@pytest.mark.parametrize("name", ["c1.config", "c2.config", "c3.config"])
def test_fixtures_round_trip(name):
    text = fixture(name)
    assert LxcConfig.parse(text).render() == text


def test_round_trip_through_files(tmp_path):
    path = tmp_path / "config"
    raw = b"# x\n\nlxc.arch=amd64\nlxc.uts.name =  c1  \t"
    path.write_bytes(raw)
    config = LxcConfig.load(path)
    config.save(path)
    assert path.read_bytes() == raw
    assert (path.stat().st_mode & 0o777) == 0o640
    assert config.source == str(path)


def test_values_are_read_like_lxc():
    config = LxcConfig.parse(
        "lxc.a=1\nlxc.b \t=\t 2 \t\nlxc.c = \"quoted\"\nlxc.d = 'single'\nlxc.e = \"half\nlxc.f =\n"
        "lxc.g = \"\"\nlxc.h = \"a\" b \"c\"\n"
    )
    assert config.items() == [
        ("lxc.a", "1"),
        ("lxc.b", "2"),
        ("lxc.c", "quoted"),
        ("lxc.d", "single"),
        ("lxc.e", '"half'),
        ("lxc.f", ""),
        ("lxc.g", ""),
        ("lxc.h", 'a" b "c'),
    ]


def test_non_entries_are_not_items():
    config = LxcConfig.parse("#lxc.a = 1\n  # lxc.b = 2\nno equals here\nbad key! = 3\n\nlxc.c = 4\n")
    assert config.items() == [("lxc.c", "4")]


@pytest.mark.parametrize("value", ["plain", " lead", "trail ", '"both"', "'both'", '"', "'", "a \"b\" c", "", "\t", "x = y"])
def test_encode_decode_inverse(value):
    assert decode_value(encode_value(value)) == value
    config = LxcConfig.parse("")
    config.set("lxc.k", value)
    assert LxcConfig.parse(config.render()).get("lxc.k") == value


# ---------------------------------------------------------------------- get / set / append / remove


def test_get_last_wins_and_get_all():
    config = LxcConfig.parse("lxc.a = 1\nlxc.b = x\nlxc.a = 2\n")
    assert config.get("lxc.a") == "2"
    assert config.get_all("lxc.a") == ["1", "2"]
    assert config.get("lxc.none") is None
    assert config.get("lxc.none", "d") == "d"
    assert config.get_all("lxc.none") == []
    assert "lxc.b" in config and "lxc.none" not in config
    assert config.keys() == ["lxc.a", "lxc.b"]


def test_set_replaces_first_in_place_and_deletes_duplicates():
    config = LxcConfig.parse("# head\nlxc.a=1\n# mid\nlxc.a = 2\nlxc.b = x\nlxc.a = 3\n# tail\n")
    config.set("lxc.a", "new")
    assert config.render() == "# head\nlxc.a=new\n# mid\nlxc.b = x\n# tail\n"


def test_set_keeps_indent_and_spacing():
    config = LxcConfig.parse("  lxc.a\t=\told  \n")
    config.set("lxc.a", "new")
    assert config.render() == "  lxc.a\t=\tnew\n"


def test_set_on_empty_value_line():
    config = LxcConfig.parse("lxc.a =\n")
    config.set("lxc.a", "v")
    assert config.render() == "lxc.a = v\n"
    config.set("lxc.a", "")
    assert config.render() == "lxc.a =\n"


def test_set_appends_when_absent_even_without_final_newline():
    config = LxcConfig.parse("lxc.a = 1")
    config.set("lxc.b", "2")
    assert config.render() == "lxc.a = 1\nlxc.b = 2\n"
    empty = LxcConfig.parse("")
    empty.set("lxc.a", "1")
    assert empty.render() == "lxc.a = 1\n"


def test_append_keeps_crlf_files_consistent():
    config = LxcConfig.parse("lxc.a = 1\r\n")
    config.append("lxc.b", "2")
    assert config.render() == "lxc.a = 1\r\nlxc.b = 2\r\n"
    assert config.get("lxc.a") == "1"


def test_append_and_multi_valued_order():
    config = LxcConfig.parse("lxc.mount.entry = a\n")
    config.append("lxc.mount.entry", "b")
    config.append("lxc.mount.entry", "a")
    assert config.mount_entries() == ["a", "b", "a"]


def test_remove_counts_and_keeps_the_rest():
    config = LxcConfig.parse("# c\nlxc.a = 1\nlxc.b = 2\nlxc.a = 3\n")
    assert config.remove("lxc.a") == 2
    assert config.remove("lxc.a") == 0
    assert config.render() == "# c\nlxc.b = 2\n"


def test_remove_last_line_keeps_missing_final_newline():
    config = LxcConfig.parse("lxc.a = 1\nlxc.b = 2")
    config.remove("lxc.b")
    assert config.render() == "lxc.a = 1"


def test_remove_prefix_respects_dot_boundaries():
    text = "lxc.net.0.type = veth\nlxc.net.0.link = br0\nlxc.net.01.type = x\nlxc.net.1.type = veth\nlxc.network.type = v\nlxc.net = \n"
    config = LxcConfig.parse(text)
    assert config.remove_prefix("lxc.net.0") == 2
    assert config.keys() == ["lxc.net.01.type", "lxc.net.1.type", "lxc.network.type", "lxc.net"]
    assert config.remove_prefix("lxc.net.") == 2
    assert config.keys() == ["lxc.network.type", "lxc.net"]
    assert config.remove_prefix("lxc.net") == 1
    assert config.keys() == ["lxc.network.type"]


def test_copy_is_independent():
    config = LxcConfig.parse("lxc.a = 1\n", source="x")
    other = config.copy()
    other.set("lxc.a", "2")
    assert config.get("lxc.a") == "1" and other.get("lxc.a") == "2"
    assert other.source == "x"
    assert config == LxcConfig.parse("lxc.a = 1\n")


def test_rewrite_renames_changes_and_deletes():
    config = LxcConfig.parse("lxc.a  =  1 # x\nlxc.b = 2\nlxc.c = 3\n")

    def change(key, value):
        if key == "lxc.c":
            return None
        if key == "lxc.a":
            return "lxc.z", value
        if key == "lxc.b":
            return key, "two"
        return key, value

    count = config.rewrite(change)
    assert count == 3
    assert config.render() == "lxc.z  =  1 # x\nlxc.b = two\n"


# ---------------------------------------------------------------------- injection


INJECTIONS = [
    ("lxc.uts.name", "x\nlxc.rootfs.path = dir:/"),
    ("lxc.uts.name", "x\rlxc.rootfs.path = dir:/"),
    ("lxc.uts.name", "x\x00y"),
    ("lxc.uts.name\nlxc.rootfs.path", "x"),
    ("lxc.uts.name = x\nlxc.a", "y"),
    ("lxc.a b", "x"),
    ("", "x"),
    ("lxc.a=", "x"),
    ("#lxc.a", "x"),
    (" lxc.a", "x"),
    ("lxc.a\n", "x"),
]


@pytest.mark.parametrize("key,value", INJECTIONS)
@pytest.mark.parametrize("method", ["set", "append"])
def test_injection_refused_and_file_unchanged(tmp_path, key, value, method):
    path = tmp_path / "config"
    path.write_text(LXC5_BUSYBOX)
    config = LxcConfig.load(path)
    with pytest.raises(InvalidInput):
        getattr(config, method)(key, value)
    assert config.render() == LXC5_BUSYBOX
    config.save(path)
    assert path.read_text() == LXC5_BUSYBOX


def test_injection_message_names_key():
    config = LxcConfig.parse("")
    with pytest.raises(InvalidInput, match="(?i)config value for lxc.x contains a newline"):
        config.set("lxc.x", "a\nb")
    with pytest.raises(InvalidInput, match="carriage return"):
        config.set("lxc.x", "a\rb")
    with pytest.raises(InvalidInput, match="NUL"):
        config.set("lxc.x", "a\0b")
    with pytest.raises(InvalidInput, match="newline"):
        config.set("lxc.x\n", "a")


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.set_rootfs("dir:/x\nlxc.hook.pre-start = /evil"),
        lambda c: c.set_uts_name("c1\nlxc.hook.pre-start = /evil"),
        lambda c: c.replace_in_values("/var/lib/lxc/t1", "/var/lib/lxc/t2\nlxc.hook.mount = /evil"),
        lambda c: c.rewrite(lambda k, v: (k, v + "\nlxc.x = y")),
        lambda c: c.rewrite(lambda k, v: (k + "\n", v)),
        lambda c: c.set("lxc.a", 5),
        lambda c: c.set("lxc.a", "bad\udcff"),
    ],
)
def test_accessors_refuse_injection(call):
    config = LxcConfig.parse(LXC5_BUSYBOX)
    with pytest.raises(InvalidInput):
        call(config)
    assert config.render() == LXC5_BUSYBOX


# ---------------------------------------------------------------------- load / save errors


def test_load_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "nope"))):
        LxcConfig.load(tmp_path / "nope")


def test_load_directory_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path))):
        LxcConfig.load(tmp_path)


def test_load_undecodable_is_config_error(tmp_path):
    path = tmp_path / "config"
    path.write_bytes(b"lxc.uts.name = \xff\xfe\n")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        LxcConfig.load(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_load_unreadable_is_config_error(tmp_path):
    path = tmp_path / "config"
    path.write_text("lxc.a = 1\n")
    path.chmod(0)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        LxcConfig.load(path)


def test_save_into_missing_directory_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="(?i)cannot write config file"):
        LxcConfig.parse("lxc.a = 1\n").save(tmp_path / "missing" / "config")


def test_save_mode(tmp_path):
    path = tmp_path / "config"
    LxcConfig.parse("lxc.a = 1\n").save(path, mode=0o600)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["config"]


# ---------------------------------------------------------------------- rootfs and uts name


def test_rootfs_current_keys():
    config = LxcConfig.parse(LXC5_BUSYBOX)
    assert config.rootfs_value() == ("dir:/var/lib/lxc/t1/rootfs", None)
    assert config.uts_name() == "t1"


def test_rootfs_lxc20_backend_hint():
    config = LxcConfig.parse("lxc.rootfs = /var/lib/lxc/c1/rootfs\nlxc.rootfs.backend = btrfs\nlxc.utsname = c1\n")
    assert config.rootfs_value() == ("/var/lib/lxc/c1/rootfs", "btrfs")


def test_rootfs_last_of_either_key_wins():
    # LXC 2.1 read lxc.rootfs and lxc.rootfs.path as one setting.
    assert LxcConfig.parse("lxc.rootfs.path = dir:/a\nlxc.rootfs = /b\n").rootfs_value() == ("/b", None)
    assert LxcConfig.parse("lxc.rootfs = /b\nlxc.rootfs.path = dir:/a\n").rootfs_value() == ("dir:/a", None)


def test_rootfs_absent_or_empty():
    assert LxcConfig.parse("# nothing\n").rootfs_value() == (None, None)
    assert LxcConfig.parse("lxc.rootfs.path =\nlxc.rootfs.backend =\n").rootfs_value() == (None, None)
    assert LxcConfig.parse("").uts_name() is None


def test_set_rootfs_replaces_current_key_in_place():
    config = LxcConfig.parse("# c\nlxc.rootfs.path = dir:/a\nlxc.arch = amd64\nlxc.rootfs.backend = dir\nlxc.rootfs = /old\n")
    config.set_rootfs("btrfs:/b")
    assert config.render() == "# c\nlxc.rootfs.path = btrfs:/b\nlxc.arch = amd64\n"


def test_set_rootfs_renames_legacy_line_in_place():
    config = LxcConfig.parse(fixture("c2.config"))
    config.set_rootfs("overlay:/var/lib/lxc/c1/rootfs:/var/lib/lxc/c9/overlay/delta")
    lines = config.render().splitlines()
    assert lines[7] == "lxc.rootfs.path = overlay:/var/lib/lxc/c1/rootfs:/var/lib/lxc/c9/overlay/delta"
    assert len(lines) == 9
    assert "lxc.rootfs =" not in config.render()


def test_set_rootfs_appends_when_absent():
    config = LxcConfig.parse("lxc.arch = amd64\nlxc.rootfs.backend = dir")
    config.set_rootfs("dir:/x")
    assert config.render() == "lxc.arch = amd64\nlxc.rootfs.path = dir:/x\n"


def test_set_uts_name_renames_legacy_line_in_place():
    config = LxcConfig.parse(fixture("c2.config"))
    config.set_uts_name("c9")
    assert config.render().endswith("lxc.uts.name = c9\n")
    assert config.uts_name() == "c9"
    assert config.get("lxc.utsname") is None


def test_set_uts_name_replaces_quoted_current_key():
    config = LxcConfig.parse(LXC5_BUSYBOX)
    config.set_uts_name("t2")
    assert "lxc.uts.name = t2\n" in config.render()
    assert config.render().count("lxc.uts.name") == 1


def test_set_uts_name_too_long_for_lxc():
    config = LxcConfig.parse("lxc.uts.name = a\n")
    with pytest.raises(InvalidInput, match="64"):
        config.set_uts_name("a" * 65)
    config.set_uts_name("a" * 64)


# ---------------------------------------------------------------------- LXC 1.0 fixtures


def test_lxc10_overlayfs_clone_through_accessors():
    config = LxcConfig.load(FIXTURES / "c2.config")
    assert config.rootfs_value() == ("overlayfs:/var/lib/lxc/c1/rootfs:/var/lib/lxc/c2/delta0", None)
    assert config.uts_name() == "c2"
    assert config.hwaddr_keys() == ["lxc.network.hwaddr"]
    assert config.get("lxc.network.hwaddr") == "00:16:3e:76:59:10"
    assert config.mount_entries() == []


def test_lxc10_dir_container_through_accessors():
    config = LxcConfig.load(FIXTURES / "c1.config")
    assert config.rootfs_value() == ("/var/lib/lxc/c1/rootfs", None)
    assert config.uts_name() == "c1"
    assert config.get("lxc.mount") == "/var/lib/lxc/c1/fstab"
    assert config.hwaddr_keys() == ["lxc.network.hwaddr"]


def test_lxc10_loop_container_through_accessors():
    config = LxcConfig.load(FIXTURES / "c3.config")
    assert config.rootfs_value() == ("loop:/var/lib/lxc/c3/rootdev", None)
    assert config.uts_name() == "c3"
    assert config.hwaddr_keys() == ["lxc.network.hwaddr", "lxc.network.hwaddr"]
    assert config.get_all("lxc.network.hwaddr") == ["00:16:3e:a1:b2:c3", "00:16:3e:xx:xx:xx"]


def test_upgrade_view_of_overlayfs_clone():
    config = LxcConfig.load(FIXTURES / "c2.config")
    assert upgrade_keys(config) == [
        ("lxc.include", "/usr/share/lxc/config/ubuntu.common.conf"),
        ("lxc.arch", "amd64"),
        ("lxc.net.0.type", "veth"),
        ("lxc.net.0.link", "lxcbr0"),
        ("lxc.net.0.flags", "up"),
        ("lxc.net.0.hwaddr", "00:16:3e:76:59:10"),
        ("lxc.mount.auto", "proc sys cgroup"),
        ("lxc.rootfs.path", "overlayfs:/var/lib/lxc/c1/rootfs:/var/lib/lxc/c2/delta0"),
        ("lxc.uts.name", "c2"),
    ]
    assert config.render() == fixture("c2.config")  # a view: nothing changed
    assert needs_upgrade(config)


def test_upgrade_view_of_two_interfaces():
    view = upgrade_keys(LxcConfig.load(FIXTURES / "c3.config"))
    assert ("lxc.tty.max", "4") in view
    assert ("lxc.pty.max", "1024") in view
    assert ("lxc.apparmor.profile", "lxc-container-default") in view
    assert ("lxc.mount.fstab", "/var/lib/lxc/c3/fstab") in view
    net = [(k, v) for k, v in view if k.startswith("lxc.net")]
    assert net == [
        ("lxc.net.0.type", "veth"),
        ("lxc.net.0.flags", "up"),
        ("lxc.net.0.link", "lxcbr0"),
        ("lxc.net.0.hwaddr", "00:16:3e:a1:b2:c3"),
        ("lxc.net.1.type", "veth"),
        ("lxc.net.1.flags", "up"),
        ("lxc.net.1.link", "br1"),
        ("lxc.net.1.name", "eth1"),
        ("lxc.net.1.hwaddr", "00:16:3e:xx:xx:xx"),
        ("lxc.net.1.ipv4.address", "10.0.4.5/24"),
        ("lxc.net.1.ipv4.gateway", "10.0.4.1"),
    ]


@pytest.mark.parametrize(
    "old,new",
    [
        ("lxc.utsname", "lxc.uts.name"),
        ("lxc.tty", "lxc.tty.max"),
        ("lxc.pts", "lxc.pty.max"),
        ("lxc.aa_profile", "lxc.apparmor.profile"),
        ("lxc.haltsignal", "lxc.signal.halt"),
        ("lxc.rebootsignal", "lxc.signal.reboot"),
        ("lxc.stopsignal", "lxc.signal.stop"),
        ("lxc.id_map", "lxc.idmap"),
        ("lxc.init_cmd", "lxc.init.cmd"),
        ("lxc.loglevel", "lxc.log.level"),
        ("lxc.logfile", "lxc.log.file"),
        ("lxc.mount", "lxc.mount.fstab"),
        ("lxc.limit.nofile", "lxc.prlimit.nofile"),
        ("lxc.network.0.ipv4", "lxc.net.0.ipv4.address"),
        ("lxc.network.2.link", "lxc.net.2.link"),
        ("lxc.network", "lxc.net"),
        ("lxc.mount.entry", "lxc.mount.entry"),
        ("lxc.net.0.type", "lxc.net.0.type"),
    ],
)
def test_upgrade_key_mapping(old, new):
    assert upgrade_keys(LxcConfig.parse(f"{old} = v\n")) == [(new, "v")]


def test_upgrade_drops_backend_into_prefix():
    config = LxcConfig.parse("lxc.rootfs = /var/lib/lxc/c1/rootfs\nlxc.rootfs.backend = btrfs\nlxc.pivotdir = x\n")
    assert upgrade_keys(config) == [("lxc.rootfs.path", "btrfs:/var/lib/lxc/c1/rootfs")]
    prefixed = LxcConfig.parse("lxc.rootfs = loop:/var/lib/lxc/c1/rootdev\nlxc.rootfs.backend = loop\n")
    assert upgrade_keys(prefixed) == [("lxc.rootfs.path", "loop:/var/lib/lxc/c1/rootdev")]


def test_current_config_needs_no_upgrade():
    config = LxcConfig.parse(LXC5_BUSYBOX)
    assert not needs_upgrade(config)
    assert upgrade_in_place(config) == []
    assert config.render() == LXC5_BUSYBOX


def test_upgrade_in_place_keeps_order_and_comments():
    config = LxcConfig.load(FIXTURES / "c1.config")
    changes = upgrade_in_place(config)
    assert ("lxc.utsname", "lxc.uts.name") in changes
    assert ("lxc.network.type", "lxc.net.0.type") in changes
    expected = (
        fixture("c1.config")
        .replace("lxc.rootfs =", "lxc.rootfs.path =")
        .replace("lxc.mount =", "lxc.mount.fstab =")
        .replace("lxc.utsname =", "lxc.uts.name =")
        .replace("lxc.network.", "lxc.net.0.")
    )
    assert config.render() == expected
    assert not needs_upgrade(config)


def test_upgrade_in_place_deletes_dropped_keys():
    config = LxcConfig.parse("# x\nlxc.rootfs = /r\nlxc.rootfs.backend = dir\n# y\n")
    assert upgrade_in_place(config) == [("lxc.rootfs", "lxc.rootfs.path"), ("lxc.rootfs.backend", None)]
    assert config.render() == "# x\nlxc.rootfs.path = dir:/r\n# y\n"


# ---------------------------------------------------------------------- MAC addresses


def test_random_hwaddr_format():
    seen = {random_hwaddr() for _ in range(200)}
    assert all(MAC.match(m) for m in seen)
    assert len(seen) > 190


def test_expand_hwaddr_keeps_fixed_digits_and_unicast():
    rng = random.Random(7)
    for _ in range(200):
        mac = expand_hwaddr("xx:xx:xx:xx:xx:xx", rng)
        assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac)
        assert int(mac[:2], 16) & 1 == 0  # unicast
        assert expand_hwaddr("00:16:3e:xx:xX:Xx", rng).startswith("00:16:3e:")


def test_hwaddr_keys_all_forms():
    config = LxcConfig.parse(
        "lxc.net.0.hwaddr = 00:16:3e:00:00:01\nlxc.network.hwaddr = 00:16:3e:00:00:02\n"
        "lxc.network.3.hwaddr = 00:16:3e:00:00:03\nlxc.net.hwaddr = 00:16:3e:00:00:04\n"
        "lxc.net.0.hwaddrx = no\n#lxc.net.1.hwaddr = no\nlxc.net.0.link = br0\n"
    )
    assert config.hwaddr_keys() == ["lxc.net.0.hwaddr", "lxc.network.hwaddr", "lxc.network.3.hwaddr", "lxc.net.hwaddr"]


def test_randomize_hwaddrs_valid_and_different():
    text = (
        "lxc.net.0.type = veth\nlxc.net.0.hwaddr = 00:16:3e:aa:bb:cc\n"
        "lxc.net.1.type = veth\nlxc.net.1.hwaddr=00:16:3e:aa:bb:cc\n"
        "lxc.net.2.hwaddr = 00:16:3e:xx:xx:xx\nlxc.net.3.hwaddr = 02:00:00:xx:xx:xx\n"
        "lxc.net.4.hwaddr = not-a-mac\nlxc.net.5.hwaddr = 00:16:3e:aa:bb:cc # comment\n"
    )
    config = LxcConfig.parse(text)
    changed = config.randomize_hwaddrs(random.Random(1))
    values = [config.get(f"lxc.net.{i}.hwaddr") for i in (0, 1, 2)]
    assert all(MAC.match(v) for v in values)
    assert config.get("lxc.net.0.hwaddr") != "00:16:3e:aa:bb:cc"
    assert config.get("lxc.net.3.hwaddr").startswith("02:00:00:")
    assert "x" not in config.get("lxc.net.3.hwaddr")
    # values that are no MAC address are left alone, as LXC does ("Bad hwaddr entry")
    assert config.get("lxc.net.4.hwaddr") == "not-a-mac"
    assert config.get("lxc.net.5.hwaddr") == "00:16:3e:aa:bb:cc # comment"
    assert [k for k, _o, _n in changed] == [f"lxc.net.{i}.hwaddr" for i in range(4)]
    news = [new for _k, _o, new in changed]
    assert len(set(news)) == 4
    assert "00:16:3e:aa:bb:cc" not in news
    assert config.render().startswith("lxc.net.0.type = veth\nlxc.net.0.hwaddr = 00:16:3e:")
    assert "lxc.net.1.hwaddr=00:16:3e:" in config.render()  # spacing kept


def test_randomize_hwaddrs_legacy_fixture():
    config = LxcConfig.load(FIXTURES / "c3.config")
    before = config.get_all("lxc.network.hwaddr")
    changed = config.randomize_hwaddrs()
    after = config.get_all("lxc.network.hwaddr")
    assert len(changed) == 2
    assert all(MAC.match(m) for m in after)
    assert after[0] != before[0] and after[0] != after[1]
    assert config.render().count("\n") == fixture("c3.config").count("\n")


def test_randomize_twice_gives_different_addresses():
    a = LxcConfig.parse("lxc.net.0.hwaddr = 00:16:3e:00:00:00\n")
    b = a.copy()
    a.randomize_hwaddrs()
    b.randomize_hwaddrs()
    assert a.get("lxc.net.0.hwaddr") != b.get("lxc.net.0.hwaddr")  # 1 in 2**24 to collide
    assert MAC.match(a.get("lxc.net.0.hwaddr"))


# ---------------------------------------------------------------------- replace_in_values


@pytest.mark.parametrize(
    "value,expected,count",
    [
        ("/var/lib/lxc/c1/rootfs/data data none bind 0 0", "/var/lib/lxc/c9/rootfs/data data none bind 0 0", 1),
        ("/var/lib/lxc/c10/rootfs/data data none bind 0 0", "/var/lib/lxc/c10/rootfs/data data none bind 0 0", 0),
        ("/var/lib/lxc/c1 mnt none bind 0 0", "/var/lib/lxc/c9 mnt none bind 0 0", 1),
        ("/x/var/lib/lxc/c1/a mnt none bind 0 0", "/x/var/lib/lxc/c1/a mnt none bind 0 0", 0),
        ("/var/lib/lxc/c1-old/a mnt none bind 0 0", "/var/lib/lxc/c1-old/a mnt none bind 0 0", 0),
        ("/var/lib/lxc/c1.bak mnt none bind 0 0", "/var/lib/lxc/c1.bak mnt none bind 0 0", 0),
        (
            "overlay mnt overlay lowerdir=/var/lib/lxc/c1/lower,upperdir=/var/lib/lxc/c1/up,workdir=/var/lib/lxc/c1/work 0 0",
            "overlay mnt overlay lowerdir=/var/lib/lxc/c9/lower,upperdir=/var/lib/lxc/c9/up,workdir=/var/lib/lxc/c9/work 0 0",
            3,
        ),
        ("overlay:/base/rootfs:/var/lib/lxc/c1/delta", "overlay:/base/rootfs:/var/lib/lxc/c9/delta", 1),
        ('"/var/lib/lxc/c1/with space" mnt', '"/var/lib/lxc/c9/with space" mnt', 1),
        ("relative/var/lib/lxc/c1 x", "relative/var/lib/lxc/c1 x", 0),
    ],
)
def test_replace_in_values_boundaries(value, expected, count):
    config = LxcConfig.parse(f"lxc.mount.entry = {value}\n")
    assert config.replace_in_values("/var/lib/lxc/c1", "/var/lib/lxc/c9") == count
    assert config.render() == f"lxc.mount.entry = {expected}\n"


def test_replace_in_values_only_given_keys():
    text = (
        "lxc.rootfs.path = dir:/var/lib/lxc/c1/rootfs\n"
        "lxc.mount.fstab = /var/lib/lxc/c1/fstab\n"
        "lxc.hook.pre-start = /var/lib/lxc/c1/hook.sh arg\n"
        "lxc.hook.clone = /usr/share/lxc/hooks/clonehostname\n"
        "#lxc.mount.entry = /var/lib/lxc/c1/a b\n"
        "lxc.log.file = /var/lib/lxc/c1/log\n"
    )
    config = LxcConfig.parse(text)
    assert config.replace_in_values("/var/lib/lxc/c1/", "/srv/lxc/c2/") == 2
    assert config.render() == text.replace(
        "lxc.mount.fstab = /var/lib/lxc/c1/fstab", "lxc.mount.fstab = /srv/lxc/c2/fstab"
    ).replace("lxc.hook.pre-start = /var/lib/lxc/c1/hook.sh", "lxc.hook.pre-start = /srv/lxc/c2/hook.sh")
    assert config.replace_in_values("/var/lib/lxc/c1", "/x", keys=["lxc.log.file"]) == 1
    assert config.get("lxc.log.file") == "/x/log"


def test_replace_in_values_refuses_root_and_empty():
    config = LxcConfig.parse("lxc.mount.entry = /a b\n")
    for old in ("", "/", "//"):
        with pytest.raises(InvalidInput):
            config.replace_in_values(old, "/x")
