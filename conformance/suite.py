"""The conformance checks: fscas's key layout and metadata contract, written once against the public
`AsyncStore`/`Backend` API and verified through raw reads (`RawBucket`) that bypass fscas.

Each check runs under its own random prefix below the store URL and deletes what it wrote, so the
suite can run against a shared real bucket. A capability the backend declares off is reported as
"not supported" with the reason, never as a pass.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import tempfile
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import attrs

import fscas
from fscas import errors, keys
from fscas.backends import Backend, Swappable, open_backend
from fscas.conformance.raw import RawBucket
from fscas.errors import FscasError, NotSupported

__all__ = ["CHECKS", "CheckResult", "Context", "Target", "describe", "open_target", "run_check", "run_suite",
           "unusable", "with_prefix"]


@attrs.frozen(kw_only=True)
class Context:
    """What a check gets: a store and raw access, both rooted at the check's own prefix."""

    url: Target
    options: dict[str, Any]
    store: fscas.AsyncStore
    raw: RawBucket
    work: Path

    @property
    def backend(self) -> Backend:
        return self.store.backend


@attrs.frozen(kw_only=True)
class CheckResult:
    """One check on one store URL."""

    url: str
    check: str
    status: Literal["pass", "fail", "not-supported"]
    detail: str = ""
    seconds: float = 0.0


Check = Callable[[Context], Awaitable[None]]
CHECKS: dict[str, Check] = {}


def check(fn: Check) -> Check:
    CHECKS[fn.__name__.removeprefix("check_")] = fn
    return fn


Target = str | tuple[Any, str]
"""What the suite runs on: a store URL, or an fsspec filesystem instance and the root of the store on it."""


def describe(target: Target) -> str:
    """A target as text: the URL, or `<FileSystemClass>:root`."""
    return target if isinstance(target, str) else f"{type(target[0]).__name__}:{target[1]}"


def open_target(target: Target, **options: Any) -> Backend:
    """The backend of a URL or of a filesystem instance."""
    if isinstance(target, str):
        return open_backend(target, **options)
    return open_backend(target[0], root=target[1], **options)


def with_prefix(url: Target, sub: str) -> Target:
    """`url` with `sub` appended to its key prefix (query string kept)."""
    if not isinstance(url, str):
        return url[0], f"{url[1].rstrip('/')}/{sub}"
    if "://" not in url:
        return os.path.join(url, sub)
    scheme, rest = url.split("://", 1)  # not urlunsplit: it drops the '//' of a URL with no host (memory://)
    path, sep, query = rest.partition("?")
    return f"{scheme}://{path.rstrip('/')}/{sub}{sep}{query}"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _crc32c(data: bytes) -> str:
    import google_crc32c  # comes with gcsfs, the only backend that claims crc32c

    return f"{google_crc32c.value(data):08x}"


_DIGESTS: dict[str, Callable[[bytes], str]] = {"md5": _md5, "sha256": lambda d: hashlib.sha256(d).hexdigest(),
                                               "crc32c": _crc32c}


async def _raw(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


@check
async def check_data_key_layout(ctx: Context) -> None:
    digest = await ctx.store.put_bytes(b"conformance: data key layout")
    assert digest == fscas.manifests.hash_bytes(b"conformance: data key layout")
    assert await _raw(ctx.raw.read, f"Data/{digest}.xxh128") == b"conformance: data key layout", \
        "content is not at Data/<xxh128>.xxh128"


@check
async def check_legacy_key_fallback(ctx: Context) -> None:
    data = b"conformance: written under the pre-suffix name"
    digest = fscas.manifests.hash_bytes(data)
    await _raw(ctx.raw.write, f"Data/{digest}", data)
    assert await ctx.store.get_bytes(digest) == data


async def _refused(write: Awaitable[Any], failure: str) -> None:
    """`write` must be refused with `ObjectExists` (a condition the server honoured); else `failure`."""
    try:
        await write
    except errors.ObjectExists:
        return
    raise AssertionError(failure)


def _small_tree(work: Path) -> Path:
    root = work / "tree"
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "a.txt").write_bytes(b"a")
    (root / "sub" / "b.txt").write_bytes(b"bb")
    return root


