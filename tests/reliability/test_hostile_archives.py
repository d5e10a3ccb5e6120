"""Hostile archives given to `fscas fetch`: nothing written outside the destination, bombs stopped at
the limit in bounded memory, one clear line each."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cli_runner import run_fscas, run_fscas_peak

import fscas


def _realpath_chain(path: Path, extract_into: Path) -> None:
    """The archive of CPython's CVE-2025-4517 (gh-135034): a chain of folders and links whose
    resolved path overflows PATH_MAX, so `os.path.realpath` stops resolving and tarfile's `data`
    filter lets a link lead out; `victim/pwned` is then written beside `extract_into`."""
    steps = "abcdefghijklmnop"
    room = os.pathconf(extract_into.parent, "PC_PATH_MAX") - len(str(extract_into)) - 1
    component = "d" * (room // (len(steps) + 1))
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, kind: bytes, link: str = "", data: bytes = b"") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size, info.mode = kind, link, len(data), 0o777
            tar.addfile(info, io.BytesIO(data) if data else None)

        here = ""
        for step in steps:
            add(os.path.join(here, component), tarfile.DIRTYPE)
            add(os.path.join(here, step), tarfile.SYMTYPE, component)
            here = os.path.join(here, component)
        deep = os.path.join(*steps, "l" * 254)
        add(deep, tarfile.SYMTYPE, os.path.join(*[".."] * len(steps)))
        add("escape", tarfile.SYMTYPE, os.path.join(deep, ".."))  # the folder that holds `extract_into`
        add("escape/victim/pwned", tarfile.REGTYPE, data=b"pwned\n")


def test_the_tarfile_filter_bypass_writes_nothing_outside(tmp_path: Path) -> None:
    published, victim = tmp_path / "pub", tmp_path / "victim"
    published.mkdir()
    victim.mkdir()
    dest = tmp_path / "dest"
    staging_like = tmp_path / f".{dest.name}.fscas-abcdefgh"  # where fetch extracts: a temp folder beside dest
    _realpath_chain(published / "r.tar.gz", staging_like)
    if sys.version_info < (3, 11, 13):  # this interpreter's own filter is fooled: the archive is a real threat
        staging_like.mkdir()
        with tarfile.open(published / "r.tar.gz") as tar, contextlib.suppress(OSError, tarfile.TarError):
            tar.extractall(staging_like, filter="data")
        assert (victim / "pwned").exists(), "the test archive no longer escapes tarfile's filter on this Python"
        (victim / "pwned").unlink()
        subprocess.run(["rm", "-rf", str(staging_like)], check=True)
    r = run_fscas("fetch", f"file://{published}/r.tar.gz", str(dest), home=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "is a link" in r.stderr, r.stderr
    assert os.listdir(victim) == [] and not dest.exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".dest.")]  # no staging folder left behind


def _extended_bomb(path: Path, kind: bytes, size: int) -> None:
    """A tar.gz with one extended header (pax or GNU long name) of `size` bytes: a few KiB on disk."""
    header = tarfile.TarInfo("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax")
    header.type, header.size = kind, size
    block = header.tobuf(format=tarfile.GNU_FORMAT if kind == tarfile.GNUTYPE_LONGNAME else tarfile.USTAR_FORMAT)
    with gzip.open(path, "wb", compresslevel=9) as gz:
        gz.write(block)
        record = b"%d path=" % (size,) if kind == tarfile.XHDTYPE else b""
        gz.write(record)
        zeros = b"a" * 2**20
        left = size - len(record)
        while left > 0:
            gz.write(zeros[:left])
            left -= len(zeros)
        gz.write(b"\0" * (-size % 512))
        small = tarfile.TarInfo("after.txt")
        gz.write(small.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * 1024)


def _peak_fetch(url: str, dest: Path, limit: str, home: Path) -> tuple[int, str, float]:
    """Run `fscas fetch` in a child; (exit code, stderr, the child's peak RSS in MiB)."""
    r, peak = run_fscas_peak("fetch", url, str(dest), "--max-size", limit, home=home)
    return r.returncode, r.stderr.rstrip("\n"), peak


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME], ids=["pax header", "GNU long name"])
def test_header_bombs_are_refused_at_once_in_bounded_memory(kind: bytes, tmp_path: Path) -> None:
    (tmp_path / "pub").mkdir()
    _extended_bomb(tmp_path / "pub" / "bomb.tar.gz", kind, 512 * 2**20)
    assert (tmp_path / "pub" / "bomb.tar.gz").stat().st_size < 2 * 2**20
    rc, err, peak = _peak_fetch(f"file://{tmp_path}/pub/bomb.tar.gz", tmp_path / "dest", "1M", tmp_path)
    assert rc == 1 and err.count("\n") == 0 and "extended header" in err, err
    assert peak < 200, f"{peak:.0f} MiB for a refused header"
    assert not (tmp_path / "dest").exists()


def test_an_archive_of_empty_folders_counts_them_against_the_limit(tmp_path: Path) -> None:
    (tmp_path / "pub").mkdir()
    with tarfile.open(tmp_path / "pub" / "folders.tar.gz", "w:gz") as tar:
        for i in range(100_000):
            info = tarfile.TarInfo(f"f{i:06d}")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
    before = set(os.listdir(tmp_path))
    with pytest.raises(fscas.FscasError, match="expands past the limit of 1000000 bytes"):
        fscas.fetch(f"file://{tmp_path}/pub/folders.tar.gz", tmp_path / "dest", max_bytes=1_000_000)
    assert set(os.listdir(tmp_path)) == before  # no staging folder, no dest
    out = fscas.fetch(f"file://{tmp_path}/pub/folders.tar.gz", tmp_path / "dest", max_bytes=10**9)
    assert len(os.listdir(out)) == 100_000


def test_a_destination_that_is_a_link_is_one_line(tmp_path: Path) -> None:
    src = tmp_path / "results"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a")
    fscas.publish(src, f"file://{tmp_path}/pub/r", compress=True)
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "dest").symlink_to(target)
    r = run_fscas("fetch", f"file://{tmp_path}/pub/r.tar.gz", str(tmp_path / "dest"), home=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is a link" in r.stderr, r.stderr
    assert os.listdir(target) == [] and (tmp_path / "dest").is_symlink()


def test_plain_archives_still_extract_with_modes_and_mtimes(tmp_path: Path) -> None:
    src = tmp_path / "results"
    (src / "sub").mkdir(parents=True)
    (src / "run.sh").write_bytes(b"#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "sub" / "data.bin").write_bytes(os.urandom(3 * 2**20))
    os.utime(src / "sub" / "data.bin", (1_600_000_000, 1_600_000_000))
    fscas.publish(src, f"file://{tmp_path}/pub/r", compress=True)
    out = fscas.fetch(f"file://{tmp_path}/pub/r.tar.gz", tmp_path / "dest")
    assert (out / "sub" / "data.bin").read_bytes() == (src / "sub" / "data.bin").read_bytes()
    assert (out / "sub" / "data.bin").stat().st_mtime == 1_600_000_000
    assert os.access(out / "run.sh", os.X_OK)
