"""Images for the download template, for real: GNU tar archives, SHA-256 manifests, an HTTP
server on loopback, containers unpacked onto real backends; and every fault of the issue
(missing file, checksum mismatch, cut download, hostile tarball, full disk) refused with one
sentence and nothing left behind."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bdev.api import Container
from bdev.errors import BdevError, InvalidInput
from bdev.records import CreateOptions
from bdev.testing.kit.storage import scratch_lxcpath, storage_problem
from bdev.testing.samples import make_sample_rootfs
from bdev.testing.storage import loop_filesystem, loop_filesystem_problem
from bdev.testing.trees import assert_trees_equal
from bdev_runtime.images import unpack
from bdev_runtime.images.build import ImageSpec, build_image, pack_rootfs
from bdev_runtime.images.index import ImageEntry, format_index, parse_index, select
from bdev_runtime.images.manifest import SUMS, format_sums, parse_sums
from bdev_runtime.images.obtain import cache_entry, Request
from bdev_runtime.images.serve import make_server

ROOT = pytest.mark.root


def one_sentence(exc: BaseException) -> str:
    """The error's text, checked to be one line ending in one full stop."""
    text = str(exc)
    assert "\n" not in text and text.endswith(".") and "Traceback" not in text, text
    return text


def leftovers(directory: Path, *, files_only: bool = False) -> list[str]:
    """What is below ``directory`` (relative paths), lock files excepted; only files if
    ``files_only`` (a cache keeps its empty directories and locks)."""
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                  if not (p.name.startswith(".") and p.name.endswith(".lock")) and (p.is_file() or not files_only))


# ---------------------------------------------------------------------------- index, manifest


def test_index_round_trip_and_newest_build() -> None:
    entries = [ImageEntry("debian", "bookworm", "amd64", "default", b, f"images/debian/bookworm/amd64/default/{b}")
               for b in ("20240101_0000", "20250101_0000")]
    text = format_index(entries)
    assert text.splitlines()[0] == "debian;bookworm;amd64;default;20240101_0000;/images/debian/bookworm/amd64/default/20240101_0000/"
    parsed = parse_index("# comment\n\n" + text, "test")
    assert parsed == entries
    assert select(parsed, "debian", "bookworm", "amd64", "default").build_id == "20250101_0000"
    assert select(parsed, "debian", "trixie", "amd64", "default") is None


@pytest.mark.parametrize(("line", "fragment"), [
    ("debian;bookworm;amd64;default;1", "has 5 fields, not 6"),
    ("debian;bookworm;amd64;default;1;/images/../../etc/", "unusable path"),
    ("debian;bookworm;amd64;default;1;http://elsewhere/x/", "unusable path"),
    ("deb/ian;bookworm;amd64;default;1;/images/x/", "distribution 'deb/ian' is not valid"),
])
def test_index_bad_lines(line: str, fragment: str) -> None:
    with pytest.raises(BdevError) as info:
        parse_index(line + "\n", "srv/index")
    assert fragment in one_sentence(info.value)
    assert "line 1" in str(info.value)


@pytest.mark.parametrize(("text", "fragment"), [
    ("abc  rootfs.tar.xz\n", "is not '<sha256>  <file name>'"),
    (f"{'0' * 64}  ../rootfs.tar.xz\n", "is not '<sha256>  <file name>'"),
    (f"{'0' * 64}  a\n{'1' * 64}  a\n", "lists a twice"),
    ("\n", "lists no files"),
])
def test_manifest_bad_lines(text: str, fragment: str) -> None:
    with pytest.raises(BdevError) as info:
        parse_sums(text, "SUMS")
    assert fragment in one_sentence(info.value)


def test_manifest_round_trip() -> None:
    sums = {"rootfs.tar.xz": "a" * 64, "config": "b" * 64}
    assert parse_sums(format_sums(sums), "x") == sums


# ---------------------------------------------------------------------------- strict unpacking


def hostile_archive(path: Path, members: list[tarfile.TarInfo]) -> Path:
    """A plain tar archive with exactly ``members`` (regular files get a few bytes)."""
    with tarfile.open(path, "w") as tar:
        for member in members:
            data = None
            if member.isreg():
                member.size = 5
                data = io.BytesIO(b"evil\n")
            tar.addfile(member, data)
    return path