@check
async def check_input_manifest_key(ctx: Context) -> None:
    root = _small_tree(ctx.work)
    m = await asyncio.to_thread(fscas.snapshot, root, hash_cache=False)
    key, digest, _ = await ctx.store.push(m, root, farm_id="farm-c", queue_id="queue-c", source_root="/src/root")
    want = rf"Manifests/farm-c/queue-c/Inputs/[0-9a-f]{{32}}/{fscas.manifests.hash_bytes(b'/src/root')}_input"
    assert re.fullmatch(want, key), f"input manifest key {key!r} does not match {want}"
    raw = await _raw(ctx.raw.read, key)
    assert raw == fscas.encode(m) and fscas.manifest_hash(raw) == digest


async def _put_output(ctx: Context, root: str, fsl: str | None) -> str:
    m = fscas.Manifest.from_paths([fscas.ManifestPath(path="out.exr", hash=fscas.manifests.EMPTY_HASH, size=0,
                                                      mtime=1)])
    key = keys.output_manifest_key("farm-c", "queue-c", "job-c", "step-c", "task-c", "sessionaction-c",
                                   1700000050.25, root, fsl)
    await ctx.store.put_manifest(key, m, metadata=keys.output_metadata(root, fsl))
    return key


def _logical(ctx: Context, raw_meta: dict[str, str]) -> dict[str, str]:
    """Raw metadata names as fscas's logical names, checking the wire rule the backend declares."""
    if ctx.backend.capabilities.metadata_names == "identifier":
        assert all(n.isidentifier() for n in raw_meta), f"names on the wire are not identifiers: {sorted(raw_meta)}"
        return {n.lower().replace("_", "-"): v for n, v in raw_meta.items()}
    return {n.lower(): v for n, v in raw_meta.items()}


@check
async def check_output_manifest_ascii_root(ctx: Context) -> None:
    key = await _put_output(ctx, "/mnt/projects/shot_010", None)
    assert re.fullmatch(r"Manifests/farm-c/queue-c/job-c/step-c/task-c/2023-11-14T22:14:10\.250000Z_sessionaction-c/"
                        r"[0-9a-f]{32}_output", key), key
    meta = _logical(ctx, await _raw(ctx.raw.metadata, key))
    assert meta == {"asset-root": "/mnt/projects/shot_010"}, meta
    outs = await ctx.store.output_manifests("farm-c", "queue-c", "job-c")
    assert [o.asset_root for o in outs] == ["/mnt/projects/shot_010"]


@check
async def check_output_manifest_non_ascii_root(ctx: Context) -> None:
    root = "/mnt/projets/scène/日本"
    key = await _put_output(ctx, root, "ProjectFiles")
    meta = _logical(ctx, await _raw(ctx.raw.metadata, key))
    quoted = '"/mnt/projets/sc\\u00e8ne/\\u65e5\\u672c"'
    assert meta == {"asset-root": quoted, "asset-root-json": quoted, "file-system-location-name": "ProjectFiles"}, meta
    outs = await ctx.store.output_manifests("farm-c", "queue-c", "job-c")
    assert [o.asset_root for o in outs] == [root]


@check
async def check_empty_object(ctx: Context) -> None:
    digest = await ctx.store.put_bytes(b"")
    assert digest == fscas.manifests.EMPTY_HASH
    assert await _raw(ctx.raw.read, f"Data/{digest}.xxh128") == b""
    assert await ctx.store.get_bytes(digest) == b""
    assert (await ctx.backend.head(f"Data/{digest}.xxh128")).size == 0


