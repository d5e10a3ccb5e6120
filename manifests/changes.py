"""Compare manifests with each other or with a folder on disk."""

from __future__ import annotations

import os
from collections.abc import Sequence

import attrs

from fscas.manifests.model import Manifest
from fscas.manifests.snapshotter import HashCacheArg, snapshot
from fscas.manifests.walker import GlobFilter, SkipHandler, walk

__all__ = ["ManifestDiff", "diff", "diff_tree"]

#: `_diff.py: _fast_file_list_to_manifest_diff`: an mtime within 1 µs counts as unchanged.
MTIME_SLACK_US = 1


def _sorted(paths: set[str]) -> tuple[str, ...]:
    return tuple(sorted(paths))


@attrs.frozen(kw_only=True)
class ManifestDiff:
    """Paths that are new, modified or deleted in the second side relative to the first."""

    new: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.new or self.modified or self.deleted)


def diff(old: Manifest, new: Manifest) -> ManifestDiff:
    """Compare two manifests by content: a path is modified when its hash or size changed.

    Runs in time linear in the number of paths (one dict per side).
    """
    a, b = old.by_path(), new.by_path()
    modified = {p for p, e in b.items() if p in a and (a[p].hash != e.hash or a[p].size != e.size)}
    return ManifestDiff(new=_sorted(b.keys() - a.keys()), modified=_sorted(modified),
                        deleted=_sorted(a.keys() - b.keys()))


def diff_tree(
    root: str | os.PathLike[str],
    manifest: Manifest,
    *,
    exact: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    hash_cache: HashCacheArg = None,
    on_skip: SkipHandler | None = None,
) -> ManifestDiff:
    """Compare the files under `root` with `manifest`.

    Fast mode (Deadline's rule): modified when the size differs or the mtime differs by more than
    1 µs. Exact mode hashes the files (through the hash cache) and compares hashes and sizes.

    Raises:
        SnapshotError: `root` is not a folder or a file cannot be read.
        ConfigError: a glob is malformed.
    """
    if exact:
        return diff(manifest, snapshot(root, include=include, exclude=exclude,
                                       hash_cache=hash_cache, on_skip=on_skip))
    known = manifest.by_path()
    seen: set[str] = set()
    modified: set[str] = set()
    filt = GlobFilter.from_globs(include, exclude)
    for e in walk(os.path.abspath(os.fspath(root)), filt, on_skip):
        seen.add(e.rel)
        m = known.get(e.rel)
        if m is not None and (e.stat.st_size != m.size
                              or abs(e.stat.st_mtime_ns // 1000 - m.mtime) > MTIME_SLACK_US):
            modified.add(e.rel)
    return ManifestDiff(new=_sorted(seen - known.keys()), modified=_sorted(modified),
                        deleted=_sorted(known.keys() - seen))