def info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = link
    member.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return member


HOSTILE = {
    "absolute path": ([info("/etc/evil")], "has an absolute path"),
    "dot-dot entry": ([info("etc"), info("etc/../../evil")], "climbs out of the rootfs with '..'"),
    "symlink out": ([info("escape", tarfile.SYMTYPE, "../../outside")], "is a symlink pointing outside the rootfs"),
    "deep symlink out": ([info("a", tarfile.DIRTYPE), info("a/l", tarfile.SYMTYPE, "../b/../../x")], "pointing outside"),
    "write through symlink": ([info("up", tarfile.SYMTYPE, "/"), info("up/evil")], "lies beneath 'up'"),
    "file over symlink": ([info("passwd", tarfile.SYMTYPE, "/etc/passwd"), info("passwd")], "appears twice"),
    "hard link out": ([info("h", tarfile.LNKTYPE, "../../etc/passwd")], "is a hard link that climbs out"),
    "absolute hard link": ([info("h", tarfile.LNKTYPE, "/etc/passwd")], "is a hard link that has an absolute path"),
    "hard link to nothing": ([info("h", tarfile.LNKTYPE, "etc/shadow")], "not an earlier file of the archive"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tarball_is_refused_before_anything_is_written(case: str, tmp_path: Path) -> None:
    members, fragment = HOSTILE[case]
    archive = hostile_archive(tmp_path / "evil.tar", members)
    sandbox = tmp_path / "a" / "b"
    rootfs = sandbox / "rootfs"
    rootfs.mkdir(parents=True)
    with pytest.raises(unpack.UnsafeArchive) as caught:
        unpack.extract(archive, rootfs)
    text = one_sentence(caught.value)
    assert fragment in text and "is refused" in text
    assert list(rootfs.iterdir()) == [], "something was written into the rootfs"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "evil.tar", "rootfs"]


def test_absolute_symlinks_are_kept_and_never_followed(tmp_path: Path) -> None:
    """A rootfs has absolute links (``/etc/localtime``): kept as written, resolved only by the
    container; a file the archive writes next to one lands in the rootfs."""
    archive = hostile_archive(tmp_path / "ok.tar", [
        info("etc", tarfile.DIRTYPE), info("etc/localtime", tarfile.SYMTYPE, "/usr/share/zoneinfo/UTC"),
        info("bin", tarfile.SYMTYPE, "usr/bin"), info("usr/bin", tarfile.DIRTYPE), info("usr/bin/sh"),
        info("usr/bin/dash", tarfile.LNKTYPE, "usr/bin/sh"),
    ])
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    totals = unpack.extract(archive, rootfs)
    assert totals.count == 6
    assert os.readlink(rootfs / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert os.readlink(rootfs / "bin") == "usr/bin"
    assert (rootfs / "usr/bin/sh").read_text() == "evil\n"
    assert os.stat(rootfs / "usr/bin/dash").st_ino == os.stat(rootfs / "usr/bin/sh").st_ino


@pytest.mark.parametrize("compression", ["xz", "zstd"])
def test_unpack_keeps_everything_gnu_tar_packed(compression: str, tmp_path: Path) -> None:
    """Owners, modes, times, hard links, symlinks, fifos, device nodes (as root), sparse
    files and xattrs survive pack (GNU tar) and unpack (the strict unpacker)."""
    source = make_sample_rootfs(tmp_path / "source")
    archive = tmp_path / f"rootfs.tar.{compression}"
    pack_rootfs(source, archive, compression)
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    seen: list[tuple[str, int, int]] = []

    class Recorder:
        def start(self, total_bytes: int, total_files: int) -> None:
            seen.append(("start", total_bytes, total_files))

        def advance(self, nbytes: int, nfiles: int = 1) -> None:
            seen.append(("advance", nbytes, nfiles))

        def finish(self) -> None:
            seen.append(("finish", 0, 0))

    unpack.extract(archive, rootfs, Recorder())
    assert_trees_equal(source, rootfs)
    assert seen[0][0] == "start" and seen[-1][0] == "finish"
    assert sum(n for kind, n, _ in seen if kind == "advance") == seen[0][1] > 32 * 1024 * 1024


@ROOT
def test_unpack_as_an_ordinary_user(tmp_path: Path) -> None:
    """Run as uid 65534: the tree arrives owned by that user, without the device nodes."""
    import tempfile

    source = make_sample_rootfs(tmp_path / "source")
    scratch = Path(tempfile.mkdtemp(prefix="bdev-unpack-uid-"))  # pytest's directories are private to root
    try:
        os.chmod(scratch, 0o755)
        archive = scratch / "rootfs.tar.zst"
        pack_rootfs(source, archive, "zstd")
        os.chmod(archive, 0o644)
        rootfs = scratch / "rootfs"
        rootfs.mkdir()
        os.chown(rootfs, 65534, 65534)
        script = ("import sys; from pathlib import Path; from bdev_runtime.images import unpack; "
                  "unpack.extract(Path(sys.argv[1]), Path(sys.argv[2]))")
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                               script, str(archive), str(rootfs)], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, cwd=scratch)
        assert proc.returncode == 0, proc.stderr
        assert not (rootfs / "dev/null").exists() and not (rootfs / "dev/loopish").exists()
        data = "usr/lib/deep/er/data.bin"
        assert (rootfs / data).read_bytes() == (source / data).read_bytes()
        assert (rootfs / "home/user").stat().st_uid == 65534
        assert os.readlink(rootfs / "bin/absolute-link") == "/etc/passwd"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_truncated_archive_is_one_sentence(tmp_path: Path) -> None:
    source = make_sample_rootfs(tmp_path / "source")
    archive = tmp_path / "rootfs.tar.xz"
    pack_rootfs(source, archive, "xz")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    with pytest.raises(BdevError) as caught:
        unpack.extract(archive, rootfs)
    assert "is corrupt or truncated" in one_sentence(caught.value)
    assert list(rootfs.iterdir()) == []


