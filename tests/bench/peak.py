"""Run a command and measure its own peak RSS, not the benchmark's.

`wait4`'s `ru_maxrss` for a child is at least the RSS of the process it was spawned from: at `exec`,
Linux folds the old address space's high-water mark into the child's (`exec_mmap` →
`setmax_mm_hiwater_rss`), and a child made by `fork`/`vfork` of a 60 MiB benchmark starts with that
benchmark's pages. Measured: a `python -c pass` whose own VmHWM is 10 MiB reports 11, 61 and 211 MiB
when spawned from parents of 11, 61 and 211 MiB. So every tool is started by a small launcher
(`python -S -I`, no site, no imports) that forks it and reports the child's rusage on a pipe: the
floor is the launcher's anonymous memory (`true` measures 6.6 MiB), whatever the benchmark holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

_LAUNCHER = r"""
import os, sys
report = int(sys.argv[1])
os.set_inheritable(report, False)  # the measured command never sees the report pipe
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
os.write(report, b"%d" % usage.ru_maxrss)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


class Measured:
    """A finished run: seconds, peak RSS in MiB (its own and its waited-for children's), output."""

    __slots__ = ("code", "rss_mib", "seconds", "stderr", "stdout")

    def __init__(self, seconds: float, rss_mib: float, code: int, stdout: bytes, stderr: bytes) -> None:
        self.seconds, self.rss_mib, self.code, self.stdout, self.stderr = seconds, rss_mib, code, stdout, stderr


def measured(cmd: list[str], env: dict[str, str] | None = None, *, capture: bool = True) -> Measured:
    """Run `cmd` to its end through the launcher; stdout and stderr are captured unless `capture` is off."""
    read_end, write_end = os.pipe()
    pipe = subprocess.PIPE if capture else subprocess.DEVNULL
    started = time.perf_counter()
    try:
        p = subprocess.Popen([sys.executable, "-S", "-I", "-c", _LAUNCHER, str(write_end), *cmd], env=env,
                             stdout=pipe, stderr=pipe, pass_fds=(write_end,))
        os.close(write_end)
        write_end = -1
        out, err = p.communicate()
        seconds = time.perf_counter() - started
        report = os.read(read_end, 64)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    return Measured(seconds, int(report or b"0") / 1024, p.returncode, out or b"", err or b"")
