"""What a re-upload costs in requests: when nothing changed, the HEADs of the existence cache's sample
and nothing else; one object and one manifest written when one file changed (the gc-epoch protocol
adds reads, never writes)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from stores import counted_calls

import fscas
from fscas.commit import SAMPLE
from fscas.conformance.plugin import unique_bucket
from fscas.existence import ExistenceCache


def test_reupload_costs(moto_server: Any, tmp_path: Path) -> None:
    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i}.txt").write_bytes(f"content {i}".encode() * 50)
    cache = ExistenceCache(tmp_path / "existence.db")

    async def go() -> tuple[Counter[str], Counter[str]]:
        url = moto_server.store_url(bucket, "root")
        async with fscas.open_async_store(url, existence_cache=cache, **moto_server.options()) as store:
            m = fscas.snapshot(src, hash_cache=False)
            await store.push(m, src, farm_id="f", queue_id="q")
            calls = counted_calls(store)
            summary = await store.upload(m, src)
            assert summary.files == 0 and summary.skipped_files == 40
            unchanged = calls.copy()
            (src / "f7.txt").write_bytes(b"changed")
            _, _, pushed = await store.push(fscas.snapshot(src, hash_cache=False), src, farm_id="f", queue_id="q")
            assert pushed.files == 1
        return unchanged, calls - unchanged

    unchanged, changed = asyncio.run(go())
    assert unchanged == Counter({"head Data": SAMPLE}), unchanged  # the cache's word, checked on a sample
    writes = {k: v for k, v in changed.items() if k.startswith(("put", "delete"))}
    assert writes == {"put Data": 1, "put Manifests": 1}, changed