@check
async def check_multipart_object(ctx: Context) -> None:
    part = getattr(getattr(ctx.backend, "options", None), "part_size", 16 * 2**20)
    path = ctx.work / "multipart.bin"
    block = os.urandom(2**20)
    with open(path, "wb") as f:
        for i in range((2 * part) // len(block) + 1):
            f.write(i.to_bytes(8, "little") + block[8:])
    digest = await ctx.store.put_file(path)
    data = path.read_bytes()
    stored = await _raw(ctx.raw.read, f"Data/{digest}.xxh128")
    assert len(stored) == len(data), f"stored length {len(stored)} != sent {len(data)}"
    assert stored == data
    out = ctx.work / "multipart.out"
    await ctx.store.get_file(digest, out)
    assert out.read_bytes() == data


@check
async def check_listing_1000_keys(ctx: Context) -> None:
    slots = asyncio.Semaphore(32)

    async def put(i: int) -> None:
        async with slots:
            await ctx.backend.put(f"many/{i:05d}", b"%d" % i)

    await asyncio.gather(*(put(i) for i in range(1001)))
    listed = [o.key async for o in ctx.backend.list("many/")]
    assert sorted(listed) == [f"many/{i:05d}" for i in range(1001)], f"listed {len(listed)} of 1001 keys"
    assert [o.key async for o in ctx.backend.list("many/0100")] == ["many/01000"], "prefix listing is not by key"


UNUSUAL_KEYS = ("odd/plus+sign", "odd/equals=sign==", "odd/space in name", "odd/unicode é 日本 😀",
                "odd/percent%2Fliteral", "odd/sub-delims!$&'()*,;@~", "odd/question?mark#hash", "odd/colon:semi;",
                "odd/a+b=c d/x")
"""Key names users' file names put into keys (publish, manifests): each must round-trip unchanged,
which on S3 also proves the request signing of such paths (a strict server refuses a bad signature)."""


@check
async def check_unusual_key_names(ctx: Context) -> None:
    refused: list[str] = []
    kept = []
    for i, key in enumerate(UNUSUAL_KEYS):
        try:
            await ctx.backend.put(key, b"%d" % i)
        except NotSupported as e:  # a backend may refuse a name it cannot carry, saying why
            refused.append(str(e).rsplit(": ", 1)[-1])
            continue
        kept.append(key)
        assert (await ctx.backend.head(key)).size == len(b"%d" % i), key
        assert await ctx.backend.get(key) == b"%d" % i, key
        assert await _raw(ctx.raw.read, key) == b"%d" % i, f"{key!r} is stored under another name"
    listed = sorted([o.key async for o in ctx.backend.list("odd/")])
    assert listed == sorted(kept), f"listing gave {listed}"
    for key in kept:
        await ctx.backend.delete(key)
    assert [o.key async for o in ctx.backend.list("odd/")] == []
    if refused:
        raise NotSupported(f"{len(kept)} of {len(UNUSUAL_KEYS)} names round-trip; refused: {'; '.join(set(refused))}")


@check
async def check_exists_many(ctx: Context) -> None:
    present = [await ctx.store.put_bytes(b"present %d" % i) for i in range(20)]
    absent = [fscas.manifests.hash_bytes(b"absent %d" % i) for i in range(20)]
    assert await ctx.store.missing(present + absent, use_cache=False) == set(absent)
    assert await ctx.store.missing(absent[:3] + present[:3], use_cache=False) == set(absent[:3])


@check
async def check_create_only(ctx: Context) -> None:
    if not ctx.backend.capabilities.create_only:
        raise NotSupported("the backend declares no create-only writes")
    await ctx.backend.put("Manifests/create-only", b"first", if_absent=True)
    await _refused(ctx.backend.put("Manifests/create-only", b"second", if_absent=True),
                   "a second create-only write succeeded: the server ignores If-None-Match")
    assert await _raw(ctx.raw.read, "Manifests/create-only") == b"first"


@check
async def check_create_only_race(ctx: Context) -> None:
    if not ctx.backend.capabilities.create_only:
        raise NotSupported("the backend declares no create-only writes")
    for attempt in range(3):  # several rounds: a race that is lost once in a while is still lost
        key = f"Manifests/race-{attempt}"

        async def write(i: int, key: str = key) -> bytes | None:
            try:
                await ctx.backend.put(key, b"writer %d" % i, if_absent=True)
            except errors.ObjectExists:
                return None
            return b"writer %d" % i

        won = [w for w in await asyncio.gather(*(write(i) for i in range(8))) if w is not None]
        assert len(won) == 1, f"{len(won)} of 8 concurrent create-only writes succeeded (round {attempt})"
        assert await _raw(ctx.raw.read, key) == won[0], "the stored bytes are not the winner's"


@check
async def check_compare_and_swap(ctx: Context) -> None:
    backend = ctx.backend
    if not isinstance(backend, Swappable):
        raise NotSupported("the backend has no compare-and-swap: the store epoch falls back to read-compare-write")
    key = "swap/fscas-epoch"
    first = await backend.put_tagged(key, b"one", tag=None)  # NotSupported: the server ignores the condition
    for stale, what in ((None, "a create-only swap over an existing object"), ("0" * 8, "a made-up tag")):
        await _refused(backend.put_tagged(key, b"wrong", tag=stale), f"{what} succeeded")
    second = await backend.put_tagged(key, b"two", tag=first)
    await _refused(backend.put_tagged(key, b"stale", tag=first),
                   "a swap from a tag read before the last write succeeded")
    assert await backend.get_tagged(key) == (b"two", second), "get_tagged does not give the last write and its tag"
    assert await _raw(ctx.raw.read, key) == b"two"
    await _refused(backend.put_tagged("swap/absent", b"x", tag=second),
                   "a swap of an absent object from a tag succeeded")

    async def racer(i: int) -> bool:
        try:
            await backend.put_tagged(key, b"racer %d" % i, tag=second)
        except errors.ObjectExists:
            return False
        return True

    won = sum(await asyncio.gather(*(racer(i) for i in range(8))))
    assert won == 1, f"{won} of 8 concurrent swaps from one tag succeeded"


@check
async def check_integrity_fields(ctx: Context) -> None:
    claimed = ctx.backend.capabilities.integrity
    if not claimed:
        raise NotSupported("the backend declares no server-side checksums")
    data = b"conformance: integrity fields " * 100
    digest = await ctx.store.put_bytes(data)
    info = await ctx.backend.head(f"Data/{digest}.xxh128")
    for algorithm in sorted(claimed):
        got = info.checksums.get(algorithm)
        assert got is not None, f"head() returned no {algorithm} though the backend claims it"
        assert got == _DIGESTS[algorithm](data), f"{algorithm} {got} does not match the bytes"


@check
async def check_wrong_hash_detected(ctx: Context) -> None:
    digest = fscas.manifests.hash_bytes(b"the real content")
    await _raw(ctx.raw.write, f"Data/{digest}.xxh128", b"something else!")
    try:
        await ctx.store.get_bytes(digest)
    except fscas.IntegrityError as e:
        assert f"Data/{digest}.xxh128" in str(e), f"the error does not name the key: {e}"
    else:
        raise AssertionError("bytes that do not match their name were returned")


@check
async def check_missing_key_error(ctx: Context) -> None:
    await ctx.backend.put("Data/present", b"x")  # a missing key in a store that exists
    for call in (ctx.backend.head, ctx.backend.get):
        try:
            await call("Data/absent")
        except fscas.ObjectNotFound as e:
            assert "Data/absent" in str(e), f"the error does not name the key: {e}"
        else:
            raise AssertionError("a missing key did not raise ObjectNotFound")


@check
async def check_missing_bucket_error(ctx: Context) -> None:
    if ctx.backend.capabilities.root == "folder":
        raise NotSupported("a folder store has no bucket to miss: its first write makes its folder")
    missing = f"fscas-missing-{uuid.uuid4().hex[:12]}"
    if isinstance(ctx.url, str):
        parts = urllib.parse.urlsplit(ctx.url)
        other: Target = urllib.parse.urlunsplit(parts._replace(netloc=missing, path=""))
    else:
        other = (ctx.url[0], missing)
    backend = open_target(other, **ctx.options)
    try:
        await backend.put("Data/x", b"x")
    except (fscas.ObjectNotFound, errors.AccessDenied) as e:
        _no_secret(ctx, str(e))
    else:
        raise AssertionError("a write to a missing bucket succeeded")
    finally:
        await backend.aclose()


def _no_secret(ctx: Context, message: str) -> None:
    for name, value in ctx.options.items():
        if isinstance(value, str) and len(value) >= 8 and name in ("secret", "key", "token", "account_key",
                                                                   "connection_string", "sas_token"):
            assert value not in message, f"the error message contains the {name} option"


@check
async def check_bad_credentials_error(ctx: Context) -> None:
    names = {"s3": ("secret", "fscas-wrong-secret-value"), "az": ("account_key", base64.b64encode(b"x" * 64).decode())}
    scheme = ctx.backend.url.split(":", 1)[0]
    if scheme not in names and "password" in ctx.options:  # the generic backend over a server with a login
        names[scheme] = ("password", "fscas-wrong-password")
    if not isinstance(ctx.url, str):
        raise NotSupported("a filesystem instance holds its own credentials")
    if scheme not in names:
        raise NotSupported(f"no credential to falsify for {scheme}:// here")
    name, wrong = names[scheme]
    options = {**ctx.options, name: wrong}
    if "connection_string" in options:
        cs = options.pop("connection_string")
        fields = dict(p.split("=", 1) for p in cs.split(";") if "=" in p)
        fields["AccountKey"] = wrong
        options["connection_string"] = ";".join(f"{k}={v}" for k, v in fields.items())
    backend = open_backend(str(ctx.url), **options)
    try:
        await backend.put("Data/bad-credentials", b"x")
    except errors.CredentialsRefused as e:
        assert wrong not in str(e), "the error message contains the credential"
    except errors.AccessDenied as e:
        raise AssertionError(f"a wrong credential is reported as a refused permission, not as bad credentials: {e}"
                             ) from e
    else:
        raise NotSupported("the server accepted a wrong credential (an emulator that does not check)")
    finally:
        await backend.aclose()


@check
async def check_unreachable_endpoint_error(ctx: Context) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    scheme = ctx.backend.url.split(":", 1)[0]
    if not isinstance(ctx.url, str):
        raise NotSupported("a filesystem instance: its endpoint is the caller's to choose")
    url, options = ctx.url, dict(ctx.options)
    parts = urllib.parse.urlsplit(url)
    if scheme in ("s3", "gs", "az"):
        options["endpoint_url"] = f"{dead}/devstoreaccount1" if scheme == "az" else dead
    elif parts.port is not None:  # a server named in the URL: the same URL with a port nobody listens on
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit(":", 1)[0].rsplit("@", 1)[0]
                                                     + ("@" if "@" in parts.netloc else "")
                                                     + dead.removeprefix("http://")))
    else:
        raise NotSupported(f"{scheme}:// names no endpoint to make unreachable")
    if "connection_string" in options:  # Azurite: the endpoint is a field of the connection string
        fields = dict(p.split("=", 1) for p in options.pop("connection_string").split(";") if "=" in p)
        fields["BlobEndpoint"] = options.pop("endpoint_url")
        options["connection_string"] = ";".join(f"{k}={v}" for k, v in fields.items())
    backend = open_backend(url, **options)
    try:
        await backend.head("Data/x")
    except errors.Unreachable as e:
        _no_secret(ctx, str(e))
    else:
        raise AssertionError("a dead endpoint answered")
    finally:
        await backend.aclose()


