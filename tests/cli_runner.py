"""Run the `fscas` command line as a user would: a subprocess with its own home, caches and data."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_CLOUD_ENV = ("AWS_", "AZURE_", "GOOGLE_", "GCSFS_", "STORAGE_EMULATOR_HOST", "FSCAS_")


def run_fscas(*args: str, home: Path, extra: dict[str, str] | None = None, timeout: float = 300,
              cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m fscas ARGS` with HOME and the XDG folders under `home` and no cloud settings of ours.

    The rest of the environment (certificates, proxies, PATH) is kept, as a user's shell would; an
    Azurite launcher installed for this test session is passed on so it is not installed again.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLOUD_ENV)}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"), XDG_DATA_HOME=str(home / "data"))
    from fscas.conformance.emulators import EmulatorError, find_azurite

    with contextlib.suppress(EmulatorError):
        env["FSCAS_AZURITE"] = find_azurite(install=False)
    env.update(extra or {})
    return subprocess.run([sys.executable, "-m", "fscas", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=cwd or REPO, input=stdin)
