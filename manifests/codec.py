"""Canonical codec for manifest version 2023-03-03, byte-identical to Deadline's encoder.

docs/reference/deadline-job-attachments.md §1.2–§1.4 and §1.7: Deadline writes
`json.dumps(asdict(m), sort_keys=True, separators=(",", ":"), ensure_ascii=True)` with the paths
sorted by UTF-16-BE code units (surrogatepass), and decodes with `json.loads` plus a validator.
The encoder below writes the same bytes without building a million dicts; the property tests
compare it with `json.dumps` and with the real `deadline` package.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

import xxhash

from fscas.errors import ManifestError
from fscas.manifests.model import HASH_ALG, MANIFEST_VERSION, Manifest, ManifestPath

__all__ = ["canonical_order", "decode", "encode", "manifest_hash", "sort_key"]

_quote: Any = encode_basestring_ascii  # the C function json.dumps(ensure_ascii=True) uses
#: download.py `alphanum_regex`: ASCII letters and digits, full match; length and case unchecked.
_HASH_RE = re.compile("[a-zA-Z0-9]+")
_REQUIRED = ("hashAlg", "paths", "manifestVersion", "totalSize")
_PATH_REQUIRED = ("path", "hash", "size", "mtime")


def sort_key(path: str) -> bytes:
    """Deadline's path order: UTF-16-BE code units, lone surrogates passed through (§1.3)."""
    return path.encode("utf-16-be", "surrogatepass")


def canonical_order(paths: Sequence[ManifestPath]) -> list[ManifestPath]:
    """Return `paths` in the order `encode` writes them (stable for duplicate paths)."""
    # For ASCII paths UTF-16 code-unit order is plain string order: skip encoding every path.
    if "".join(map(_path_of, paths)).isascii():
        return sorted(paths, key=_path_of)
    return sorted(paths, key=lambda p: sort_key(p.path))


_path_of = operator.attrgetter("path")


def _int(value: object, field: str, path: str | None) -> str:
    # json.dumps writes bool as true/false; Deadline's validator lets bools through (§1.2 item 5).
    if type(value) is int:
        return int.__repr__(value)
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    where = f" for path {path!r}" if path is not None else ""
    raise ManifestError(f"{field} must be an integer{where}, got {type(value).__name__}")


def _str(value: object, field: str, path: str | None) -> str:
    if isinstance(value, str):
        return str(_quote(value))
    where = f" for path {path!r}" if path is not None else ""
    raise ManifestError(f"{field} must be a string{where}, got {type(value).__name__}")


def encode(manifest: Manifest) -> bytes:
    """Encode `manifest` to its canonical bytes (ASCII JSON, no whitespace, no newline).

    Raises:
        ManifestError: the manifest has no paths, or a field has a type the format cannot hold.
    """
    if not manifest.paths:
        raise ManifestError("paths must have at least one item: Deadline cannot read an empty manifest")
    head = ('{"hashAlg":' + _str(manifest.hash_alg, "hashAlg", None)
            + ',"manifestVersion":' + _str(manifest.version, "manifestVersion", None) + ',"paths":[')
    tail = '],"totalSize":' + _int(manifest.total_size, "totalSize", None) + "}"
    ordered = canonical_order(manifest.paths)
    # Encoded a block of paths at a time: a million entries as one list of str, one joined str and
    # its bytes held ~3.5x the output at once; blocks of bytes and their join hold ~2x.
    blocks = [head.encode("ascii")]
    try:
        for i in range(0, len(ordered), _BLOCK):
            text = ",".join([
                f'{{"hash":{_quote(p.hash)},"mtime":{_fast_int(p.mtime)},"path":{_quote(p.path)},'
                f'"size":{_fast_int(p.size)}}}'
                for p in ordered[i : i + _BLOCK]
            ])
            blocks.append(text.encode("ascii") if i == 0 else b"," + text.encode("ascii"))
    except TypeError:  # a wrong type somewhere: find it and name it
        for p in manifest.paths:
            _str(p.path, "path", None), _str(p.hash, "hash", p.path)
            _int(p.size, "size", p.path), _int(p.mtime, "mtime", p.path)
        raise
    blocks.append(tail.encode("ascii"))
    return b"".join(blocks)


