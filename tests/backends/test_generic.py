"""The generic fsspec backend: the whole conformance suite over real SFTP, WebDAV and FTP servers, over
s3fs, memory and local filesystem instances, and `backend="fsspec"` on a native scheme."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import fsspec
import pytest

from fscas.backends.generic_info import close_fs
from fscas.conformance.plugin import unique_bucket
from fscas.conformance.suite import Target
from fscas.conformance.testing import BackendSuite


def _folder(server: Any) -> tuple[Target, dict[str, Any]]:
    bucket = unique_bucket()
    server.create_bucket(bucket)
    return server.store_url(bucket, "shared/prefix"), server.options()


class TestSftp(BackendSuite):
    @pytest.fixture
    def store_target(self, sftp_server: Any) -> tuple[Target, dict[str, Any]]:
        return _folder(sftp_server)


class TestWebdav(BackendSuite):
    @pytest.fixture
    def store_target(self, webdav_server: Any) -> tuple[Target, dict[str, Any]]:
        return _folder(webdav_server)


class TestFtp(BackendSuite):
    @pytest.fixture
    def store_target(self, ftp_server: Any) -> tuple[Target, dict[str, Any]]:
        return _folder(ftp_server)


class TestS3fsInstance(BackendSuite):
    """An s3fs instance the user configured, on moto: used as given, through the generic backend."""

    @pytest.fixture
    def store_target(self, moto_server: Any) -> tuple[Target, dict[str, Any]]:
        import s3fs

        bucket = unique_bucket()
        moto_server.create_bucket(bucket)
        fs = s3fs.S3FileSystem(key=moto_server.access_key, secret=moto_server.secret_key, skip_instance_cache=True,
                               endpoint_url=moto_server.endpoint, client_kwargs={"region_name": "us-east-1"})
        return (fs, f"{bucket}/root"), {}


class TestMemoryInstance(BackendSuite):
    @pytest.fixture
    def store_target(self) -> tuple[Target, dict[str, Any]]:
        return (fsspec.filesystem("memory"), f"/{unique_bucket()}"), {}


class TestLocalInstance(BackendSuite):
    @pytest.fixture
    def store_target(self, tmp_path: Path) -> tuple[Target, dict[str, Any]]:
        return (fsspec.filesystem("file"), str(tmp_path / "store")), {}


class TestS3ForcedGeneric(BackendSuite):
    """`backend="fsspec"` sends s3:// through the generic backend (s3fs made from the URL's options)."""

    @pytest.fixture
    def store_target(self, seaweedfs: Any) -> tuple[Target, dict[str, Any]]:
        bucket = unique_bucket()
        seaweedfs.create_bucket(bucket)
        return seaweedfs.store_url(bucket, "p"), {"backend": "fsspec", **seaweedfs.options()}


def _instance(kind: str, server: Any) -> Any:
    if kind == "sftp":
        import sshfs

        return sshfs.SSHFileSystem("127.0.0.1", port=server.port, username=server.user, password=server.password,
                                   known_hosts=str(server.known_hosts), skip_instance_cache=True)
    if kind == "webdav":
        from webdav4.fsspec import WebdavFileSystem

        return WebdavFileSystem(base_url=server.endpoint, auth=(server.user, server.password), skip_instance_cache=True)
    from fsspec.implementations.ftp import FTPFileSystem

    return FTPFileSystem("127.0.0.1", port=server.port, username=server.user, password=server.password,
                         skip_instance_cache=True)


