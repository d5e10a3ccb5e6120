"""The vectors produced by the real Deadline library (tests/vectors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from vectors.regenerate import data_of, pattern_bytes, recompute

from fscas.manifests import decode, encode, hash_bytes, hash_path, manifest_hash, merge


@pytest.mark.deadline
def test_vectors_agree_with_the_installed_deadline(vectors: dict[str, Any]) -> None:
    # The copy kept in the repository is what the real library computes today, field for field.
    assert recompute(vectors) == vectors


def test_manifest_vectors_roundtrip_byte_for_byte(vectors: dict[str, Any]) -> None:
    for v in vectors["manifests"]["vectors"]:
        data = v["encoded"].encode("utf-8")
        assert data.hex() == v["encoded_utf8_hex"], v["name"]
        m = decode(data)
        assert encode(m) == data, v["name"]
        assert manifest_hash(encode(m)) == v["manifest_hash"], v["name"]
        assert [p.path for p in decode(encode(m)).paths] == v["paths_in_encoded_order"]
        assert m.total_size == v["totalSize"]


def test_merge_vector_later_wins(vectors: dict[str, Any]) -> None:
    (v,) = [v for v in vectors["manifests"]["vectors"] if v["name"] == "m6_merge_last_wins"]
    merged = merge(*(decode(s) for s in v["inputs"]))
    assert encode(merged).decode() == v["encoded"]
    assert manifest_hash(encode(merged)) == v["manifest_hash"]


def test_hash_data_vectors(vectors: dict[str, Any]) -> None:
    for v in vectors["xxh128"]["hash_data"]:
        data = data_of(v)
        assert len(data) == v["length"]
        assert hash_bytes(data) == v["hash_data_hexdigest"], v["name"]


def test_hash_file_vectors_across_read_boundaries(vectors: dict[str, Any], tmp_path: Path) -> None:
    for v in vectors["xxh128"]["hash_file"]:
        f = tmp_path / v["name"]
        f.write_bytes(pattern_bytes(v["length"]))
        d = hash_path(f)
        assert (d.hash, d.size) == (v["hash_file_hexdigest"], v["length"]), v["name"]


def test_large_file_streamed_hash_equals_whole_hash(tmp_path: Path) -> None:
    data = pattern_bytes(3 * (1 << 20) + 12345)  # several 1 MiB reads plus a tail
    f = tmp_path / "big"
    f.write_bytes(data)
    assert hash_path(f).hash == hash_bytes(data)
