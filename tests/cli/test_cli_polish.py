"""What a seasoned rsync / aws-cli / deadline user expects of the CLI: sync semantics, exit codes,
JSON, help, suggestions, listing, and resources released."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from cli_runner import run_fscas

import fscas
from fscas.cli import build_parser

cli = run_fscas


def _tree(root: Path, n: int = 5) -> None:
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        (root / ("sub" if i % 2 else ".") / f"f{i}.txt").write_bytes(f"file {i} ".encode() * (i + 1))


def _pushed(tmp_path: Path) -> tuple[Path, str, str]:
    src, store = tmp_path / "src", str(tmp_path / "store")
    _tree(src)
    r = cli("push", str(src), "--store", store, "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    return src, store, json.loads(r.stdout)["key"]


def test_pull_leaves_identical_files_alone_and_names_a_differing_one(tmp_path: Path) -> None:
    _, store, key = _pushed(tmp_path)
    dest = tmp_path / "dest"
    first = json.loads(cli("pull", key, str(dest), "--store", store, "--json", home=tmp_path).stdout)
    assert first["files"] == 5 and first["unchanged_files"] == 0
    (dest / "f0.txt").write_bytes(b"edited locally")
    again = cli("pull", key, str(dest), "--store", store, home=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "kept f0.txt: it differs" in again.stderr and "4 unchanged, 1 kept" in again.stderr
    assert (dest / "f0.txt").read_bytes() == b"edited locally"
    as_json = json.loads(cli("pull", key, str(dest), "--store", store, "--json", home=tmp_path).stdout)
    assert as_json["kept"] == ["f0.txt"] and as_json["unchanged_files"] == 4 and as_json["files"] == 0


def test_overwrite_and_create_copy_touch_only_differing_files(tmp_path: Path) -> None:
    _, store, key = _pushed(tmp_path)
    dest = tmp_path / "dest"
    assert cli("pull", key, str(dest), "--store", store, home=tmp_path).returncode == 0
    (dest / "sub" / "f1.txt").write_bytes(b"changed")
    r = json.loads(cli("pull", key, str(dest), "--store", store, "--conflict", "create-copy", "--json",
                       home=tmp_path).stdout)
    assert r["files"] == 1 and r["unchanged_files"] == 4
    assert sorted(p.name for p in dest.rglob("*(1)*")) == ["f1 (1).txt"]
    (dest / "sub" / "f1 (1).txt").unlink()
    r = json.loads(cli("pull", key, str(dest), "--store", store, "--conflict", "overwrite", "--json",
                       home=tmp_path).stdout)
    assert r["files"] == 1 and r["bytes"] == len(b"file 1 " * 2) and r["kept"] == []
    assert (dest / "sub" / "f1.txt").read_bytes() == b"file 1 " * 2


def test_checksum_compares_content_not_mtime(tmp_path: Path) -> None:
    src, store, key = _pushed(tmp_path)
    dest = tmp_path / "dest"
    assert cli("pull", key, str(dest), "--store", store, home=tmp_path).returncode == 0
    os.utime(dest / "f2.txt", (1, 1))  # same bytes, other mtime
    r = json.loads(cli("pull", key, str(dest), "--store", store, "--json", home=tmp_path).stdout)
    assert r["kept"] == ["f2.txt"]
    r = json.loads(cli("pull", key, str(dest), "--store", store, "--checksum", "--json", home=tmp_path).stdout)
    assert r["kept"] == [] and r["unchanged_files"] == 5
    m = tmp_path / "m.json"
    assert cli("manifest", "snapshot", str(src), "-o", str(m), home=tmp_path).returncode == 0
    r = json.loads(cli("attachment", "download", "-m", str(m), "-d", str(dest), "--store", store, "--checksum",
                       "--json", home=tmp_path).stdout)
    assert r["unchanged_files"] == 5


def test_missing_object_names_the_file(tmp_path: Path) -> None:
    _, store, key = _pushed(tmp_path)
    for obj in (tmp_path / "store" / "Data").iterdir():
        if obj.read_bytes() == b"file 3 " * 4:
            obj.unlink()
    r = cli("pull", key, str(tmp_path / "dest"), "--store", store, home=tmp_path)
    assert r.returncode == 1 and "sub/f3.txt" in r.stderr and "Data/" in r.stderr, r.stderr


def test_diff_exit_code(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    m = tmp_path / "m.json"
    assert cli("manifest", "snapshot", str(src), "-o", str(m), home=tmp_path).returncode == 0
    assert cli("manifest", "diff", str(src), str(m), "--exit-code", home=tmp_path).returncode == 0
    (src / "new.txt").write_bytes(b"n")
    assert cli("manifest", "diff", str(src), str(m), home=tmp_path).returncode == 0
    r = cli("manifest", "diff", str(src), str(m), "--exit-code", home=tmp_path)
    assert r.returncode == 1 and "+ new.txt" in r.stdout


def test_json_reports_skipped_links_and_no_embedded_manifest(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"o")
    (src / "out-link").symlink_to(outside)
    r = cli("push", str(src), "--store", str(tmp_path / "store"), "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [s["path"] for s in json.loads(r.stdout)["snapshot_skipped"]] == ["out-link"]
    r = cli("manifest", "snapshot", str(src), "--json", home=tmp_path)
    assert r.returncode == 2 and "-o" in r.stderr
    r = cli("manifest", "snapshot", str(src), "--json", "-o", str(tmp_path / "m.json"), home=tmp_path)
    summary = json.loads(r.stdout)
    assert "manifest" not in summary and summary["output"].endswith("m.json") and summary["files"] == 5


def test_push_include_exclude(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    r = cli("push", str(src), "-e", "sub/**", "--store", str(tmp_path / "store"), "--json", home=tmp_path)
    assert json.loads(r.stdout)["total_files"] == 3


def test_publish_warns_on_links_it_leaves_out(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    (src / "link.txt").symlink_to(src / "f0.txt")
    r = cli("publish", str(src), f"file://{tmp_path}/pub/out", "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "skipped link.txt: a link" in r.stderr
    assert not (tmp_path / "pub" / "out" / "link.txt").exists() and (tmp_path / "pub" / "out" / "f0.txt").exists()


def test_misspelt_option_and_command_suggest_the_right_one(tmp_path: Path) -> None:
    r = cli("push", "--concurency", "4", str(tmp_path), home=tmp_path)
    assert r.returncode == 2 and "did you mean --concurrency?" in r.stderr
    r = cli("pul", "k", "d", home=tmp_path)
    assert r.returncode == 2 and "did you mean pull?" in r.stderr
    assert cli("pull", "k", "d", "--concurrency", "0", home=tmp_path).returncode == 2
    r = cli("manifest", "merge", "m", "-o", "x", "--no-cache", home=tmp_path)  # never the rejected word itself
    assert r.returncode == 2 and "did you mean" not in r.stderr, r.stderr
    assert "--no-cache is an option of 'fscas manifest snapshot'" in r.stderr
    assert r.stderr.startswith("usage: fscas manifest merge")  # the command's usage, not the top level's
    r = cli("pull", "k", "d", "--conflict", "overwrit", home=tmp_path)
    assert r.returncode == 2 and "(did you mean overwrite?)" in r.stderr


def test_concurrency_option(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    r = cli("push", str(src), "--store", str(tmp_path / "store"), "--concurrency", "1", "--json", home=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["files"] == 5


def _actions(parser: Any, path: str = "fscas") -> list[tuple[str, Any]]:
    import argparse

    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _actions(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            out.append((path, action))
    return out


def test_every_option_and_argument_has_help() -> None:
    missing = [f"{path} {a.option_strings or a.dest}" for path, a in _actions(build_parser()) if not a.help]
    assert missing == []


def test_ls_and_cat(tmp_path: Path) -> None:
    _, store, key = _pushed(tmp_path)
    r = cli("ls", "--inputs", "--json", "--store", store, home=tmp_path)
    listed = json.loads(r.stdout)["objects"]
    assert [o["key"] for o in listed] == [key] and listed[0]["kind"] == "input"
    assert json.loads(cli("ls", "--outputs", "--json", "--store", store, home=tmp_path).stdout)["objects"] == []
    data = json.loads(cli("ls", "--data", "--json", "--store", store, home=tmp_path).stdout)["objects"]
    assert len(data) == 5
    r = subprocess.run([sys.executable, "-m", "fscas", "cat", key, "--store", store], capture_output=True,
                       env={**os.environ, "HOME": str(tmp_path)})
    assert fscas.decode(r.stdout).total_size == sum(len(f"file {i} ".encode() * (i + 1)) for i in range(5))
    one = data[0]["key"]
    (tmp_path / "store" / one).write_bytes(b"corrupt")
    r = cli("cat", one, "--store", store, home=tmp_path)
    assert r.returncode == 1 and one in r.stderr and r.stdout == ""
    with fscas.open_store(store) as s:
        assert [m.key for m in s.manifests(kind="input")] == [key]


def test_ls_does_not_create_a_missing_folder_store(tmp_path: Path) -> None:
    r = cli("ls", "--store", str(tmp_path / "nothing"), home=tmp_path)
    assert r.returncode == 0 and "0 manifests" in r.stderr and not (tmp_path / "nothing").exists()


def test_store_left_open_closes_its_sessions_at_exit(moto_server: Any, tmp_path: Path) -> None:
    from fscas.conformance.plugin import unique_bucket

    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    script = (f"import fscas\ns = fscas.open_store({moto_server.store_url(bucket)!r}, **{moto_server.options()!r})\n"
              "print(s.get_bytes(s.put_bytes(b'x' * 100000))[:1])\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "b'x'", r.stderr
    assert "Unclosed" not in r.stderr, r.stderr


def test_emulator_run_cleans_up_on_sigterm(tmp_path: Path) -> None:
    from fscas.conformance.emulators import free_port

    port = free_port()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "fscas", "emulator", "run", "s3", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp)})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line, line + (proc.stderr.read() if proc.stderr else "")
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children and any(tmp.iterdir())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children):
            assert time.monotonic() < deadline, "the emulator server outlived fscas emulator run"
            time.sleep(0.1)
        assert list(tmp.iterdir()) == []
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("conflict", ["skip", "overwrite", "create-copy"])
def test_python_download_counts_unchanged(tmp_path: Path, conflict: str) -> None:
    src = tmp_path / "src"
    _tree(src)
    with fscas.open_store(str(tmp_path / "store")) as store:
        m = fscas.snapshot(src)
        store.upload(m, src)
        store.download(m, tmp_path / "d")
        summary = store.download(m, tmp_path / "d", conflict=conflict)  # type: ignore[arg-type]
    assert summary.files == 0 and summary.unchanged_files == 5 and summary.kept == ()


def test_force_check_replaces_a_corrupt_object(tmp_path: Path) -> None:
    src, store, _ = _pushed(tmp_path)
    m = tmp_path / "m.json"
    assert cli("manifest", "snapshot", str(src), "-o", str(m), home=tmp_path).returncode == 0
    objects = sorted((tmp_path / "store" / "Data").iterdir())
    good = objects[0].read_bytes()
    objects[0].write_bytes(b"X" * len(good))  # same size: only a read-back can tell
    objects[1].unlink()
    plain = json.loads(cli("attachment", "upload", "-m", str(m), "-r", str(src), "--store", store, "--json",
                           home=tmp_path).stdout)
    # The existence cache vouches for both; the HEADs of its sample (every object of so small a tree)
    # find the deleted one and upload it again. A corrupt object of the right size only a read-back finds.
    assert plain["files"] == 1 and plain["repaired"] == [] and objects[1].exists()
    r = cli("attachment", "upload", "-m", str(m), "-r", str(src), "--store", store, "--force-check", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "replaced corrupt object" in r.stderr and objects[0].name in r.stderr
    assert objects[0].read_bytes() == good and objects[1].exists()
    with fscas.open_store(store) as s:
        assert s.verify().ok


def test_publish_gzip_level(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "log.txt").write_bytes(b"".join(f"line {i} of a compressible log\n".encode() for i in range(20000)))
    sizes = {}
    for level in ("1", "9"):
        r = cli("publish", str(src), f"file://{tmp_path}/pub/l{level}", "--compress", "--gzip-level", level,
                "--json", home=tmp_path)
        assert r.returncode == 0, r.stderr
        sizes[level] = (tmp_path / "pub" / f"l{level}.tar.gz").stat().st_size
        fetched = tmp_path / f"fetched{level}"
        r = cli("fetch", f"file://{tmp_path}/pub/l{level}.tar.gz", str(fetched), home=tmp_path)
        assert r.returncode == 0, r.stderr
        assert (fetched / "log.txt").read_bytes() == (src / "log.txt").read_bytes()
    assert sizes["1"] > sizes["9"]
    assert cli("publish", str(src), f"file://{tmp_path}/pub/x", "--compress", "--gzip-level", "0",
               home=tmp_path).returncode == 2


def test_one_command_parser_is_the_full_parser_cut_to_that_command() -> None:
    import argparse

    from fscas.cli import COMMANDS

    def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return dict(sub.choices)

    full = commands(build_parser())
    assert list(full) == [c for names in COMMANDS.values() for c in names]  # the table lists every command, in order
    for command in full:
        alone = commands(build_parser(command))
        assert command in alone and len(alone) <= len(full)
        assert alone[command].format_help() == full[command].format_help()
