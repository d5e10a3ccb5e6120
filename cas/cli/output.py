"""Shared output helpers of the CLI: JSON on stdout, progress and warnings on stderr, nothing unmasked."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fscas.errors import redact

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

__all__ = ["emit_json", "masked", "progress_bar", "set_secrets", "warn"]

_SECRETS: set[str] = set()  # this process's command line and environment: set once by main()


def set_secrets(secrets: Iterable[str]) -> None:
    """The credential values to mask in everything the CLI prints (see `fscas.errors.redact`)."""
    _SECRETS.clear()
    _SECRETS.update(secrets)


def emit_json(obj: Any) -> None:
    """Print one JSON document on stdout (non-ASCII kept; lone surrogates escaped).

    Masked by structure: a string that is a URL (or `,opt=` options, a connection string) has the
    credential slots masked (`fscas.errors.redact`'s patterns: userinfo, `secret=`, `sig=`...). Keys,
    paths and bucket names are printed as they are, even when a secret is also a word in them
    (a secret `fscas` must not turn `Manifests/mp/fscas.manifest` into `***`). Text from a third
    party's error goes through `masked` before it is put in the document.
    """
    text = json.dumps(_masked_urls(obj), ensure_ascii=True, sort_keys=True)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def masked(text: str) -> str:
    """Free text (a third-party error) with every known secret value and credential pattern masked."""
    return redact(text, _SECRETS)


def _masked_urls(obj: Any) -> Any:
    if isinstance(obj, str):
        return redact(obj) if ("://" in obj or ",opt=" in obj or ("=" in obj and ";" in obj)) else obj
    if isinstance(obj, dict):
        return {k: _masked_urls(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_masked_urls(v) for v in obj]
    return obj


def warn(message: str) -> None:
    """Print a warning on stderr."""
    print(f"fscas: warning: {redact(message, _SECRETS)}", file=sys.stderr)


def progress_bar(desc: str, *, force: bool = False) -> Callback | None:
    """A tqdm bar in bytes with a files count, on stderr when it is a terminal (or `force`), else None.

    Files and bytes both: three large files would otherwise hide 5,000 small ones. The bar is
    redrawn as files finish (at most 5 times a second), so rate and elapsed time keep moving while
    small files go by without many bytes."""
    if not (force or sys.stderr.isatty()):
        return None
    from fsspec.callbacks import TqdmCallback  # lazily: fsspec costs 60 ms of start-up

    class FilesAndBytes(TqdmCallback):  # type: ignore[misc]  # fsspec ships no type information
        files = done = 0
        shown = 0.0

        def set_files(self, files: int) -> None:
            self.files, self.done = files, 0

        def file_done(self) -> None:
            import time

            self.done += 1
            if (now := time.monotonic()) - self.shown >= 0.2 or self.done == self.files:
                self.shown = now
                self.tqdm.set_postfix_str(f"{self.done}/{self.files} files", refresh=True)

    return FilesAndBytes(tqdm_kwargs={"desc": redact(desc, _SECRETS), "unit": "B", "unit_scale": True,
                                      "unit_divisor": 1024, "file": sys.stderr, "leave": False})