_BLOCK = 4096


def _fast_int(value: object) -> str:
    if type(value) is int:
        return int.__repr__(value)
    if isinstance(value, int):
        return _int(value, "", None)
    raise TypeError(value)


def manifest_hash(data: bytes) -> str:
    """xxh3_128 of encoded manifest bytes, as Deadline names and records manifests (§1.4)."""
    return xxhash.xxh3_128_hexdigest(data)


def _load(data: bytes | str) -> Any:
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ManifestError(f"manifest is not valid UTF-8 at byte {e.start}") from e
    elif isinstance(data, str):
        text = data
    else:
        raise ManifestError(f"manifest must be bytes or str, got {type(data).__name__}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ManifestError(f"manifest is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    except (ValueError, RecursionError) as e:  # int digit limit, nesting too deep
        raise ManifestError(f"manifest is not valid JSON: {e}") from e


def _check_top(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise ManifestError(f"manifest must be a JSON object, got {type(doc).__name__}")
    if "manifestVersion" not in doc:
        raise ManifestError('manifest is missing the required field "manifestVersion"')
    version = doc["manifestVersion"]
    if not isinstance(version, str) or version != MANIFEST_VERSION:
        raise ManifestError(f"manifestVersion: unknown manifest version {version!r} (supported: 2023-03-03)")
    missing = [f for f in _REQUIRED if f not in doc]
    if missing:
        raise ManifestError(f"manifest is missing required field(s) {missing}")
    if not isinstance(doc["hashAlg"], str) or doc["hashAlg"] != HASH_ALG:
        raise ManifestError(f"hashAlg must be 'xxh128', got {doc['hashAlg']!r}")
    if not isinstance(doc["totalSize"], int):
        raise ManifestError(f"totalSize must be an integer, got {type(doc['totalSize']).__name__}")
    if not isinstance(doc["paths"], list):
        raise ManifestError(f"paths must be a list, got {type(doc['paths']).__name__}")
    if not doc["paths"]:
        raise ManifestError("paths must have at least one item")


def _entry(obj: Any, index: int) -> ManifestPath:
    if not isinstance(obj, dict):
        raise ManifestError(f"paths[{index}] must be an object, got {type(obj).__name__}")
    missing = [f for f in _PATH_REQUIRED if f not in obj]
    if missing:
        raise ManifestError(f"paths[{index}] is missing required field(s) {missing}")
    path, digest, size, mtime = obj["path"], obj["hash"], obj["size"], obj["mtime"]
    if not isinstance(path, str):
        raise ManifestError(f"paths[{index}].path must be a string, got {type(path).__name__}")
    if not isinstance(digest, str):
        raise ManifestError(f"paths[{index}].hash must be a string for path {path!r}")
    if not isinstance(size, int):
        raise ManifestError(f"paths[{index}].size must be an integer for path {path!r}")
    if not isinstance(mtime, int):
        raise ManifestError(f"paths[{index}].mtime must be an integer for path {path!r}")
    if _HASH_RE.fullmatch(digest) is None:
        raise ManifestError(f"paths[{index}].hash {digest!r} for path {path!r} is not alphanumeric")
    return ManifestPath(path, digest, size, mtime)


def decode(data: bytes | str) -> Manifest:
    """Decode manifest bytes, accepting exactly what Deadline's `decode_manifest` accepts.

    Unknown fields, any key order and whitespace, a `totalSize` that does not match, duplicate
    and unsafe paths are all accepted (§1.7); operations that touch a disk refuse unsafe paths.

    Raises:
        ManifestError: the bytes are not a valid 2023-03-03 manifest; the message names the field.
    """
    doc = _load(data)
    _check_top(doc)
    paths = tuple(_entry(obj, i) for i, obj in enumerate(doc["paths"]))
    return Manifest(paths=paths, total_size=doc["totalSize"])
