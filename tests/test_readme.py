"""README's snippets run as printed: the Python example against the S3 emulator `fscas emulator run`
starts, with the environment it prints."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"


def _block(heading: str, lang: str) -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    m = re.search(rf"```{lang}\n(.*?)```", section, re.DOTALL)
    assert m, f"no {lang} block under {heading}"
    return m[1]


def test_python_snippet_runs_as_printed(moto_server: Any, tmp_path: Path) -> None:
    with contextlib.suppress(Exception):  # the bucket the README's emulator command creates
        moto_server.create_bucket("renders")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSCAS_"))}
    env.update(moto_server.env(), HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-c", _block("## Python\n", "python")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Manifests/farm-1/queue-1/Inputs/" in r.stdout
    restored = tmp_path / "restored" / "shot-010"
    assert (restored / "beauty.0001.exr").read_bytes() == b"pixels" * 1000
    assert not (restored / "scratch.tmp").exists()
    assert "Unclosed" not in r.stderr


def test_quick_start_push_leaves_out_venv_and_git(tmp_path: Path) -> None:
    command = _block("## Quick start", "sh").strip()
    push = command[command.index("fscas push"):]
    checkout = tmp_path / "checkout"
    for rel in (".venv/bin/python", ".git/HEAD", "src/a.py", "README.md"):
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text(rel)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSCAS_"))}
    env.update(HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    r = subprocess.run(["bash", "-c", push], cwd=checkout, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total_files"] == 2


def _recipe(tmp_path: Path, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSCAS_"))}
    env.update(extra, HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return subprocess.run(["bash", "-ec", _block("### A worker's session", "sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_worker_session_recipe_runs_as_printed_on_a_folder_store(tmp_path: Path) -> None:
    r = _recipe(tmp_path, {})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "A TEAPOT+BG"
    assert sorted(p.name for p in (tmp_path / "result" / "renders").iterdir()) == ["comp.txt", "final.txt",
                                                                                   "frame1.txt"]


def test_worker_session_recipe_runs_as_printed_on_the_s3_emulator(moto_server: Any, tmp_path: Path) -> None:
    from fscas.conformance.plugin import unique_bucket

    bucket = unique_bucket()
    moto_server.create_bucket(bucket)
    r = _recipe(tmp_path, {**moto_server.env(), "FSCAS_STORE": moto_server.cli_url(bucket, "DeadlineRoot")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "A TEAPOT+BG"


def test_moving_between_clouds_runs_as_printed(tmp_path: Path) -> None:
    from fscas.conformance.emulators import find_azurite

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSCAS_", "AZURE_"))}
    env.update(FSCAS_AZURITE=find_azurite(), HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    r = subprocess.run(["bash", "-ec", _block("### Moving between clouds", "sh")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "pixels"
    copies = [line for line in r.stderr.splitlines() if line.startswith(("copied ", "would copy "))]
    assert copies[0].startswith("copied 1 manifests, 1 objects") and copies[1].startswith("copied 0 manifests, 0 "
                                                                                          "objects"), r.stderr