@check
async def check_delete_and_gc(ctx: Context) -> None:
    root = _small_tree(ctx.work)
    m = await asyncio.to_thread(fscas.snapshot, root, hash_cache=False)
    await ctx.store.push(m, root, farm_id="farm-c", queue_id="queue-c")
    orphan = await ctx.store.put_bytes(b"conformance: orphan")
    report = await ctx.store.gc(grace_seconds=0)
    assert report.unreferenced == (f"Data/{orphan}.xxh128",), report.unreferenced
    await ctx.store.gc(grace_seconds=0, delete=True)
    assert not await _raw(ctx.raw.exists, f"Data/{orphan}.xxh128")
    assert all([await _raw(ctx.raw.exists, f"Data/{p.hash}.xxh128") for p in m.paths])
    await ctx.backend.delete("Data/never-there")  # deleting an absent key is not an error


async def unusable(url: Target, options: dict[str, Any] | None = None) -> str | None:
    """Why the suite cannot run on `url` at all (a missing bucket, refused credentials, an endpoint
    that does not answer), in one line; None when it can. One listing of the store's root.

    Raises:
        ConfigError: the URL or an option is wrong (the caller's mistake, not the store's state).
    """
    backend = open_target(url, **(options or {}))
    try:
        async for _ in backend.list("fscas-conformance-"):
            break
    except errors.StoreError as e:
        return str(e).splitlines()[0]
    finally:
        await backend.aclose()
    return None


