"""fscas's one door to FUSE: `mfusepy` (the maintained fork of fusepy), on libfuse 3 where it is installed.

libfuse 3 is what makes reading a tree through a mount cheap: a listing answers READDIRPLUS with every
entry's attributes, so the kernel looks no file up afterwards, and a read-only snapshot refuses `open`
with ENOSYS (`vfs`), so the kernel sends no open, flush or release either. A small file then costs one
trip through the daemon, its read, instead of six. libfuse 2 still works, entry by entry.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import sys
import threading
from types import ModuleType
from typing import Any

from fscas.errors import ConfigError

__all__ = ["load", "serve"]

_READDIR_PLUS = 1  # libfuse 3's FUSE_READDIR_PLUS (asked) and FUSE_FILL_DIR_PLUS >> 1 (answered)
_READDIRPLUS_AUTO = 1 << 14  # libfuse 3's FUSE_CAP_READDIRPLUS_AUTO


def load(what: str = "fscas mount") -> ModuleType:
    """`mfusepy`, bound to libfuse 3 when the machine has it (libfuse 2 otherwise).

    Raises:
        ConfigError: mfusepy or libfuse is missing, saying what to install (for `what`).
    """
    if (loaded := sys.modules.get("mfusepy")) is not None:
        return loaded
    given = os.environ.get("FUSE_LIBRARY_PATH")
    try:
        if given is None and (lib := ctypes.util.find_library("fuse3")):
            os.environ["FUSE_LIBRARY_PATH"] = lib  # mfusepy reads it once, at import
        import mfusepy
    except (ImportError, OSError, AttributeError) as e:  # mfusepy missing, or no (usable) libfuse
        raise ConfigError(f"{what} needs mfusepy and libfuse ({e}): pip install mfusepy (in a checkout of fscas: "
                          "pip install -e '.[mount]'); Debian: apt-get install fuse3") from e
    finally:
        if given is None:
            os.environ.pop("FUSE_LIBRARY_PATH", None)
    return mfusepy  # type: ignore[no-any-return]


def serve(ops: Any, mountpoint: str, *, snapshot: bool) -> None:
    """Serve the fusepy-style operations `ops` at `mountpoint` until it is unmounted (foreground).

    A `snapshot` never changes: the mount is read-only and the kernel keeps names, attributes and pages
    for an hour. Otherwise (a VIRTUAL session's writable overlay) libfuse's one-second defaults hold.
    """
    fuse = load()
    options: dict[str, Any] = {"foreground": True, "nothreads": False}
    if snapshot:
        options |= {"ro": True, "kernel_cache": True, "attr_timeout": 3600.0, "entry_timeout": 3600.0,
                    "negative_timeout": 3600.0}
        if fuse.fuse_version_major == 2:
            options["max_readahead"] = 1 << 20  # libfuse 3 takes the kernel's own
    if fuse.fuse_version_major == 3:
        options["max_idle_threads"] = 100  # unset, libfuse 3.14.0 prints a warning on every mount
    _bridge(fuse)(ops, mountpoint, **options)


def _bridge(fuse: ModuleType) -> type:
    class Bridge(fuse.FUSE):  # type: ignore[misc,name-defined]  # mfusepy's classes carry no types
        """mfusepy's FUSE with READDIRPLUS answered (mfusepy fills names alone) and rename flags refused."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.listings: dict[str, list[str]] = {}  # a listing read in pieces, between them
            self.mutex = threading.Lock()
            super().__init__(*args, **kwargs)  # serves until unmounted

        def init_fuse_3(self, conn: Any, config: Any) -> None:
            # Every piece of a listing with attributes, not only the first: by default the kernel asks
            # for the rest plainly unless lookups came meanwhile, and `ls` or `cp -r` read a folder whole
            # before looking at any of it, so each file would still cost a lookup.
            if conn:
                conn.contents.want &= ~_READDIRPLUS_AUTO
            super().init_fuse_3(conn, config)

        def readdir_fuse_3(self, path: bytes, buf: Any, filler: Any, offset: int, fip: Any, flags: int) -> int:
            if not flags & _READDIR_PLUS:
                return int(super().readdir_fuse_3(path, buf, filler, offset, fip, flags))
            folder = path.decode(self.encoding, self.errors)
            with self.mutex:  # the kernel reads a long listing in pieces: list it once, at offset 0
                names = self.listings.pop(folder, None) if offset else None
            if names is None:
                names = list(self.operations.readdir(folder, fip.contents.fh))
            prefix = folder.rstrip("/") + "/"
            # Offsets count entries (never 0): with an offset libfuse passes each entry's attributes on
            # and records the node, where a whole listing at offset 0 would send them as unknown.
            for i in range(offset, len(names)):
                name = names[i]
                st, plus = None, 0
                if name not in (".", ".."):
                    try:
                        attrs = self.operations.getattr(prefix + name)
                    except fuse.FuseOSError:
                        attrs = None  # gone meanwhile: the kernel looks it up, and is told so
                    if attrs is not None:
                        st, plus = fuse.c_stat(), _READDIR_PLUS << 1
                        fuse.set_st_attrs(st, attrs, use_ns=self.use_ns)
                if filler(buf, name.encode(self.encoding, self.errors), None if st is None else ctypes.pointer(st),
                          i + 1, plus):
                    with self.mutex:  # the buffer is full: the kernel asks again from here
                        self.listings[folder] = names
                    break
            return 0

        def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
            if flags:  # RENAME_EXCHANGE (or NOREPLACE, which the kernel checks first): not done, so not
                return -errno.EINVAL  # pretended: a plain rename would destroy the target
            return int(super().rename_fuse_3(old, new, flags))

    return Bridge
