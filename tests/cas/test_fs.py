"""`fscas://`: a stored snapshot as a read-only, verified fsspec filesystem."""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import pytest
from fsspec.tests.abstract import AbstractFixtures, AbstractGetTests

import fscas
from fscas.content import ContentCache
from fscas.fs import FscasFileSystem
from fscas.manifests import snapshot
from fscas.runner import run_sync


def _push(store: fscas.Store, root: Path) -> str:
    key, _, _ = store.push(snapshot(root, hash_cache=False), root, farm_id="f", queue_id="q")
    return key


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha", "empty": b"", "dir/b.bin": os.urandom(100_000),
             "dir/deep/big.bin": os.urandom(9 * 2**20 + 7), "scène/ファイル.txt": b"non-ASCII"}
    for rel, data in files.items():
        (tmp_path / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / rel).write_bytes(data)
    return files


@pytest.fixture(params=["file", "moto"])
def snapshot_fs(request: pytest.FixtureRequest, tree: dict[str, bytes], tmp_path: Path) -> Iterator[FscasFileSystem]:
    from stores import store_url_for

    url, options = store_url_for(request.param, request, tmp_path)
    with fscas.open_store(url, **options) as store:
        key = _push(store, tmp_path / "src")
    fs = FscasFileSystem(url, key, cache=ContentCache(tmp_path / "cache"), skip_instance_cache=True, **options)
    yield fs
    fs.store.close()


def test_tree_listing_and_info(snapshot_fs: FscasFileSystem, tree: dict[str, bytes]) -> None:
    fs = snapshot_fs
    assert sorted(fs.find("")) == sorted(tree)
    assert fs.ls("", detail=False) == ["a.txt", "dir", "empty", "scène"]
    assert fs.ls("dir", detail=False) == ["dir/b.bin", "dir/deep"]
    info = fs.info("dir/b.bin")
    assert info["type"] == "file" and info["size"] == 100_000 and len(info["hash"]) == 32
    assert fs.info("dir")["type"] == "directory" and fs.isdir("dir/deep") and not fs.exists("nope")
    with pytest.raises(FileNotFoundError):
        fs.info("nope")
    import stat  # the type bits as fsspec's local filesystem gives them: read-only files and folders
    assert info["mode"] == stat.S_IFREG | 0o444 and fs.info("dir")["mode"] == stat.S_IFDIR | 0o555


def test_reads_whole_ranged_and_seeking(snapshot_fs: FscasFileSystem, tree: dict[str, bytes]) -> None:
    fs = snapshot_fs
    for rel, data in tree.items():
        assert fs.cat_file(rel) == data
    big = tree["dir/deep/big.bin"]
    assert fs.cat_file("dir/deep/big.bin", start=5_000_000, end=5_000_100) == big[5_000_000:5_000_100]
    assert fs.cat_file("dir/deep/big.bin", start=-10) == big[-10:]
    with fs.open("dir/deep/big.bin", "rb") as f:
        f.seek(8 * 2**20)
        assert f.read(1000) == big[8 * 2**20:8 * 2**20 + 1000]
    with fs.open("dir/b.bin") as f:
        f.seek(99_990)
        assert f.read() == tree["dir/b.bin"][99_990:]
    with fs.open("fscas://scène/ファイル.txt", "rt", encoding="utf-8") as t:
        assert t.read() == "non-ASCII"


def test_writes_are_refused(snapshot_fs: FscasFileSystem) -> None:
    for call in (lambda: snapshot_fs.pipe_file("new", b"x"), lambda: snapshot_fs.rm_file("a.txt"),
                 lambda: snapshot_fs.open("a.txt", "wb"), lambda: snapshot_fs.mkdir("d"),
                 lambda: snapshot_fs.mv("a.txt", "b.txt")):
        with pytest.raises(fscas.errors.NotSupported, match="read-only"):
            call()
    assert snapshot_fs.cat_file("a.txt") == b"alpha"


