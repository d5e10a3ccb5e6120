"""Argument types of the CLI: a bad value is a usage error (exit 2) naming the argument, before any work."""

from __future__ import annotations

import argparse
import os
import re

__all__ = ["add_filters", "existing_folder", "existing_path", "non_negative_float", "positive_int", "size"]


def existing_folder(value: str) -> str:
    """A folder that exists."""
    if not os.path.isdir(value):
        raise argparse.ArgumentTypeError(f"{value}: {'not a folder' if os.path.exists(value) else 'no such folder'}")
    return value


def existing_path(value: str) -> str:
    """A file or folder that exists (links are not followed by the commands that take one)."""
    if not os.path.lexists(value):
        raise argparse.ArgumentTypeError(f"{value}: no such file or folder")
    return value


def non_negative_float(value: str) -> float:
    """A number of seconds, zero or more."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 or more")
    return number


def positive_int(value: str) -> int:
    """A count, one or more."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return number


_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*", re.IGNORECASE)


def size(value: str) -> int:
    """A size in bytes: `1000`, `500M`, `1.5G`, `3GiB` (K/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024)."""
    m = _SIZE.fullmatch(value)
    if not m:
        raise argparse.ArgumentTypeError(f"{value!r} is not a size (examples: 1000, 500M, 3GiB)")
    return int(float(m[1]) * _UNITS[(m[2] or "").lower()])


def add_filters(p: argparse.ArgumentParser) -> None:
    """`-i/--include GLOB` and `-e/--exclude GLOB`, repeatable, as `fscas.manifests.snapshot` takes them."""
    p.add_argument("-i", "--include", action="append", default=[], metavar="GLOB",
                   help="only files matching GLOB (relative to ROOT; ** spans folders); repeatable")
    p.add_argument("-e", "--exclude", action="append", default=[], metavar="GLOB",
                   help="leave out files matching GLOB; DIR/** prunes a folder; repeatable")
