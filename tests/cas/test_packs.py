"""The content cache's packs: small objects appended, read back verified, shared, evicted whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import xxhash

import fscas
import fscas.packs
from fscas.content import ContentCache
from fscas.packs import PACKED_MAX, Packs
from fscas.runner import run_sync


def _obj(i: int, size: int = 1000) -> tuple[str, bytes]:
    data = (b"%08d" % i) * (size // 8)
    return xxhash.xxh3_128_hexdigest(data), data


def test_a_packed_object_reads_back_and_other_processes_see_it(tmp_path: Path) -> None:
    mine, theirs = Packs(tmp_path / "packs"), Packs(tmp_path / "packs")  # two processes sharing a cache
    assert theirs.get(*_obj(0)[:1], 1000) is None  # nothing yet (and the empty folder is no error)
    objects = [_obj(i) for i in range(50)]
    for digest, data in objects:
        mine.put(digest, data)
    mine.put(*objects[0])  # already packed: not appended again
    assert all(mine.get(d, len(data)) == data for d, data in objects)
    theirs._scanned = float("-inf")  # its last look was long enough ago
    assert all(theirs.get(d, len(data)) == data for d, data in objects)
    assert theirs.get(objects[0][0], 999) is None  # the size is part of the lookup
    assert theirs.digests() == {d for d, _ in objects}
    assert [p.name.endswith(".pack") for p in (tmp_path / "packs").iterdir()].count(True) == 1
    assert mine.units() == [] and len(theirs.units()) == 1  # the pack being written is never evicted by its writer
    assert sum(p.stat().st_size for p in (tmp_path / "packs").glob("*.idx")) == 32 * 50  # one entry each


def test_torn_or_altered_pack_bytes_read_as_a_miss(tmp_path: Path) -> None:
    packs = Packs(tmp_path / "packs")
    (d0, b0), (d1, b1) = _obj(0), _obj(1)
    packs.put(d0, b0)
    packs.put(d1, b1)
    pack = next((tmp_path / "packs").glob("*.pack"))
    index = pack.with_suffix(".idx")
    pack.chmod(0o644)
    with open(pack, "r+b") as f:  # one flipped byte in the first object
        f.seek(10)
        f.write(b"\xff")
    with open(index.with_name("other.idx"), "wb") as f:  # a crash mid-append: a torn entry
        f.write(index.read_bytes()[:40])
    other = Packs(tmp_path / "packs")
    assert other.get(d0, len(b0)) is None and packs.get(d0, len(b0)) is None  # never served
    assert other.get(d1, len(b1)) == b1  # the whole entry after it still counts
    with open(pack, "ab") as f:
        f.write(b"x" * 10)
    os.truncate(pack, 1500)  # cut short: the second object is gone too
    assert Packs(tmp_path / "packs").get(d1, len(b1)) is None


def test_the_cache_evicts_whole_packs_and_keeps_the_one_being_written(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fscas.packs, "_PACK_SIZE", 10_000)  # a pack per ten 1,000-byte objects
    with fscas.open_store(str(tmp_path / "store")) as store:
        objects = [_obj(i) for i in range(45)]
        for _, data in objects:
            store.put_bytes(data)
        backend = store.aio.backend
        cache = ContentCache(tmp_path / "cache", max_bytes=25_000)

        async def read_all() -> list[bytes]:
            return [await cache.fetch_bytes(backend, d, len(data)) for d, data in objects]

        assert run_sync(read_all()) == [data for _, data in objects]
        packs = sorted((tmp_path / "cache" / "packs").glob("*.pack"), key=lambda p: p.stat().st_mtime)
        assert 2 <= len(packs) <= 3 and sum(p.stat().st_size for p in packs) <= 25_000  # within budget
        assert cache.get_bytes(objects[-1][0], 1000) == objects[-1][1]  # the newest: in the pack being written
        assert cache.get_bytes(objects[0][0], 1000) is None  # the oldest pack went whole
        kept = cache.digests()
        assert kept == {d for d, _ in objects[len(objects) - len(kept):]}  # what stays is the newest
        assert run_sync(cache.fetch_bytes(backend, objects[0][0], 1000)) == objects[0][1]  # fetched again
        with pytest.raises(ValueError, match="over the"):
            run_sync(cache.fetch_bytes(backend, objects[0][0], PACKED_MAX + 1))
        cache.clear()
        assert cache.digests() == set() and not list((tmp_path / "cache" / "packs").iterdir())
        assert run_sync(cache.fetch_bytes(backend, objects[1][0], 1000)) == objects[1][1]  # a new pack after


def test_a_corrupt_or_missing_object_never_enters_a_pack(tmp_path: Path) -> None:
    with fscas.open_store(str(tmp_path / "store")) as store:
        digest, data = _obj(7)
        store.put_bytes(data)
        obj = next(p for p in (tmp_path / "store" / "Data").rglob("*") if p.is_file())
        obj.chmod(0o644)
        obj.write_bytes(bytes(b ^ 1 for b in data))
        cache = ContentCache(tmp_path / "cache")
        with pytest.raises(fscas.IntegrityError, match=digest):
            run_sync(cache.fetch_bytes(store.aio.backend, digest, len(data)))
        with pytest.raises(fscas.ObjectNotFound):
            run_sync(cache.fetch_bytes(store.aio.backend, _obj(8)[0], 1000))
        assert cache.digests() == set()


def test_a_pickled_cache_opens_the_same_folder_with_packs_of_its_own(tmp_path: Path) -> None:
    import pickle

    cache = ContentCache(tmp_path / "cache", max_bytes=123_456)
    digest, data = _obj(3)
    cache.packs.put(digest, data)
    other = pickle.loads(pickle.dumps(cache))  # a Dask worker's copy
    assert other.max_bytes == 123_456 and other.get_bytes(digest, len(data)) == data
    other.packs.put(*_obj(4))
    assert len(list((tmp_path / "cache" / "packs").glob("*.pack"))) == 2  # one writer per pack


def test_a_failed_append_keeps_nothing_and_the_bytes_are_still_served(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with fscas.open_store(str(tmp_path / "store")) as store:
        objects = [_obj(i, 5000) for i in range(3)]
        for _, data in objects:
            store.put_bytes(data)
        cache = ContentCache(tmp_path / "cache")
        backend = store.aio.backend
        assert run_sync(cache.fetch_bytes(backend, objects[0][0], 5000)) == objects[0][1]
        real_write = os.write

        def disk_full(fd: int, data: bytes) -> int:  # half the bytes go down, then the disk is full
            if len(data) > 100:
                real_write(fd, bytes(data)[:len(data) // 2])
                raise OSError(28, "No space left on device")
            return real_write(fd, data)

        monkeypatch.setattr(fscas.packs.os, "write", disk_full)
        assert run_sync(cache.fetch_bytes(backend, objects[1][0], 5000)) == objects[1][1]  # served all the same
        monkeypatch.setattr(fscas.packs.os, "write", real_write)
        assert cache.get_bytes(objects[1][0], 5000) is None  # not kept
        assert run_sync(cache.fetch_bytes(backend, objects[2][0], 5000)) == objects[2][1]
        fresh = ContentCache(tmp_path / "cache")  # another process: the torn pack's bytes are never served
        assert {d for d, _ in objects if fresh.get_bytes(d, 5000) is not None} == {objects[0][0], objects[2][0]}
        assert len(list(cache.packs.folder.glob("*.pack"))) == 2  # the torn pack took no more appends


def test_a_reader_of_many_packs_keeps_few_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fscas.packs, "_KEPT_OPEN", 2)
    objects = [_obj(i) for i in range(6)]
    for digest, data in objects:  # six sessions, a pack each
        writer = Packs(tmp_path / "packs")
        writer.put(digest, data)
        writer._close_writing()
    reader = Packs(tmp_path / "packs")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        assert [reader.get(d, len(data)) for d, data in objects] == [data for _, data in objects]
    assert len(reader._fds) == 2 and len(os.listdir("/proc/self/fd")) - before == 2  # the rest opened per read


def test_a_packs_folder_that_cannot_be_used_is_a_miss_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "packs").write_bytes(b"a file where the folder should be")
    packs = Packs(tmp_path / "packs")
    digest, data = _obj(1)
    assert packs.get(digest, len(data)) is None and packs.put(digest, data) is False
    assert packs.digests() == set() and packs.units() == []


def test_a_small_object_cached_as_a_file_is_read_from_it_not_fetched_again(tmp_path: Path) -> None:
    with fscas.open_store(str(tmp_path / "store")) as store:
        digest, data = _obj(5)
        store.put_bytes(data)
        cache = ContentCache(tmp_path / "cache")
        run_sync(cache.fetch(store.aio.backend, digest, len(data)))  # as a file, by fscas:// or a large-file path
        for obj in (tmp_path / "store" / "Data").rglob("*"):
            if obj.is_file():
                obj.unlink()  # the store no longer has it: only the cache can answer
        assert run_sync(cache.fetch_bytes(store.aio.backend, digest, len(data))) == data
        assert cache.packs.digests() == set()  # answered from the file, not packed again