# ---------------------------------------------------------------------------- server fixtures


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[str]:
    """``directory`` served by ``bdev image serve``'s server on 127.0.0.1 (any free port)."""
    server = make_server(directory, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private image cache, and temporary files kept inside the test's directory."""
    path = tmp_path / "cache"
    monkeypatch.setenv("BDEV_CACHE_DIR", str(path))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    return path


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image directory with a busybox image, built by ``build_image`` (zstd)."""
    from bdev.engine.context import default_registry

    top = tmp_path_factory.mktemp("images")
    build_image(default_registry(), top, ImageSpec("busybox", [], "busybox", "stable", "amd64", compression="zstd"))
    return top


@pytest.fixture
def served(image_dir: Path, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A private copy of the image directory (tests damage it), served on loopback."""
    copy = tmp_path / "served"
    subprocess.run(["cp", "-a", str(image_dir), str(copy)], check=True)
    with serving(copy) as url:
        yield copy, url


def download_args(url: str, *extra: str) -> list[str]:
    return ["--dist", "busybox", "--release", "stable", "--arch", "amd64", "--server", url, *extra]


def image_files(top: Path) -> Path:
    entry = parse_index((top / "meta/1.0/index-system").read_text(), "index")[0]
    return top / entry.path


# ---------------------------------------------------------------------------- building


@ROOT
def test_build_writes_index_manifest_and_image(image_dir: Path) -> None:
    entries = parse_index((image_dir / "meta/1.0/index-system").read_text(), "index")
    assert [e.key for e in entries] == [("busybox", "stable", "amd64", "default")]
    files = image_dir / entries[0].path
    sums = parse_sums((files / SUMS).read_text(), SUMS)
    assert sorted(sums) == ["config", "expiry", "rootfs.tar.zst"]
    assert int((files / "expiry").read_text()) > time.time() + 29 * 86400
    assert "lxc.signal.halt = SIGUSR1" in (files / "config").read_text()
    assert "lxc.uts.name" not in (files / "config").read_text()


@ROOT
def test_server_serves_files_only(image_dir: Path) -> None:
    """No directory listings and no hidden files (the directory's lock, builds in progress)."""
    import urllib.error
    import urllib.request

    with serving(image_dir) as url:
        with urllib.request.urlopen(f"{url}/meta/1.0/index-system") as response:
            assert response.read().startswith(b"busybox;stable;amd64;default;")
        for path in ("/meta/1.0/", "/.bdev-image.lock", "/images/../.bdev-image.lock"):
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(url + path)
            assert caught.value.code == 404, path


@ROOT
def test_failed_build_leaves_the_directory_as_it_was(image_dir: Path, tmp_path: Path) -> None:
    from bdev.engine.context import default_registry

    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(image_dir), str(copy)], check=True)
    before = leftovers(copy)
    with pytest.raises(BdevError) as caught:
        build_image(default_registry(), copy, ImageSpec("busybox", ["--busybox-path", "/nonexistent"], "busybox", "x", "amd64"))
    assert "is not an existing file" in one_sentence(caught.value)
    with pytest.raises(InvalidInput):
        build_image(default_registry(), copy, ImageSpec("busybox", [], "bad/name", "x", "amd64"))
    with pytest.raises(BdevError) as caught:
        build_image(default_registry(), copy, ImageSpec("nosuch", [], "busybox", "x", "amd64"))
    assert "Unknown template 'nosuch'" in one_sentence(caught.value)
    assert leftovers(copy) == before


