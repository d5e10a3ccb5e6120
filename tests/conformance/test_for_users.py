"""The emulators, the conformance suite and third-party backends as a user gets them: a fresh venv
holding nothing but README's install line (`.[emulators]`) and, for the plugin tests, two example
packages from tests/plugins. Nothing here runs inside the test environment."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fscas.conformance.emulators import find_azurite

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PLUGINS = REPO / "tests" / "plugins"


def _blocks(heading: str, lang: str) -> list[str]:
    """The `lang` code blocks of README's section `heading`, in order."""
    text = README.read_text()
    section = text[text.index(heading) + len(heading):]
    section = section[:m.start()] if (m := re.search(r"^## ", section, re.MULTILINE)) else section
    found = re.findall(rf"```{lang}\n(.*?)```", section, re.DOTALL)
    assert found, f"no {lang} block under {heading}"
    return found


def _block(heading: str, lang: str) -> str:
    return _blocks(heading, lang)[0]


@pytest.fixture(scope="session")
def user_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with README's install line of the emulators section, and the example plugins."""
    line = _block("## Emulators and the conformance suite", "sh").strip().splitlines()[0]
    install = line[line.index("pip install"):]
    venv = tmp_path_factory.mktemp("user") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # README's own arguments, with uv for pip: the same packages (pinned by constraints.txt), in seconds.
    uv = [sys.executable, "-m", "uv", "pip", "install", "-q", "--python", str(venv / "bin" / "python")]
    r = subprocess.run([*uv, *shlex.split(install)[2:]], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*uv, str(PLUGINS / "dictstore"), str(PLUGINS / "shadow"), "-c", "constraints.txt"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return venv


def _env(venv: Path, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A user's shell with the venv active: no cloud settings, no PYTHONPATH, a home of its own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "AZURE_", "GOOGLE_", "STORAGE_EMULATOR", "FSCAS_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv), HOME=str(home),
               XDG_CACHE_HOME=str(home / "cache"), XDG_DATA_HOME=str(home / "data"))
    env["FSCAS_AZURITE"] = find_azurite()  # installed once per machine, as a user's first run would
    env.update(extra or {})
    return env


def _run(venv: Path, home: Path, *args: str, cwd: Path | None = None, extra: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd or home, env=_env(venv, home, extra), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def running_s3(user_venv: Path, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], subprocess.Popen[str]]]:
    """`fscas emulator run s3 --bucket renders`, as README says: (store URL, its exports, the process)."""
    proc = subprocess.Popen(["fscas", "emulator", "run", "s3", "--bucket", "renders"], cwd=tmp_path,
                            env=_env(user_venv, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url, exports = "", {}
    try:
        for line in proc.stdout:
            if line.startswith("store URL: "):
                url = line.removeprefix("store URL: ").strip()
            elif line.startswith("export "):
                name, value = line.removeprefix("export ").strip().split("=", 1)
                exports[name] = shlex.split(value)[0]
                if name == "AWS_DEFAULT_REGION":  # the last one
                    break
        assert url and exports, proc.stderr.read() if proc.stderr else ""
        yield url, exports, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_readme_python_section_and_the_pytest_plugin_run_from_the_extra(
        user_venv: Path, running_s3: tuple[str, dict[str, str], subprocess.Popen[str]], tmp_path: Path) -> None:
    url, exports, emulator = running_s3
    r = _run(user_venv, tmp_path, "python", "-c", _block("## Python\n", "python"), extra=exports)
    assert r.returncode == 0, r.stderr
    assert "Manifests/farm-1/queue-1/Inputs/" in r.stdout
    assert (tmp_path / "restored" / "shot-010" / "beauty.0001.exr").read_bytes() == b"pixels" * 1000
    plugin_line = _blocks("## Emulators and the conformance suite", "sh")[-1].strip()
    assert plugin_line.startswith("pytest --pyargs fscas.conformance --store-url")
    command = ["pytest", "--pyargs", "fscas.conformance", "--store-url", url.replace("renders", "renders/ci", 1),
               "-q", "-p", "no:cacheprovider"]
    r = _run(user_venv, tmp_path, *command, extra=exports, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]
    assert re.search(r"\d+ passed", r.stdout) and "failed" not in r.stdout
    emulator.send_signal(signal.SIGTERM)  # stops its server too, and removes its data
    assert emulator.wait(60) == 0
    assert not re.search(rf"moto.server .*-p {re.escape(exports['AWS_ENDPOINT_URL'].rsplit(':', 1)[1])}\b",
                         subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout)


def test_conformance_on_every_emulator_from_the_extra(user_venv: Path, tmp_path: Path) -> None:
    r = _run(user_venv, tmp_path, "fscas", "conformance", "--emulators", "--check", "data_key_layout", "--check",
             "output_manifest_non_ascii_root", "--check", "create_only", "--check", "compare_and_swap", "--json",
             timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ok"]
    assert {x["target"] for x in report["results"]} == {
        "file", "memory", "moto", "seaweedfs", "fake-gcs-server", "azurite", "sftp", "webdav", "ftp",
        "s3fs (fsspec)", "local (fsspec)", "memory (fsspec)"}
    generic = {"s3fs (fsspec)", "local (fsspec)", "memory (fsspec)", "sftp", "webdav", "ftp"}
    for x in report["results"]:  # the generic backend has no conditional write (fsspec has none)
        off = x["check"] in ("create_only", "compare_and_swap") and x["target"] in generic
        assert x["status"] == ("not-supported" if off else "pass"), x
    assert "Task exception was never retrieved" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_a_third_party_backend_is_proven_by_the_suite(user_venv: Path, tmp_path: Path) -> None:
    package = tmp_path / "dictstore"
    shutil.copytree(PLUGINS / "dictstore", package)  # its tests, run where its author would run them
    r = _run(user_venv, tmp_path, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=package)
    assert r.returncode == 0, r.stdout[-3000:]
    passed = int(re.search(r"(\d+) passed", r.stdout)[1])  # type: ignore[index]
    assert passed >= 14 and "failed" not in r.stdout, r.stdout[-2000:]
    r = _run(user_venv, tmp_path, "fscas", "conformance", "dictstore://bucket/prefix", "--json")
    assert r.returncode == 0, r.stderr
    statuses = {x["check"]: x["status"] for x in json.loads(r.stdout)["results"]}
    for check in ("data_key_layout", "output_manifest_non_ascii_root", "legacy_key_fallback", "wrong_hash_detected"):
        assert statuses[check] == "pass", statuses  # the checks that read the raw truth: through raw()
    assert statuses["compare_and_swap"] == "not-supported"


def test_a_broken_plugin_fails_only_its_own_scheme(user_venv: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a")
    r = _run(user_venv, tmp_path, "fscas", "push", str(src), "--store", str(tmp_path / "store"), "--json")
    assert r.returncode == 0 and "error" not in r.stderr, r.stderr  # file:// stays fscas's own
    r = _run(user_venv, tmp_path, "fscas", "ls", "--store", "shadowscheme://bucket/prefix")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "fscas-shadow" in r.stderr and "shadow plugin: import failed" in r.stderr and "Traceback" not in r.stderr
    r = _run(user_venv, tmp_path, "fscas", "conformance", "--backends")
    assert "file" in r.stdout and "fscas-shadow" in r.stdout


def test_emulators_that_cannot_start_say_what_they_need(tmp_path: Path) -> None:
    # Inside the test environment, with the servers' modules hidden as a venv without the extra has them.
    hide = "import sys\nfor m in ('moto', 'flask', 'asyncssh'): sys.modules[m] = None\n" \
           "from fscas.cli import main\nsys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "HOME": str(tmp_path), "FSCAS_AZURITE": find_azurite()}
    r = subprocess.run([sys.executable, "-c", hide, "emulator", "run", "s3"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert 'the moto emulator needs moto, flask: pip install "fscas[emulators]"' in r.stderr
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-c", hide, "conformance", "--emulators", "s3,sftp,ftp", "--check",
                        "data_key_layout"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr  # everything that ran passed; the others are n/a
    header, row = r.stdout.splitlines()[:2]
    assert header.split() == ["check", "file", "memory", "ftp", "local", "(fsspec)", "memory", "(fsspec)", "moto",
                              "sftp"], header
    assert row.split()[-2:] == ["n/a", "n/a"] and row.split()[1:4] == ["pass"] * 3, row
    assert "moto: n/a: the moto emulator needs moto, flask" in r.stderr and "sftp: n/a: the sftp emulator needs "\
        "asyncssh" in r.stderr and "Traceback" not in r.stderr
    assert time.monotonic() - started < 120


def test_bucket_names_are_checked_before_the_server_starts(tmp_path: Path) -> None:
    for kind, bucket in (("seaweedfs", "t"), ("s3", "Upper"), ("azure", "a--b"), ("sftp", "a/b")):
        started = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "fscas", "emulator", "run", kind, "--bucket", "ok-bucket", "--bucket",
                            bucket], capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)})
        assert r.returncode == 2 and repr(bucket) in r.stderr and r.stderr.count("\n") == 1, (kind, r.stderr)
        assert time.monotonic() - started < 10


def test_ctrl_c_while_seaweedfs_starts_leaves_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "fscas", "emulator", "run", "seaweedfs"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob("fscas-seaweedfs-*/emulator.log")):  # `weed server` has been spawned
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    time.sleep(0.5)
    assert str(tmp_path) not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not list(tmp_path.glob("fscas-seaweedfs-*"))
