"""Habits users bring from aws, rclone, deadline and fsspec (issue: `fscas://` and the CLI as they
expect them): a positional store, aws-style flags, store keys wherever a manifest is taken,
--dry-run, honest counters, JSON masked by structure, one-line errors for ordinary mistakes."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import fsspec
import pytest

import fscas
from fscas.cli import main
from fscas.errors import ConfigError


def _tree(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"line1\nline2\nline3\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(3000))


def _run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def pushed(tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, str]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src, store = tmp_path / "src", str(tmp_path / "store")
    _tree(src)
    rc, out, err = _run(capsys, "push", str(src), "--store", store, "--json")
    assert rc == 0, err
    return src, store, json.loads(out)["key"]


def test_ls_takes_the_store_as_its_argument_and_refuses_two(pushed: tuple[Path, str, str], capsys: Any) -> None:
    _, store, key = pushed
    rc, out, _ = _run(capsys, "ls", store, "--json")
    assert rc == 0 and [o["key"] for o in json.loads(out)["objects"]] == [key]
    rc, _, err = _run(capsys, "ls", store, "--store", store + "-other")
    assert rc == 2 and "two stores given" in err


def test_manifest_commands_and_verify_take_a_store_key(pushed: tuple[Path, str, str], capsys: Any) -> None:
    src, store, key = pushed
    rc, out, _ = _run(capsys, "manifest", "show", key, "--store", store, "--json")
    assert rc == 0 and sorted(p["path"] for p in json.loads(out)["paths"]) == ["a.txt", "sub/b.bin"]
    (src / "new.txt").write_bytes(b"n")
    rc, out, _ = _run(capsys, "manifest", "diff", str(src), key, "--store", store, "--exact", "--no-cache",
                      "--json")
    assert rc == 0 and json.loads(out) == {"new": ["new.txt"], "modified": [], "deleted": []}
    rc, out, _ = _run(capsys, "verify", key, "--store", store, "--json")
    assert rc == 0 and json.loads(out)["checked"] == 2


def test_dry_run_writes_nothing_and_says_what_would_move(pushed: tuple[Path, str, str], tmp_path: Path,
                                                        capsys: Any) -> None:
    src, store, key = pushed
    (src / "c.txt").write_bytes(b"three bytes more")
    before = sorted(p.relative_to(store) for p in Path(store).rglob("*"))
    rc, out, _ = _run(capsys, "push", str(src), "--store", store, "--dry-run", "--json")
    found = json.loads(out)
    assert rc == 0 and found["dry_run"] and (found["files"], found["bytes"]) == (1, 16)
    assert sorted(p.relative_to(store) for p in Path(store).rglob("*")) == before
    rc, out, _ = _run(capsys, "pull", key, str(tmp_path / "dest"), "--store", store, "--dry-run", "--json")
    assert rc == 0 and json.loads(out)["files"] == 2 and not (tmp_path / "dest").exists()
    rc, out, _ = _run(capsys, "gc", "--store", store, "--delete", "--dry-run", "--grace", "0", "--json")
    assert rc == 0 and json.loads(out)["deleted"] is False


def test_gc_counts_what_the_grace_period_kept(pushed: tuple[Path, str, str], capsys: Any) -> None:
    _, store, _ = pushed
    with fscas.open_store(store) as s:
        s.put_bytes(b"nobody names this")
    rc, out, _ = _run(capsys, "gc", "--store", store, "--json")
    report = json.loads(out)
    assert rc == 0 and report["unreferenced"] == [] and report["kept_for_grace"] == 1
    rc, _, err = _run(capsys, "gc", "--store", store)
    assert "1 unreferenced objects younger than --grace 86400 s kept" in err
    assert "default 86400" in " ".join(build_help("gc").split())


def build_help(command: str) -> str:
    from fscas.cli import build_parser

    parser = build_parser(command)
    sub = next(a for a in parser._actions if hasattr(a, "choices") and a.choices and command in a.choices)
    return str(sub.choices[command].format_help())


def test_task_id_without_step_id_is_refused(pushed: tuple[Path, str, str], capsys: Any) -> None:
    _, store, _ = pushed
    rc, _, err = _run(capsys, "outputs", "download", "--farm-id", "f", "--queue-id", "q", "--job-id", "j",
                      "--task-id", "t", "--store", store)
    assert rc == 2 and "--task-id needs --step-id" in err


def test_json_is_masked_by_structure_not_by_every_occurrence(tmp_path: Path, capsys: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret that is also a common word (`fscas`) leaves keys and names alone; a credential in a
    URL's slot is still masked."""
    from fscas.cli.output import emit_json, set_secrets

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fscas")
    src = tmp_path / "src"
    _tree(src)
    m = tmp_path / "fscas.manifest"
    rc, _, err = _run(capsys, "manifest", "snapshot", str(src), "-o", str(m))
    assert rc == 0, err
    rc, out, _ = _run(capsys, "manifest", "upload", str(m), "--prefix", "mp", "--store", str(tmp_path / "st"),
                      "--json")
    assert rc == 0 and json.loads(out)["key"] == "Manifests/mp/fscas.manifest"
    set_secrets({"fscas"})
    emit_json({"store": "s3://fscas-demo/root?secret=fscas", "key": "Manifests/fscas.manifest"})
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"store": "s3://fscas-demo/root?secret=***", "key": "Manifests/fscas.manifest"}