# ---------------------------------------------------------------------------- downloading


@ROOT
@pytest.mark.parametrize(("backend", "storage"), [("dir", "tmpdir"), ("btrfs", "btrfs"), ("loop", "tmpdir"),
                                                  ("overlay", "tmpdir")])
def test_download_onto_each_backend(backend: str, storage: str, served: tuple[Path, str], cache_dir: Path,
                                    tmp_path: Path, no_leaks: None) -> None:
    """The image is unpacked into the rootfs the backend made (mounted by the engine), its
    config lines land in the container's config, the host name is the container's."""
    problem = storage_problem(storage)
    if problem:
        pytest.skip(f"no {storage} storage here: {problem}")
    top, url = served
    with scratch_lxcpath(storage, tmp_path) as lxcpath:
        c = Container("web", lxcpath)
        options = CreateOptions(fssize=64 * 1024 * 1024) if backend == "loop" else CreateOptions()
        c.create("download", backend, args=download_args(url), options=options)
        config = (lxcpath / "web/config").read_text()
        assert "lxc.signal.halt = SIGUSR1" in config and "lxc.uts.name = web" in config
        assert f"lxc.rootfs.path = {backend}:" in config
        reference = tmp_path / "reference"
        reference.mkdir()
        unpack.extract(image_files(top) / "rootfs.tar.zst", reference)
        from bdev.engine.context import default_registry

        registry = default_registry()
        rootfs = registry.parse_rootfs(config.split("lxc.rootfs.path = ", 1)[1].split("\n", 1)[0])
        b = registry.backend_for(rootfs)
        with b.accessed(rootfs) as path:
            assert (Path(path) / "etc/hostname").read_text() == "web\n"
            hosts = (Path(path) / "etc/hosts").read_text()
            assert "127.0.1.1\tweb\n" in hosts and "busybox" not in hosts and "127.0.0.1\tlocalhost" in hosts
            assert os.readlink(Path(path) / "sbin/init") == os.readlink(reference / "sbin/init")
            assert (Path(path) / "bin/busybox").read_bytes() == (reference / "bin/busybox").read_bytes()
        c.destroy()