async def run_check(url: Target, name: str, options: dict[str, Any] | None = None, *,
                    wrap: Callable[[Backend], Backend] | None = None) -> CheckResult:
    """Run one check on a fresh prefix below `url`, then delete everything under that prefix.

    Args:
        wrap: put a wrapper between the store and the backend (raw reads still see the backend):
            how the suite's own tests prove it catches a broken backend.
    """
    options = dict(options or {})
    prefix_url = with_prefix(url, f"fscas-conformance-{uuid.uuid4().hex[:12]}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fscas-conformance-") as work:
        backend = open_target(prefix_url, **options)
        store = fscas.AsyncStore(wrap(backend) if wrap else backend, existence_cache=False, concurrency=16)
        raw = RawBucket(backend)
        ctx = Context(url=url, options=options, store=store, raw=raw, work=Path(work))
        try:
            await CHECKS[name](ctx)
            status: Literal["pass", "fail", "not-supported"] = "pass"
            detail = ""
        except NotSupported as e:
            status, detail = "not-supported", str(e)
        except (AssertionError, FscasError, OSError, ValueError) as e:
            status, detail = "fail", f"{type(e).__name__}: {e}" if str(e) else traceback.format_exc(limit=3)
        finally:
            await _clean(store.backend)
            await store.aclose()
            del ctx
            await asyncio.to_thread(raw.close)  # in a thread with no loop running: see RawBucket.close
    return CheckResult(url=describe(url), check=name, status=status, detail=detail,
                       seconds=time.monotonic() - started)


async def _clean(backend: Backend) -> None:
    try:
        found = [o.key async for o in backend.list("")]
        slots = asyncio.Semaphore(32)

        async def rm(key: str) -> None:
            async with slots:
                await backend.delete(key)

        await asyncio.gather(*(rm(k) for k in found))
    except FscasError:
        pass  # a check that broke the store must still report; leftovers stay under its own prefix


async def run_suite(url: Target, options: dict[str, Any] | None = None, checks: list[str] | None = None, *,
                    wrap: Callable[[Backend], Backend] | None = None) -> list[CheckResult]:
    """Every check (or the named ones) on `url`, one after another."""
    return [await run_check(url, name, options, wrap=wrap) for name in (checks or list(CHECKS))]
