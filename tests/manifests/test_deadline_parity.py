"""fscas's codec against the real `deadline` package: equal bytes, equal hashes, equal verdicts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fscas.errors import ManifestError
from fscas.manifests import Manifest, ManifestPath, decode, encode, manifest_hash

from deadline.job_attachments.asset_manifests.decode import decode_manifest as dl_decode  # isort: skip
from deadline.job_attachments.asset_manifests.hash_algorithms import HashAlgorithm, hash_data  # isort: skip
from deadline.job_attachments.asset_manifests.v2023_03_03 import (  # isort: skip
    AssetManifest as DlManifest,
    ManifestPath as DlPath,
)

pytestmark = pytest.mark.deadline

# Any code point, lone surrogates included (undecodable POSIX names), astral and private-use
# characters that sort differently in UTF-16 and code-point order.
names = st.text(
    alphabet=st.one_of(
        st.characters(codec=None),
        st.sampled_from(["/", "\ue000", "\uffe5", "😀", "\U00010000", "\udcff", "é", "\u0301", "\x7f"]),
    ),
    min_size=1,
    max_size=24,
)
ints = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.integers(0, 2**40))
hashes = st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=40)
entries = st.builds(ManifestPath, path=names, hash=hashes, size=ints, mtime=ints)


def deadline_encode(m: Manifest) -> str:
    dl = DlManifest(
        hash_alg=HashAlgorithm.XXH128,
        paths=[DlPath(path=p.path, hash=p.hash, size=p.size, mtime=p.mtime) for p in m.paths],
        total_size=m.total_size,
    )
    return str(dl.encode())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries, min_size=1, max_size=30, unique_by=lambda p: p.path))
def test_encode_equals_deadline(paths: list[ManifestPath]) -> None:
    m = Manifest.from_paths(paths)
    ours = encode(m)
    theirs = deadline_encode(m).encode("utf-8")
    assert ours == theirs
    assert manifest_hash(ours) == hash_data(theirs, HashAlgorithm.XXH128)
    back = decode(ours)
    assert encode(back) == ours
    assert sorted(back.paths, key=lambda p: p.path) == sorted(m.paths, key=lambda p: p.path)


@settings(max_examples=150, deadline=None)
@given(st.lists(entries, min_size=1, max_size=10, unique_by=lambda p: p.path))
def test_encode_equals_stdlib_json_dumps(paths: list[ManifestPath]) -> None:
    m = Manifest.from_paths(paths)
    doc = {"hashAlg": "xxh128", "manifestVersion": "2023-03-03", "totalSize": m.total_size,
           "paths": [{"path": p.path, "hash": p.hash, "size": p.size, "mtime": p.mtime}
                     for p in sorted(m.paths, key=lambda p: p.path.encode("utf-16-be", "surrogatepass"))]}
    assert encode(m).decode() == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def verdict_deadline(text: str) -> str | None:
    try:
        m = dl_decode(text)
    except Exception:  # any exception type is a rejection; Deadline raises several
        return None
    return str(m.encode())


def verdict_fscas(text: str) -> str | None:
    try:
        m = decode(text)
    except ManifestError:
        return None
    return encode(m).decode()


VALID = {"hashAlg": "xxh128", "manifestVersion": "2023-03-03", "totalSize": 3,
         "paths": [{"path": "a", "hash": "abc", "size": 3, "mtime": 1}]}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=5)
    | st.sampled_from(["xxh128", "2023-03-03", "UNDEFINED", "ab-c", "abc", "", "é1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
top_fields = st.sampled_from(["hashAlg", "manifestVersion", "totalSize", "paths", "extra"])
path_fields = st.sampled_from(["path", "hash", "size", "mtime", "extra"])


@st.composite
def mutated(draw: Any) -> str:
    doc: dict[str, Any] = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["drop_top", "set_top", "drop_path", "set_path", "entry", "paths"]))
        entry = doc["paths"][0] if isinstance(doc.get("paths"), list) and doc["paths"] and isinstance(
            doc["paths"][0], dict) else None
        if kind == "drop_top":
            doc.pop(draw(top_fields), None)
        elif kind == "set_top":
            doc[draw(top_fields)] = draw(json_values)
        elif kind == "drop_path" and entry is not None:
            entry.pop(draw(path_fields), None)
        elif kind == "set_path" and entry is not None:
            entry[draw(path_fields)] = draw(json_values)
        elif kind == "entry" and isinstance(doc.get("paths"), list):
            doc["paths"].append(draw(json_values))
        elif kind == "paths":
            doc["paths"] = draw(st.sampled_from([[], {}, "x", None, [VALID["paths"][0]] * 2]))
    pretty = draw(st.booleans())
    return json.dumps(doc, indent=2 if pretty else None)


@settings(max_examples=600, deadline=None)
@given(mutated())
def test_decode_verdicts_equal_deadline(text: str) -> None:
    assert verdict_fscas(text) == verdict_deadline(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), json_values.map(json.dumps)))
def test_decode_garbage_verdicts_equal_deadline(text: str) -> None:
    assert verdict_fscas(text) == verdict_deadline(text)


@pytest.mark.parametrize("text", [
    '{"hashAlg":"xxh128","manifestVersion":"2023-03-03","totalSize":1,"paths":[{"path":"a","hash":"x","size":true,"mtime":1}]}',
    '{"hashAlg":"xxh128","manifestVersion":"2023-03-03","totalSize":99,"paths":[{"path":"../../etc/passwd","hash":"X","size":1,"mtime":-1,"z":0}]}',
    '{"hashAlg":"xxh128","manifestVersion":"2023-03-03","totalSize":1,"paths":[{"path":"a","hash":"x","size":1.0,"mtime":1}]}',
    '{"hashAlg":"xxh128","manifestVersion":"2023-03-03","totalSize":1,"paths":[{"path":"a","hash":"a-b","size":1,"mtime":1}]}',
    '{"hashAlg":"xxh128","manifestVersion":"2023-03-03","totalSize":1,"paths":["path hash size mtime"]}',
    '[1]', '"x"', '', '{', '{"manifestVersion":["2023-03-03"]}', '[' * 100000,
    '{"hashAlg":"xxh128","manifestVersion":"2023-03-03","totalSize":1,"paths":[{"path":"a","hash":"x","size":1,"mtime":' + "9" * 5000 + '}]}',
])
def test_decode_edge_cases_match_deadline(text: str) -> None:
    assert verdict_fscas(text) == verdict_deadline(text)


def test_decode_errors_name_field_and_path() -> None:
    bad = '{"hashAlg":"xxh128","manifestVersion":"2023-03-03","totalSize":1,"paths":[{"path":"dir/f.txt","hash":"x","size":"1","mtime":1}]}'
    with pytest.raises(ManifestError, match=r"paths\[0\]\.size.*dir/f\.txt"):
        decode(bad)
    with pytest.raises(ManifestError, match="not valid UTF-8"):
        decode(b"\xff\xfe")
    with pytest.raises(ValueError):  # ManifestError is a ValueError for callers that catch that
        decode(b"{")
