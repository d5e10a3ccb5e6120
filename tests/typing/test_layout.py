"""The layout contract: imports flow one way, the public API stays small, nothing squats names."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fscas

REPO = Path(__file__).resolve().parents[2]
FOLDERS = {"fscas.manifests": "manifests", "fscas.backends": "backends", "fscas.conformance": "conformance"}
ALLOWED = {"fscas.manifests": {"fscas.errors"}, "fscas.backends": {"fscas.errors"},
           "fscas.conformance": {"fscas", "fscas.backends", "fscas.errors"}}


def fscas_imports_of(package: str) -> Iterator[tuple[str, str]]:
    for py in sorted((REPO / FOLDERS[package]).rglob("*.py")):
        for node in ast.walk(ast.parse(py.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            yield from ((str(py.relative_to(REPO)), t) for t in targets if t.split(".")[0] in ("fscas", "cas"))


def test_imports_flow_one_way() -> None:
    for package, allowed in ALLOWED.items():
        for module, target in fscas_imports_of(package):
            assert target.startswith(package) or target in allowed, f"{module} -> {target}"


PUBLIC = ["AsyncStore", "ConfigError", "CopySummary", "FscasError", "GcReport", "IntegrityError", "Manifest", "ManifestDiff",
          "ManifestError", "ManifestPath", "ObjectNotFound", "PublishedResult", "SnapshotError", "Store", "StoreError",
          "TransferSummary", "UnsafePathError", "aggregate_outputs", "copy", "decode", "diff", "diff_tree", "encode", "fetch",
          "manifest_hash", "merge", "open_async_store", "open_store", "publish", "snapshot"]


def test_public_api_is_pinned() -> None:
    # The API fits on one screen; a name added or removed is a decision, made here on purpose.
    assert sorted(fscas.__all__) == sorted(PUBLIC)
    for name in fscas.__all__:
        assert getattr(fscas, name).__doc__, f"fscas.{name} has no docstring"


def test_no_generic_top_level_modules(tmp_path: Path) -> None:
    # A fresh interpreter outside the checkout: only the installed distribution is visible.
    code = ("import importlib.util as u, fscas; "
            "print([n for n in ('cas', 'backends', 'manifests', 'conformance') if u.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_manifests_imports_no_cloud_sdk() -> None:
    heavy = {"s3fs", "gcsfs", "adlfs", "boto3", "botocore", "aiobotocore", "azure", "google"}
    for _, target in fscas_imports_of("fscas.manifests"):
        assert target.split(".")[0] not in heavy


def test_every_cited_document_is_in_the_repository() -> None:
    import re

    cited = set()
    for folder in ("cas", "backends", "manifests", "conformance"):
        for py in (REPO / folder).rglob("*.py"):
            cited |= {(py.name, m) for m in re.findall(r"\b((?:docs/)?reference/[\w.-]+\.md)", py.read_text())}
    assert cited, "the sources cite the reference documents"
    missing = sorted((name, doc) for name, doc in cited if not (REPO / doc).is_file())
    assert not missing, f"cited but not in the repository: {missing}"


def test_store_mirrors_async_store() -> None:
    """`Store` is `AsyncStore` blocking: every public method of one is on the other (but the closers)."""
    public = {n for n in dir(fscas.AsyncStore) if not n.startswith("_")} - {"aclose"}
    blocking = {n for n in dir(fscas.Store) if not n.startswith("_")} - {"close"}
    assert public - blocking == set(), "AsyncStore methods without a blocking twin"
    assert blocking - public == set(), "Store methods AsyncStore lacks"