def test_ordinary_mistakes_are_one_line_not_internal_errors(pushed: tuple[Path, str, str], tmp_path: Path,
                                                            capsys: Any) -> None:
    _, store, key = pushed
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").write_bytes(b"a file where the manifest has a folder")
    rc, _, err = _run(capsys, "pull", key, str(dest), "--store", store)
    assert rc in (1, 2) and err.startswith("fscas: error:") and "internal" not in err and "sub" in err, err
    (dest / "sub").unlink()
    (dest / "a.txt").mkdir()  # a folder where the manifest has a file
    rc, _, err = _run(capsys, "pull", key, str(dest), "--store", store, "--conflict", "overwrite")
    assert rc in (1, 2) and err.startswith("fscas: error:") and "internal" not in err and "a.txt" in err, err


def test_a_missing_protocol_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """As without the sftp extra: fsspec's own SFTP wants paramiko, and its import fails."""
    import sys

    registry = sys.modules["fsspec.registry"]  # `fsspec.registry` the attribute is a read-only view
    monkeypatch.setitem(registry.known_implementations, "sftp", {"class": "fscas_nowhere.SFTP",
                                                                 "err": 'SFTPFileSystem requires "paramiko"'})
    monkeypatch.delitem(registry._registry, "sftp", raising=False)
    with pytest.raises(ConfigError, match=r"pip install 'fscas\[sftp\]'"):
        fscas.open_store("sftp://user@127.0.0.1/store")


def test_a_control_character_in_an_option_is_named_not_echoed() -> None:
    with pytest.raises(ConfigError, match="option 'region' holds a control character") as refused:
        fscas.open_store("s3://bucket/p?endpoint_url=http://127.0.0.1:9", region="us-east-1\r\nX-Evil: 1", key="k",
                         secret="s")
    assert "Evil" not in str(refused.value)


def test_fscas_loggers_mask_credentials(caplog: pytest.LogCaptureFixture) -> None:
    from fscas.errors import logger

    with caplog.at_level(logging.DEBUG, logger="fscas.test"):
        logger("fscas.test").debug("opening %s", "s3://b/p?secret=SEKRIT&key=AKID")
    assert "SEKRIT" not in caplog.text and "secret=***" in caplog.text


def test_fscas_files_are_fsspec_files_and_the_filesystem_pickles(pushed: tuple[Path, str, str],
                                                                 tmp_path: Path) -> None:
    src, store, key = pushed
    with fscas.open_store(store) as opened:
        fs = fsspec.filesystem("fscas", store=opened, manifest=key, skip_instance_cache=True)
        assert fs.read_block("a.txt", 0, 5, delimiter=b"\n") == b"line1\n"
        assert fs.modified("a.txt").timestamp() == pytest.approx((src / "a.txt").stat().st_mtime, abs=1e-6)
        with fs.open("sub/b.bin") as f:
            assert f.size == 3000 and f.seek(2990) == 2990 and f.read() == (src / "sub" / "b.bin").read_bytes()[2990:]
        again = pickle.loads(pickle.dumps(fs))  # as Dask sends it to a worker
        assert again.cat_file("sub/b.bin") == (src / "sub" / "b.bin").read_bytes()
    with fsspec.open("blockcache::fscas://a.txt", fscas={"store": store, "manifest": key},
                     blockcache={"cache_storage": str(tmp_path / "blocks")}) as f:
        assert f.read() == (src / "a.txt").read_bytes()