@pytest.mark.parametrize("kind", ["sftp", "webdav", "ftp"])
def test_open_store_on_a_filesystem_the_user_made(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    import fscas
    from fscas.manifests import snapshot

    server = request.getfixturevalue(f"{kind}_server")
    bucket = unique_bucket()
    server.create_bucket(bucket)
    fs = _instance(kind, server)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"a" * 1000)
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    m = snapshot(src, hash_cache=False)
    try:
        with fscas.open_store(fs, root=f"/{bucket}/store", existence_cache=False) as store:
            assert "password" not in repr(store) and server.password not in store.url
            key, _, summary = store.push(m, src, farm_id="f", queue_id="q")
            assert summary.files == 2
            store.download(store.get_manifest(key), tmp_path / "dst")
        assert (tmp_path / "dst" / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 100
        assert fs.cat_file(f"/{bucket}/store/Data/{m.by_path()['a.txt'].hash}.xxh128") == b"a" * 1000
        assert (server.root / bucket / "store" / key).is_file()  # on the server's disk, where it should be
    finally:  # the user's filesystem is the user's to close (sshfs's own finalizer picks any running loop)
        asyncio.run(close_fs(fs))


@pytest.mark.parametrize("kind", ["local", "sftp"])
def test_a_put_whose_sidecar_fails_lands_nothing(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The object and its metadata sidecar are written at once; when the sidecar fails, `put` raises
    and the object's write is stopped, not left to land a moment later without its metadata while
    the caller's loop goes on."""
    from fscas.backends import open_backend
    from fscas.errors import StoreError

    if kind == "local":
        folder = tmp_path / "store"
        backend: Any = open_backend(fsspec.filesystem("file"), root=str(folder))
    else:
        server = request.getfixturevalue("sftp_server")
        bucket = unique_bucket()
        server.create_bucket(bucket)
        folder = server.root / bucket / "store"
        backend = open_backend(server.store_url(bucket, "store"), **server.options())
    folder.mkdir(parents=True)
    (folder / ".fscas-meta").write_text("a file where the sidecars' folder should be")

    async def put_then_go_on() -> None:
        try:
            with pytest.raises(StoreError, match="Manifests/m"):
                await backend.put("Manifests/m", b"x" * 20_000_000, metadata={"k": "v"})
            for _ in range(30):  # the old code's orphaned write landed within 0.5 s
                assert not (folder / "Manifests" / "m").exists(), "the object landed after put raised"
                await asyncio.sleep(0.05)
        finally:
            await backend.aclose()

    asyncio.run(put_then_go_on())


def test_a_cancelled_ftp_write_leaves_the_pool_sound(ftp_server: Any) -> None:
    """A thread cannot be stopped: the FTP connection a cancelled put was writing on goes back to the
    pool only once that thread is done, never to a second caller while the write still runs on it
    (two threads on one control connection read each other's replies and break it for good)."""
    import os

    from fscas.backends import open_backend

    bucket = unique_bucket()
    ftp_server.create_bucket(bucket)
    backend = open_backend(ftp_server.store_url(bucket, "store"), **ftp_server.options())
    small = {f"k/{i}": os.urandom(1000 + i) for i in range(24)}

    async def cancel_puts_then_read() -> list[str]:
        wrong = []
        try:
            for k, v in small.items():
                await backend.put(k, v)
            for n in range(6):
                big = asyncio.ensure_future(backend.put(f"big/{n}", os.urandom(20_000_000)))
                await asyncio.sleep(0.02 + 0.01 * n)  # cancelled mid-write
                big.cancel()
                read = await asyncio.gather(*(backend.get(k) for k in small), return_exceptions=True)
                wrong += [f"{k}: {r!r}"[:160] for (k, v), r in zip(small.items(), read, strict=True) if r != v]
        finally:
            await backend.aclose()
        return wrong

    wrong = asyncio.run(cancel_puts_then_read())
    assert not wrong, f"{len(wrong)} reads failed after cancelled writes: {wrong[:3]}"


def test_a_cancelled_streamed_put_on_an_object_store_leaves_no_upload(seaweedfs: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """s3fs through the generic backend: a streamed put cancelled mid-write aborts its multipart upload
    once the part in flight is done (not beside it), and the discarded file is not closed again later."""
    import gc
    import os
    import sys

    from fscas.backends import open_backend

    bucket = unique_bucket()
    seaweedfs.create_bucket(bucket)
    backend = open_backend(seaweedfs.store_url(bucket, "p"), backend="fsspec", **seaweedfs.options())
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    async def body() -> Any:
        for _ in range(40):
            yield os.urandom(2 << 20)
            await asyncio.sleep(0)

    async def cancel_puts() -> None:
        try:
            for n in range(8):
                put = asyncio.ensure_future(backend.put(f"big/{n}", body()))
                await asyncio.sleep(0.05 + 0.02 * n)  # mid-write: the body is 80 MiB
                put.cancel()
                with contextlib.suppress(BaseException):
                    await put
        finally:
            await backend.aclose()

    asyncio.run(cancel_puts())
    gc.collect()
    client = seaweedfs._client()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert not unraisable, [f"{u.exc_type.__name__}: {u.exc_value} in {u.object}" for u in unraisable[:3]]
