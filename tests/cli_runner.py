"""Run the `fscas` command line as a user would: a subprocess with its own home, caches and data."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_CLOUD_ENV = ("AWS_", "AZURE_", "GOOGLE_", "GCSFS_", "STORAGE_EMULATOR_HOST", "FSCAS_")


def _env(home: Path, extra: dict[str, str] | None) -> dict[str, str]:
    """A user's shell: HOME and the XDG folders under `home`, no cloud settings of ours, the rest
    (certificates, proxies, PATH) kept; an Azurite launcher installed for this test session is
    passed on so it is not installed again."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLOUD_ENV)}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"), XDG_DATA_HOME=str(home / "data"))
    from fscas.conformance.emulators import EmulatorError, find_azurite

    with contextlib.suppress(EmulatorError):
        env["FSCAS_AZURITE"] = find_azurite(install=False)
    env.update(extra or {})
    return env


def run_fscas(*args: str, home: Path, extra: dict[str, str] | None = None, timeout: float = 300,
              cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m fscas ARGS` with HOME and the XDG folders under `home` and no cloud settings of ours."""
    return subprocess.run([sys.executable, "-m", "fscas", *args], capture_output=True, text=True,
                          env=_env(home, extra), timeout=timeout, cwd=cwd or REPO, input=stdin)


_PEAK = ("import re, sys\nfrom fscas.cli import main\nrc = main(sys.argv[1:])\n"
         "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())\n"
         "print(int(hwm.group(1)) / 1024, file=sys.stderr)\nsys.exit(rc)")


def run_fscas_peak(*args: str, home: Path, extra: dict[str, str] | None = None, timeout: float = 300
                   ) -> tuple[subprocess.CompletedProcess[str], float]:
    """`run_fscas`, and the child's own peak RSS in MiB (its stderr without that last line).

    VmHWM, read by the child as it exits, not `ru_maxrss`: exec carries the high-water mark of the
    process forked from (a big pytest process) into `ru_maxrss`.
    """
    r = subprocess.run([sys.executable, "-c", _PEAK, *args], capture_output=True, text=True, env=_env(home, extra),
                       timeout=timeout, cwd=REPO)
    *lines, peak = r.stderr.strip().splitlines()
    r.stderr = "".join(f"{line}\n" for line in lines)
    return r, float(peak)