def test_a_corrupted_object_never_returns_wrong_bytes(tree: dict[str, bytes], tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    with fscas.open_store(str(store_dir)) as store:
        key = _push(store, tmp_path / "src")
        m = store.get_manifest(key)
    for p in m.paths:
        if p.size:  # same length, other bytes: only the hash can tell
            obj = store_dir / "Data" / f"{p.hash}.xxh128"
            obj.chmod(0o644)
            obj.write_bytes(bytes(b ^ 0x5A for b in obj.read_bytes()))
    cache = ContentCache(tmp_path / "cache")
    fs = FscasFileSystem(str(store_dir), key, cache=cache, skip_instance_cache=True)
    for rel in ("a.txt", "dir/b.bin", "dir/deep/big.bin"):
        with pytest.raises(fscas.IntegrityError):
            fs.cat_file(rel)
        with pytest.raises(fscas.IntegrityError):
            fs.cat_file(rel, start=1, end=3)
    assert not list(cache.path.rglob("*")) or all(p.is_dir() for p in cache.path.rglob("*"))  # nothing cached


def test_manifest_from_a_local_file_and_fsspec_url(tree: dict[str, bytes], tmp_path: Path) -> None:
    with fscas.open_store(str(tmp_path / "store")) as store:
        key = _push(store, tmp_path / "src")
        (tmp_path / "m.json").write_bytes(fscas.encode(store.get_manifest(key)))
    options = {"store": str(tmp_path / "store"), "manifest": str(tmp_path / "m.json"),
               "cache": ContentCache(tmp_path / "cache")}
    with fsspec.open("fscas://dir/b.bin", "rb", **options) as f:
        assert f.read() == tree["dir/b.bin"]
    fs, path = fsspec.core.url_to_fs("fscas://dir/deep", **options)
    assert isinstance(fs, FscasFileSystem) and fs.ls(path, detail=False) == ["dir/deep/big.bin"]


def test_the_content_cache_is_shared_and_bounded(tree: dict[str, bytes], tmp_path: Path) -> None:
    with fscas.open_store(str(tmp_path / "store")) as store:
        key = _push(store, tmp_path / "src")
    cache = ContentCache(tmp_path / "cache", max_bytes=2 * 2**20)
    fs = FscasFileSystem(str(tmp_path / "store"), key, cache=cache, skip_instance_cache=True)
    local = Path(fs.local_path("dir/deep/big.bin"))
    assert local.read_bytes() == tree["dir/deep/big.bin"] and local.stat().st_mode & 0o222 == 0  # read-only
    other = FscasFileSystem(str(tmp_path / "store"), key, cache=ContentCache(tmp_path / "cache"),
                            skip_instance_cache=True)
    assert other.local_path("dir/deep/big.bin") == str(local)  # a second reader finds it in place
    fs.local_path("dir/b.bin")  # over budget: the least recently used object goes
    assert not local.exists() and cache.get(fs.info("dir/b.bin")["hash"], 100_000) is not None
    shutil.rmtree(cache.path)  # emptied by hand, folders and all, under a live cache: it makes them again
    assert Path(fs.local_path("a.txt")).read_bytes() == tree["a.txt"]


def test_ecosystem_reads_fscas_urls(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd
    import zarr

    src = tmp_path / "src"
    src.mkdir()
    pd.DataFrame({"frame": [1, 2, 3], "ms": [41.5, 40.2, 44.0]}).to_csv(src / "timings.csv", index=False)
    z = zarr.open_array(str(src / "depth.zarr"), mode="w", shape=(64, 64), chunks=(16, 16), dtype="f4")
    z[:] = np.arange(64 * 64, dtype="f4").reshape(64, 64)
    with fscas.open_store(str(tmp_path / "store")) as store:
        key = _push(store, src)
    options = {"store": str(tmp_path / "store"), "manifest": key, "cache": ContentCache(tmp_path / "cache")}
    df = pd.read_csv("fscas://timings.csv", storage_options=options)
    assert list(df["frame"]) == [1, 2, 3] and df["ms"].sum() == pytest.approx(125.7)
    arr = zarr.open_array("fscas://depth.zarr", mode="r", storage_options=options)
    assert arr.shape == (64, 64) and float(arr[10, 20]) == 10 * 64 + 20


class TestFsspecGetAbstract(AbstractFixtures, AbstractGetTests):
    """fsspec's own `get` checks (copying out of a filesystem), on a snapshot that holds their scenarios."""

    SCENARIOS: ClassVar[dict[str, str]] = {"s0": "_bulk_operations_scenario_0", "glob": "_glob_edge_cases_files",
                 "prefix": "_dir_and_file_with_same_name_prefix", "hashed": "_10_files_with_hashed_names"}

    @pytest.fixture(scope="class")
    @classmethod
    def fs(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FscasFileSystem]:
        # A class-scoped fixture on the class (pytest 9 deprecates one on an instance); fsspec's
        # scenario builders are instance methods, so one instance makes them.
        src = tmp_path_factory.mktemp("scenarios")
        local = fsspec.filesystem("file", auto_mkdir=True)
        builder = cls()
        for name, make in cls.SCENARIOS.items():
            getattr(builder, make)(local, os.path.join, str(src / name))
        store = tmp_path_factory.mktemp("store")
        with fscas.open_store(str(store)) as s:
            key = _push(s, src)
        fs = FscasFileSystem(str(store), key, cache=ContentCache(tmp_path_factory.mktemp("cache")),
                             skip_instance_cache=True)
        yield fs
        fs.store.close()

    @pytest.fixture
    def fs_join(self) -> Any:
        return posixpath.join  # the tests join local targets with it too: a leading '/' must stay

    @pytest.fixture
    def fs_path(self) -> str:
        return ""

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return False

    @pytest.fixture
    def fs_bulk_operations_scenario_0(self) -> str:
        return "s0/source"

    @pytest.fixture
    def fs_glob_edge_cases_files(self) -> str:
        return "glob/source"

    @pytest.fixture
    def fs_dir_and_file_with_same_name_prefix(self) -> str:
        return "prefix/source"

    @pytest.fixture
    def fs_10_files_with_hashed_names(self) -> str:
        return "hashed/source"

    @pytest.fixture
    def local_fs(self) -> Any:
        return fsspec.filesystem("file")

    @pytest.fixture
    def local_join(self) -> Any:
        return os.path.join

    @pytest.fixture
    def local_path(self, tmp_path: Path) -> str:
        return str(tmp_path) + os.sep

    @pytest.mark.xfail(strict=True, raises=fscas.errors.NotSupported,
                       reason="the test writes to the filesystem under test (mkdir, touch): fscas:// is read-only")
    def test_get_directory_recursive(self, fs: Any, fs_join: Any, fs_path: Any, local_fs: Any, local_join: Any,
                                     local_target: Any) -> None:
        super().test_get_directory_recursive(fs, fs_join, fs_path, local_fs, local_join, local_target)


def test_hashed_scenario_bytes_are_the_snapshot_bytes(tmp_path: Path) -> None:
    # the scenario files fsspec's get checks copy out really come from verified store objects
    src = tmp_path / "src"
    for i in range(3):
        (src / "s").mkdir(parents=True, exist_ok=True)
        (src / "s" / f"{hashlib.md5(str(i).encode()).hexdigest()}.txt").write_bytes(str(i).encode())
    with fscas.open_store(str(tmp_path / "store")) as store:
        key = _push(store, src)
    fs = FscasFileSystem(str(tmp_path / "store"), key, cache=ContentCache(tmp_path / "c"), skip_instance_cache=True)
    fs.get("s/", str(tmp_path / "out") + "/", recursive=True)
    assert sorted(p.read_bytes() for p in (tmp_path / "out").rglob("*.txt")) == [b"0", b"1", b"2"]
    assert run_sync(fs.store.aio.verify([fs.manifest])).ok
