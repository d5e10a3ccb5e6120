"""The vectors produced by the real Deadline library (../shared/vectors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fscas.manifests import decode, encode, hash_bytes, hash_path, manifest_hash, merge


def pattern_bytes(n: int) -> bytes:
    """The generator behind the vectors' `pattern_bytes(length)` files."""
    return bytes((i * 31 + 7) % 256 for i in range(n))


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
        if v.get("input_hex") is not None:
            data = bytes.fromhex(v["input_hex"])
        elif v["name"].startswith("zeros"):
            data = bytes(v["length"])
        else:
            data = pattern_bytes(v["length"])
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
