"""The benchmark tree: 10,000 files of 1-16 KiB in 100 folders plus 8 files of 128 MiB."""

from __future__ import annotations

import os
import random
from pathlib import Path

SMALL_FILES = 10_000
FOLDERS = 100
LARGE_FILES = 8
LARGE_SIZE = 128 << 20


def make_tree(root: Path, *, small: int = SMALL_FILES, large: int = LARGE_FILES, large_size: int = LARGE_SIZE,
              small_size: tuple[int, int] = (1024, 16 * 1024), folders: int = FOLDERS) -> int:
    """Create the tree under `root` (idempotent: an existing complete tree is kept); return total bytes."""
    marker = root.parent / f"{root.name}.complete-2"  # outside: Deadline skips dotfiles; -2: distinct large files
    rng = random.Random(42)
    sizes = [rng.randint(*small_size) for _ in range(small)]
    total = sum(sizes) + large * large_size
    if marker.exists():
        return total
    for i, size in enumerate(sizes):
        folder = root / "small" / f"dir{i % folders:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file{i:05d}.bin").write_bytes(rng.randbytes(size))
    (root / "large").mkdir(parents=True, exist_ok=True)
    for j in range(large):
        block = os.urandom(1 << 20)  # per file: identical large files would let fscas dedupe what rclone copies
        with open(root / "large" / f"big{j}.bin", "wb") as f:
            for k in range(large_size >> 20):
                f.write(block[k % 7 :] + block[: k % 7] if k % 2 else block)  # varied, cheap
    marker.touch()
    return total
