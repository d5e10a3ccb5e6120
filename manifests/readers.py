"""How many threads read small files at once: one while they come from the page cache, several while
they come from the disk.

Reading a cached small file is Python work under the GIL: a second thread only hands the GIL back and
forth (100,000 tiny files, cached: 1.75 s on one thread, 2.6 s on four). From the disk it is waiting:
each `read` blocks ~90 µs on this VM's virtio disk, one at a time (10.2 s on one thread, 5.0 s on
four, which keep several reads in flight; 8 threads were slower than 4 on 2 cores). Which case holds
is not known in advance and changes within a tree; each batch tells, since a read asks the page cache
first (`hash_path_reading`, Linux's RWF_NOWAIT), and the next batches run one or `MANY` at once.
CPU time cannot tell the cases apart: the kernel's share of a cold read runs outside the GIL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["COLD", "MANY", "Gate"]

MANY = 4
"""Threads reading at once while files come from the disk."""
COLD = 1 / 8
"""Share of a batch's files read from the disk from which the next batches are read in parallel."""

T = TypeVar("T")


class Gate:
    """Lets one caller run at a time, or `MANY` while the last batch noted came mostly from the disk."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self.allowed = 1
        self.batches = {1: 0, MANY: 0}  # batches started under each setting (for tests and benchmarks)

    def run(self, work: Callable[[], T]) -> T:
        """Run `work` once a place is free."""
        with self._cond:
            while self._active >= self.allowed:
                self._cond.wait()
            self._active += 1
            self.batches[self.allowed] += 1
        try:
            return work()
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def note(self, cold: int, files: int) -> None:
        """A batch read `files` files, `cold` of them (partly) from the disk."""
        with self._cond:
            self.allowed = MANY if files and cold >= COLD * files else 1
            self._cond.notify_all()