@ROOT
def test_cache_is_used_until_flushed_and_no_cache_leaves_it_alone(served: tuple[Path, str], cache_dir: Path,
                                                                     lxcpath: Path) -> None:
    top, url = served
    files = image_files(top)
    Container("one", lxcpath).create("download", "dir", args=download_args(url))
    entry = cache_entry(Request(url, "busybox", "stable", "amd64"))
    assert (entry / "rootfs.tar.zst").read_bytes() == (files / "rootfs.tar.zst").read_bytes()
    cached = (entry / "cache.json").read_text()
    # the server lost the image: the cache still has it, and is not refreshed
    (files / "rootfs.tar.zst").rename(files / "elsewhere")
    Container("two", lxcpath).create("download", "dir", args=download_args(url))
    assert (entry / "cache.json").read_text() == cached
    (files / "elsewhere").rename(files / "rootfs.tar.zst")
    # a damaged cache entry is noticed (SHA-256 again) and fetched anew
    (entry / "rootfs.tar.zst").write_bytes(b"damaged")
    Container("three", lxcpath).create("download", "dir", args=download_args(url))
    assert (entry / "rootfs.tar.zst").read_bytes() == (files / "rootfs.tar.zst").read_bytes()
    before = (entry / "cache.json").read_text()
    assert before != cached
    Container("four", lxcpath).create("download", "dir", args=download_args(url, "--no-cache"))
    assert (entry / "cache.json").read_text() == before
    Container("five", lxcpath).create("download", "dir", args=download_args(url, "--flush-cache"))
    assert (entry / "cache.json").read_text() != before
    assert leftovers(cache_dir.parent / "tmp") == []
    assert [p for p in leftovers(cache_dir) if ".staging-" in p] == []
    for name in ("one", "two", "three", "four", "five"):
        assert (lxcpath / name / "rootfs/bin/busybox").is_file()
        assert (lxcpath / name / "rootfs/etc/hostname").read_text() == f"{name}\n"


