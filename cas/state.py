"""What an incremental command recorded: each manifest key it handled and that object's LastModified.

`outputs download --since` and `copy --since` keep one: a manifest whose key and LastModified are
recorded is not handled again. The file names the run it belongs to (stores, ids), so a state file
given to another run is refused rather than silently skipping what that run never did.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable

import attrs

from fscas.errors import ConfigError
from fscas.files import atomic_write_bytes

__all__ = ["SeenState"]


@attrs.define
class SeenState:
    """Manifest keys and the LastModified (seconds since 1970) each had when it was handled."""

    path: str
    version: str
    identity: dict[str, str]
    seen: dict[str, float]

    @classmethod
    def load(cls, path: str | os.PathLike[str], version: str, identity: dict[str, str], what: str) -> SeenState:
        """The state at `path` (empty if there is no file yet).

        Raises:
            ConfigError: not a state file of this `version`, or one of another run than `identity`
                (`what` names the run in the message: "download", "copy").
        """
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read())
        except FileNotFoundError:
            return cls(os.fspath(path), version, identity, {})
        except (OSError, ValueError, RecursionError) as e:
            raise ConfigError(f"{os.fspath(path)}: not a readable state file: {e or 'nested too deeply'}") from None
        if not isinstance(doc, dict) or doc.get("version") != version or not isinstance(doc.get("manifests"), dict):
            raise ConfigError(f"{os.fspath(path)}: not an fscas {what} state file")
        recorded = {k: doc.get(k) for k in identity}
        if recorded != identity:
            raise ConfigError(f"{os.fspath(path)}: the state of another {what} ({recorded}), not of {identity}")
        seen: dict[str, float] = {}
        for key, stamp in doc["manifests"].items():
            if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
                raise ConfigError(f"{os.fspath(path)}: manifests[{key!r}]: {stamp!r} is not a LastModified timestamp "
                                  "(seconds since 1970)")
            seen[str(key)] = float(stamp)
        return cls(os.fspath(path), version, identity, seen)

    def has(self, key: str, stamp: float | None) -> bool:
        """Whether `key` was handled when its LastModified was `stamp` (None: unknown, never recorded)."""
        return stamp is not None and self.seen.get(key) == stamp

    def record(self, handled: Iterable[tuple[str, float | None]]) -> None:
        """Remember these keys as handled (those without a LastModified cannot be and are not)."""
        self.seen.update((key, stamp) for key, stamp in handled if stamp is not None)

    def save(self) -> None:
        """Write the state: fsynced and renamed into place, never half-written."""
        doc = {"version": self.version, **self.identity, "manifests": dict(sorted(self.seen.items()))}
        atomic_write_bytes(self.path, json.dumps(doc, indent=1).encode())