def test_progress_counts_files_as_well_as_bytes(tmp_path: Path, capsys: Any) -> None:
    """200 small files beside one of 20 MiB: the bar says how many files are done, not only bytes."""
    from fscas.cli.output import progress_bar

    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"f{i}").write_bytes(os.urandom(50 + i))
    (src / "big").write_bytes(os.urandom(20 * 2**20))
    with fscas.open_store(str(tmp_path / "store")) as store:
        m = fscas.snapshot(src, hash_cache=False)
        for what, run in (("uploading", lambda bar: store.upload(m, src, callback=bar)),
                          ("downloading", lambda bar: store.download(m, tmp_path / "out", callback=bar))):
            bar = progress_bar(what, force=True)
            assert bar is not None
            with bar:
                summary = run(bar)
            assert summary.files == bar.files == bar.done == 201
            assert "201/201 files" in capsys.readouterr().err


def test_counters_agree_with_what_happened(pushed: tuple[Path, str, str], capsys: Any) -> None:
    """verify counts the corrupt object among those checked; a --force-check repair counts as sent."""
    from fscas.keys import data_key

    src, store, key = pushed
    with fscas.open_store(store) as opened:
        m = opened.get_manifest(key)
    victim = next(p for p in m.paths if p.path == "a.txt")
    (Path(store) / data_key(victim.hash)).write_bytes(b"X" * victim.size)  # same size, wrong bytes
    rc, out, _ = _run(capsys, "verify", "--store", store, "--json")
    report = json.loads(out)
    assert rc == 1 and report["checked"] == 2 and report["bytes"] == m.total_size and len(report["corrupt"]) == 1
    manifest_file = src.parent / "m.manifest"
    rc, _, _ = _run(capsys, "manifest", "download", key, "-o", str(manifest_file), "--store", store)
    rc, out, _ = _run(capsys, "attachment", "upload", "-m", str(manifest_file), "-r", str(src), "--store", store,
                      "--force-check", "--json")
    sent = json.loads(out)
    assert rc == 0 and (sent["files"], sent["bytes"]) == (1, victim.size) and sent["repaired"] == [victim.hash]


def test_pull_takes_include_and_exclude(pushed: tuple[Path, str, str], tmp_path: Path, capsys: Any) -> None:
    _, store, key = pushed
    rc, out, _ = _run(capsys, "pull", key, str(tmp_path / "d1"), "--store", store, "-i", "sub/**", "--json")
    assert rc == 0 and json.loads(out)["files"] == 1 and [p.name for p in (tmp_path / "d1").rglob("*.*")] == ["b.bin"]
    rc, out, _ = _run(capsys, "pull", key, str(tmp_path / "d2"), "--store", store, "-e", "sub/**", "--json")
    assert rc == 0 and [p.name for p in (tmp_path / "d2").rglob("*") if p.is_file()] == ["a.txt"]


def test_attachment_upload_takes_several_manifest_and_root_pairs(tmp_path: Path, capsys: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = str(tmp_path / "store")
    pairs: list[str] = []
    for name, data in (("one", b"first root"), ("two", b"second root, longer")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f.bin").write_bytes(data)
        rc, _, err = _run(capsys, "manifest", "snapshot", str(tmp_path / name), "-o", str(tmp_path / f"{name}.m"))
        assert rc == 0, err
        pairs += ["-m", str(tmp_path / f"{name}.m"), "-r", str(tmp_path / name)]
    rc, out, _ = _run(capsys, "attachment", "upload", *pairs, "--store", store, "--json")
    assert rc == 0 and (json.loads(out)["files"], json.loads(out)["bytes"]) == (2, 29)
    rc, _, err = _run(capsys, "attachment", "upload", *pairs[:6], "--store", store)
    assert rc == 2 and "2 --manifest but 1 --root" in err


def test_snapshot_diff_writes_only_what_changed(tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = tmp_path / "src"
    _tree(src)
    rc, _, _ = _run(capsys, "manifest", "snapshot", str(src), "-o", str(tmp_path / "before.m"))
    rc, _, err = _run(capsys, "manifest", "snapshot", str(src), "--diff", str(tmp_path / "before.m"), "-o",
                      str(tmp_path / "none.m"))
    assert rc == 0 and "nothing written" in err and not (tmp_path / "none.m").exists()
    (src / "a.txt").write_bytes(b"changed")
    (src / "new.txt").write_bytes(b"new")
    rc, out, _ = _run(capsys, "manifest", "snapshot", str(src), "--diff", str(tmp_path / "before.m"), "-o",
                      str(tmp_path / "diff.m"), "--json")
    assert rc == 0 and json.loads(out)["files"] == 2
    assert [p.path for p in fscas.decode((tmp_path / "diff.m").read_bytes()).paths] == ["a.txt", "new.txt"]
