"""Hostile and bad input: manifests, archives' cousins, corrupted stores, fuzzed parsers, secrets."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fscas
from fscas.errors import ConfigError, FscasError, IntegrityError, ManifestError, UnsafePathError
from fscas.manifests import EMPTY_HASH, decode, hash_bytes
from fscas.results.publisher import parse_publish_url, render_key
from fscas.runner import run_sync


def _m(*entries: tuple[str, str, int]) -> fscas.Manifest:
    return fscas.Manifest.from_paths([fscas.ManifestPath(path=p, hash=h, size=s, mtime=0) for p, h, s in entries])


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = fscas.open_store(str(tmp_path / "store"), existence_cache=False)
    s.put_bytes(b"x")
    yield s
    s.close()


X = hash_bytes(b"x")


@pytest.mark.parametrize("bad", ["../escape", "/abs/path", "a/../../b", "back\\slash", "nul\x00byte", "", "a//b",
                                 "./a", "a/."])
def test_unsafe_paths_are_refused_before_anything_is_written(store: Any, tmp_path: Path, bad: str,
                                                             record: Any) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(UnsafePathError):
        store.download(_m(("ok.txt", X, 1), (bad, X, 1)), dest)
    assert not dest.exists() or list(dest.iterdir()) == []
    assert not (tmp_path / "escape").exists()
    record(f"download refuses path {bad!r}", faults=1, runs=1, failures=1, lost=0)


def test_duplicates_and_file_folder_clashes(store: Any, tmp_path: Path) -> None:
    for m in (_m(("a", X, 1), ("a", X, 1)), _m(("a", X, 1), ("a/b", X, 1)), _m(("a/b", X, 1), ("a", X, 1))):
        with pytest.raises(UnsafePathError):
            store.download(m, tmp_path / "dest")
    assert not (tmp_path / "dest").exists() or list((tmp_path / "dest").iterdir()) == []


def test_symlink_in_dest_is_not_followed(store: Any, tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "sub").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside the destination"):
        store.download(_m(("sub/x", X, 1)), dest)
    assert list(outside.iterdir()) == []
    (dest / "file").symlink_to(outside / "target")  # a link at the final name is replaced, not followed
    store.download(_m(("file", X, 1)), dest, conflict="overwrite")
    assert not (outside / "target").exists() and (dest / "file").read_bytes() == b"x"


def test_size_and_hash_mismatch_name_the_key(store: Any, tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match=f"Data/{X}.xxh128"):
        store.download(_m(("a", X, 2)), tmp_path / "d1")
    y = hash_bytes(b"y")
    run_sync(store.aio.backend.put(f"Data/{y}.xxh128", b"z"))  # right size, wrong bytes
    with pytest.raises(IntegrityError, match=f"Data/{y}.xxh128"):
        store.download(_m(("a", y, 1)), tmp_path / "d2")
    with pytest.raises(fscas.ObjectNotFound):
        store.download(_m(("a", hash_bytes(b"absent"), 1)), tmp_path / "d3")
    assert not [p for p in (tmp_path / "d1").rglob("*") if p.is_file()]


def test_a_million_entries_with_one_bad_path_fail_fast(store: Any, tmp_path: Path) -> None:
    entries = [fscas.ManifestPath(path=f"d{i // 1000}/f{i}", hash=X, size=1, mtime=0) for i in range(999_999)]
    entries.append(fscas.ManifestPath(path="../evil", hash=X, size=1, mtime=0))
    with pytest.raises(UnsafePathError, match="evil"):
        store.download(fscas.Manifest.from_paths(entries), tmp_path / "dest")
    assert not (tmp_path / "dest").exists() or list((tmp_path / "dest").iterdir()) == []


def test_deep_paths_and_undecodable_names_download(store: Any, tmp_path: Path) -> None:
    deep = "/".join(["d"] * 100) + "/leaf"
    odd = "bad\udcffname.bin"  # a POSIX name that is not UTF-8, as snapshot reports it
    store.put_bytes(b"")
    store.download(_m((deep, X, 1), (odd, X, 1), ("empty", EMPTY_HASH, 0)), tmp_path / "dest")
    assert (tmp_path / "dest" / deep).read_bytes() == b"x"
    assert os.listdir(os.fsencode(tmp_path / "dest")).count(b"bad\xffname.bin") == 1


def test_corrupted_store_is_reported_by_verify(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with fscas.open_store(str(root), existence_cache=False) as s:
        good, trunc, swapped = (s.put_bytes(d) for d in (b"good" * 100, b"trunc" * 100, b"swap" * 100))
    (root / "Data" / f"{trunc}.xxh128").write_bytes(b"trunc" * 50)
    (root / "Data" / f"{swapped}.xxh128").write_bytes(b"SWAP" * 100)
    manifest = _m(("g", good, 400), ("t", trunc, 500), ("s", swapped, 400), ("m", hash_bytes(b"gone"), 4))
    (tmp_path / "m").write_bytes(fscas.encode(manifest))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "c")}
    r = subprocess.run([sys.executable, "-m", "fscas", "verify", str(tmp_path / "m"), "--store", str(root), "--json"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["missing"] == [hash_bytes(b"gone")]
    assert len(out["corrupt"]) == 2 and all(("Data/" in c) for c in out["corrupt"])
    assert {trunc, swapped} == {c.split("Data/")[1][:32] for c in out["corrupt"]}


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                              lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                              max_leaves=20).map(lambda o: json.dumps(o).encode())))
def test_decoder_raises_only_fscas_errors(data: bytes) -> None:
    with contextlib.suppress(ManifestError):
        decode(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120), st.booleans())
def test_publish_url_and_key_parsers_raise_only_fscas_errors(text: str, compress: bool) -> None:
    try:
        parse_publish_url(text)
        parse_publish_url("s3://" + text)
        render_key(text, compress=compress, job_id="j", execution_id="e", node_id="n")
        fscas.backends.parse_url(text)
    except FscasError:
        pass


SECRET = "fscas-secret-never-printed-7f3a"


def test_secrets_never_appear(moto_server: Any, azurite: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    s3 = fscas.open_store(f"s3://nobucket-{os.getpid()}?endpoint_url={moto_server.endpoint}", key="AKIAFSCASKEY",
                          secret=SECRET, existence_cache=False)
    seen += [repr(s3), s3.url, repr(s3.aio.backend), repr(s3.aio.backend.options)]
    with pytest.raises(FscasError) as e:
        s3.put_bytes(b"x")
    seen.append(str(e.value))
    s3.close()
    cs = azurite.connection_string.replace(azurite.connection_string.split("AccountKey=")[1].split(";")[0],
                                           "ZnNjYXMtd3Jvbmcta2V5" * 4)
    az = fscas.open_store(azurite.store_url("nocontainer"), connection_string=cs, existence_cache=False)
    seen += [repr(az), az.url, repr(az.aio.backend.options)]
    with pytest.raises(FscasError) as e:
        az.put_bytes(b"x")
    seen.append(str(e.value))
    az.close()
    env = {**os.environ, **moto_server.env(), "AWS_SECRET_ACCESS_KEY": SECRET, "XDG_CACHE_HOME": str(tmp_path)}
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"f")
    r = subprocess.run([sys.executable, "-m", "fscas", "push", str(tmp_path / "src"), "--json", "--store",
                        f"s3://nobucket?endpoint_url={moto_server.endpoint}"], capture_output=True, text=True, env=env)
    seen += [r.stdout, r.stderr]
    seen += [rec.getMessage() for rec in caplog.records]
    for text in seen:
        assert SECRET not in text and "ZnNjYXMtd3Jvbmcta2V5" not in text
    assert r.returncode == 1 and "bucket does not exist" in r.stderr


def test_bad_option_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="secret_key"):
        fscas.open_store("s3://bucket", secret_key="x")
