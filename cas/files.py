"""Local file writes that never leave a half-written file under its final name."""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["atomic_write_bytes"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> None:
    """Write `data` to `path` through a temp file in the same folder and rename it into place.

    Readers see the old file or the whole new one, never a part. With `durable`, the bytes are
    fsynced before the rename, so they also survive a power cut; derived files that can be made
    again (a snapshot's manifest) skip that cost.
    """
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=".fscas-", suffix=".partial", dir=folder)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; a manifest is not a secret
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