@ROOT
def test_concurrent_creates_download_once(served: tuple[Path, str], cache_dir: Path, lxcpath: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Two containers made at once from one image: the cache entry's lock makes the second
    wait for the first download and use it."""
    from bdev_runtime.images import fetch

    top, url = served
    fetched: list[str] = []
    real = fetch.fetch_file

    def counting(file_url: str, target: Path) -> int:
        fetched.append(file_url.rsplit("/", 1)[1])
        time.sleep(0.5)  # keep the first download going while the second create starts
        return real(file_url, target)

    monkeypatch.setattr(fetch, "fetch_file", counting)
    errors: list[BaseException] = []

    def make(name: str) -> None:
        try:
            Container(name, lxcpath).create("download", "dir", args=download_args(url))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=make, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert sorted(fetched) == ["config", "expiry", "rootfs.tar.zst"]
    for name in ("one", "two"):
        assert (lxcpath / name / "rootfs/bin/busybox").is_file()


@ROOT
def test_expired_cache_entry_is_fetched_again(served: tuple[Path, str], cache_dir: Path, lxcpath: Path) -> None:
    import json

    top, url = served
    Container("one", lxcpath).create("download", "dir", args=download_args(url))
    entry = cache_entry(Request(url, "busybox", "stable", "amd64"))
    record = json.loads((entry / "cache.json").read_text())
    record["expires_at"] = time.time() - 1
    (entry / "cache.json").write_text(json.dumps(record))
    Container("two", lxcpath).create("download", "dir", args=download_args(url))
    assert json.loads((entry / "cache.json").read_text())["expires_at"] > time.time()


def assert_refused(lxcpath: Path, cache_dir: Path, args: list[str], fragment: str) -> str:
    """Creating ``c1`` with ``args`` fails with one sentence holding ``fragment``, and leaves
    no container, no cache entry and no temporary file."""
    with pytest.raises(BdevError) as caught:
        Container("c1", lxcpath).create("download", "dir", args=args)
    text = one_sentence(caught.value)
    assert fragment in text and "container 'c1'" in text, text
    assert not (lxcpath / "c1").exists()
    assert leftovers(cache_dir, files_only=True) == []
    assert leftovers(cache_dir.parent / "tmp") == []
    return text


@ROOT
@pytest.mark.parametrize("no_cache", [False, True])
def test_missing_file_tamper_and_unknown_image(served: tuple[Path, str], cache_dir: Path, lxcpath: Path,
                                               no_cache: bool) -> None:
    top, url = served
    extra = ["--no-cache"] if no_cache else []
    files = image_files(top)
    assert_refused(lxcpath, cache_dir, ["-d", "busybox", "-r", "nosuch", "-a", "amd64", "--server", url, *extra],
                   "has no image busybox/nosuch/amd64/default (it offers: busybox/stable/amd64/default)")
    data = (files / "rootfs.tar.zst").read_bytes()
    (files / "rootfs.tar.zst").write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    assert_refused(lxcpath, cache_dir, download_args(url, *extra), "file rootfs.tar.zst fails its SHA-256 check")
    (files / "rootfs.tar.zst").unlink()
    assert_refused(lxcpath, cache_dir, download_args(url, *extra), "rootfs.tar.zst could not be fetched: HTTP 404")
    (files / SUMS).unlink()
    assert_refused(lxcpath, cache_dir, download_args(url, *extra), "SHA256SUMS could not be fetched: HTTP 404")


class HalfHandler(BaseHTTPRequestHandler):
    """Serves files of ``directory``, but announces the full length of a rootfs tarball and
    closes the connection after half of it (a download cut in half)."""

    directory: Path

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        path = self.directory / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if path.name.startswith("rootfs") else data)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@ROOT
def test_download_cut_in_half(image_dir: Path, cache_dir: Path, lxcpath: Path) -> None:
    handler = type("Half", (HalfHandler,), {"directory": image_dir})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        text = assert_refused(lxcpath, cache_dir, download_args(url), "was cut short")
        assert "rootfs.tar.zst" in text
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@ROOT
def test_hostile_image_is_refused_with_nothing_left(image_dir: Path, cache_dir: Path, tmp_path: Path,
                                                    lxcpath: Path) -> None:
    """A server whose image is an escaping tarball with correct checksums: the unpacker
    refuses it, the container is removed, nothing exists outside the rootfs."""
    top = tmp_path / "evil"
    files = top / "images/busybox/stable/amd64/default/1"
    files.mkdir(parents=True)
    hostile_archive(files / "rootfs.tar", [info("etc", tarfile.DIRTYPE), info("etc/../../../../escaped")])
    (files / SUMS).write_text(subprocess.run(["sha256sum", "rootfs.tar"], cwd=files, capture_output=True,
                                             text=True, check=True).stdout)
    (top / "meta/1.0").mkdir(parents=True)
    (top / "meta/1.0/index-system").write_text("busybox;stable;amd64;default;1;/images/busybox/stable/amd64/default/1/\n")
    with serving(top) as url:
        with pytest.raises(BdevError) as caught:
            Container("c1", lxcpath).create("download", "dir", args=download_args(url))
    assert "climbs out of the rootfs with '..'" in one_sentence(caught.value)
    assert not (lxcpath / "c1").exists()
    assert not list(tmp_path.rglob("escaped"))


@ROOT
def test_image_links_in_etc_are_not_followed(tmp_path: Path, cache_dir: Path, lxcpath: Path) -> None:
    """An image whose ``etc/hostname`` and ``etc/hosts`` are absolute symlinks to host files:
    the container's name is written into the rootfs, never through the links."""
    from bdev.engine.context import default_registry

    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hostname").symlink_to(victim)
    (tree / "etc/hosts").symlink_to(victim)
    top = tmp_path / "images"
    build_image(default_registry(), top, ImageSpec("local", ["--path", str(tree), "--no-hostname"], "busybox",
                                                   "stable", "amd64", compression="zstd"))
    with serving(top) as url:
        Container("c1", lxcpath).create("download", "dir", args=download_args(url))
    assert victim.read_text() == "untouched\n"
    assert (lxcpath / "c1/rootfs/etc/hostname").read_text() == "c1\n"
    assert os.readlink(lxcpath / "c1/rootfs/etc/hosts") == str(victim)


@ROOT
def test_full_cache_disk_during_download(image_dir: Path, tmp_path: Path, lxcpath: Path,
                                         monkeypatch: pytest.MonkeyPatch, no_leaks: None) -> None:
    """The cache's filesystem fills up while an image downloads: one sentence, no partial
    entry in the cache, no container."""
    problem = loop_filesystem_problem("ext4")
    if problem:
        pytest.skip(f"no loop ext4 filesystem here: {problem}")
    from bdev.engine.context import default_registry

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "big.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    top = tmp_path / "images"
    build_image(default_registry(), top, ImageSpec("local", ["--path", str(tree)], "busybox", "stable", "amd64",
                                                   compression="zstd"))
    with serving(top) as url, loop_filesystem("ext4", tmp_path / "small", size="16M") as mnt:
        monkeypatch.setenv("BDEV_CACHE_DIR", str(mnt / "cache"))
        with pytest.raises(BdevError) as caught:
            Container("c1", lxcpath).create("download", "dir", args=download_args(url))
        text = one_sentence(caught.value)
        assert "rootfs.tar.zst" in text and "No space left on device" in text, text
        assert not (lxcpath / "c1").exists()
        assert leftovers(mnt / "cache", files_only=True) == []


@ROOT
def test_full_disk_during_unpack(tmp_path: Path, cache_dir: Path, no_leaks: None) -> None:
    """A small ext4 filesystem holds the lxcpath; an image larger than it fails with one
    sentence and the container is removed."""
    problem = loop_filesystem_problem("ext4")
    if problem:
        pytest.skip(f"no loop ext4 filesystem here: {problem}")
    from bdev.engine.context import default_registry

    tree = tmp_path / "tree"
    (tree / "data").mkdir(parents=True)
    (tree / "data/big.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    top = tmp_path / "images"
    build_image(default_registry(), top, ImageSpec("local", ["--path", str(tree)], "busybox", "stable", "amd64",
                                                   compression="zstd"))
    with serving(top) as url, loop_filesystem("ext4", tmp_path / "small", size="16M") as mnt:
        lxcpath = mnt / "lxc"
        lxcpath.mkdir()
        with pytest.raises(BdevError) as caught:
            Container("c1", lxcpath).create("download", "dir", args=download_args(url))
        assert "no space left" in one_sentence(caught.value)
        assert not (lxcpath / "c1").exists()
        assert os.statvfs(mnt).f_bfree * os.statvfs(mnt).f_bsize > 12 * 1024 * 1024


def test_bad_download_options(cache_dir: Path, lxcpath: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BDEV_IMAGE_SERVER", raising=False)
    cases = [
        (["--dist", "busybox", "--release", "x"], "needs --server URL"),
        (["--dist", "busybox", "--release", "x", "--server", "ftp://h/"], "is not an http://, https:// or file:// URL"),
        (["--dist", "../x", "--release", "x", "--server", "http://127.0.0.1:9/"], "distribution '../x' is not valid"),
        (["--release", "x"], "missing option '-d' / '--dist'"),
        (["--dist", "busybox", "--release", "x", "--bogus"], "no such option '--bogus'"),
    ]
    for args, fragment in cases:
        with pytest.raises(BdevError) as caught:
            Container("c1", lxcpath).create("download", "dir", args=args)
        assert fragment in one_sentence(caught.value), caught.value
        assert not (lxcpath / "c1").exists()


# ---------------------------------------------------------------------------- the CLI


@ROOT
def test_image_cli_build_serve_list(tmp_path: Path, cache_dir: Path, lxcpath: Path) -> None:
    """``bdev image build`` then ``bdev image serve`` (a real process on loopback) then
    ``bdev image list`` and ``lxc-create -t download`` against it."""
    bdev = [sys.executable, "-m", "bdev.cli.main"]
    top = tmp_path / "images"
    built = subprocess.run([*bdev, "image", "build", str(top), "-t", "busybox", "--release", "cli",
                            "--compression", "xz"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert built.stdout.startswith("busybox;cli;")
    server = subprocess.Popen([*bdev, "image", "serve", str(top), "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        assert line.startswith(f"serving {top} at http://127.0.0.1:"), line
        url = line.split(" at ", 1)[1].strip().rstrip("/")
        listed = subprocess.run([*bdev, "image", "list", url, "--format", "json"], capture_output=True, text=True)
        assert listed.returncode == 0, listed.stderr
        assert '"release": "cli"' in listed.stdout
        created = subprocess.run([sys.executable, "-m", "bdev.cli.lxc.create", "-P", str(lxcpath), "-n", "c1",
                                  "-t", "download", "--", "-d", "busybox", "-r", "cli", "--server", url],
                                 capture_output=True, text=True)
        assert created.returncode == 0, created.stderr
        assert (lxcpath / "c1/rootfs/bin/busybox").is_file()
        missing = subprocess.run([*bdev, "image", "list", str(tmp_path / "nothing")], capture_output=True, text=True)
        assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr
    finally:
        server.terminate()
        server.wait(10)
        server.stderr.close()
