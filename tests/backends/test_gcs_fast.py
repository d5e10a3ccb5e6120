"""GCS's fast path (`gcs_http`): what it spares (gcsfs's imports), what keeps gcsfs, and that its
bytes and metadata are gcsfs's, against fake-gcs-server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fscas.backends.gcs import GCSBackend, GCSOptions
from fscas.conformance.plugin import unique_bucket
from fscas.errors import ObjectExists, ObjectNotFound
from fscas.runner import run_sync


def test_an_anonymous_push_and_pull_never_load_gcsfs_or_aiohttp(fake_gcs: Any, tmp_path: Path) -> None:
    # Importing gcsfs, aiohttp and google-auth costs 0.35 s: a third of a small pull.
    bucket = unique_bucket()
    fake_gcs.create_bucket(bucket)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_bytes(b"hello")
    (tmp_path / "src" / "big.bin").write_bytes(os.urandom(17 * 2**20))
    script = f"""
import sys, fscas
from fscas.manifests import snapshot
with fscas.open_store({fake_gcs.store_url(bucket, "r")!r}) as s:
    m = snapshot({str(tmp_path / "src")!r}, hash_cache=False)
    s.upload(m, {str(tmp_path / "src")!r})
    s.download(m, {str(tmp_path / "dst")!r})
    print(sorted(x for x in ("gcsfs", "aiohttp", "google.auth") if x in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **fake_gcs.env()})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert (tmp_path / "dst" / "big.bin").read_bytes() == (tmp_path / "src" / "big.bin").read_bytes()


@pytest.mark.parametrize("fast", [True, False])
def test_both_paths_carry_the_same_bytes_metadata_and_refusals(fake_gcs: Any, fast: bool) -> None:
    bucket = unique_bucket()
    fake_gcs.create_bucket(bucket)

    async def run() -> None:
        b = GCSBackend(bucket, "p", GCSOptions(endpoint_url=fake_gcs.endpoint, token="anon", fast_path=fast))
        try:
            await b.put("k/é x#?", b"payload", metadata={"asset-root": "/r"}, if_absent=True)
            with pytest.raises(ObjectExists):
                await b.put("k/é x#?", b"other", if_absent=True)
            assert (b._http is not None) is fast
            assert await b.get("k/é x#?") == b"payload"
            assert await b.get("k/é x#?", start=2, end=5) == b"ylo"
            info = await b.head("k/é x#?")
            assert (info.size, dict(info.metadata)) == (7, {"asset-root": "/r"})
            assert info.checksums.get("md5") == "321c3cf486ed509164edec1e1981fec8"
            async with b.stream("k/é x#?", start=3) as chunks:
                assert b"".join([c async for c in chunks]) == b"load"
            await b.delete("k/é x#?")
            await b.delete("k/é x#?")  # gone already: not an error
            with pytest.raises(ObjectNotFound):
                await b.head("k/é x#?")
        finally:
            await b.aclose()

    run_sync(run())

