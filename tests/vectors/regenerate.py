"""Recompute the Deadline test vectors with the real `deadline` package, and check or rewrite them.

    python tests/vectors/regenerate.py            # check: exit 1 if the installed deadline disagrees
    python tests/vectors/regenerate.py --write    # rewrite the derived fields from the installed deadline

The inputs (each manifest's paths, merge inputs, byte strings, file lengths) are kept; every derived
field (encoded bytes, their hex, manifest hash, path order, xxh128 digests) comes from Deadline's own
`decode_manifest`, `encode`, `merge_asset_manifests`, `hash_data` and `hash_file`.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def pattern_bytes(n: int) -> bytes:
    """The generator behind the vectors' `pattern_bytes(length)` files."""
    return bytes((i * 31 + 7) % 256 for i in range(n))


def data_of(v: dict[str, Any]) -> bytes:
    """The input bytes of one `hash_data` vector."""
    if v.get("input_hex") is not None:
        return bytes.fromhex(v["input_hex"])
    return bytes(v["length"]) if v["name"].startswith("zeros") else pattern_bytes(v["length"])


def recompute(vectors: dict[str, Any]) -> dict[str, Any]:
    """The vectors with every derived field recomputed by the installed `deadline` package."""
    from deadline.job_attachments.asset_manifests.decode import decode_manifest
    from deadline.job_attachments.asset_manifests.hash_algorithms import HashAlgorithm, hash_data, hash_file
    from deadline.job_attachments.download import merge_asset_manifests

    out = copy.deepcopy(vectors)
    for v in out["manifests"]["vectors"]:
        if "inputs" in v:
            manifest = merge_asset_manifests([decode_manifest(s) for s in v["inputs"]])
        else:
            manifest = decode_manifest(v["encoded"])
        text = manifest.encode()
        v["encoded"], v["encoded_utf8_hex"] = text, text.encode("utf-8").hex()
        v["encoded_length_bytes"] = len(text.encode("utf-8"))
        v["manifest_hash"] = hash_data(text.encode("utf-8"), HashAlgorithm.XXH128)
        v["paths_in_encoded_order"] = [p.path for p in manifest.paths]
        v["totalSize"] = manifest.totalSize
    for v in out["xxh128"]["hash_data"]:
        v["hash_data_hexdigest"] = hash_data(data_of(v), HashAlgorithm.XXH128)
    with tempfile.TemporaryDirectory() as folder:
        for v in out["xxh128"]["hash_file"]:
            path = Path(folder, v["name"])
            path.write_bytes(pattern_bytes(v["length"]))
            v["hash_file_hexdigest"] = hash_file(str(path), HashAlgorithm.XXH128)
    return out


def load() -> dict[str, Any]:
    """The vectors kept in this folder: {"manifests": ..., "xxh128": ...}."""
    return {name: json.loads((HERE / f"{name}.json").read_text()) for name in ("manifests", "xxh128")}


def main(argv: list[str]) -> int:
    stored = load()
    fresh = recompute(stored)
    if "--write" in argv:
        for name, value in fresh.items():
            (HERE / f"{name}.json").write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n")
        return 0
    if fresh != stored:
        print("the installed deadline package disagrees with tests/vectors", file=sys.stderr)
        return 1
    print("tests/vectors agree with the installed deadline package")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
