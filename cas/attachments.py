"""Deadline's job `attachments` document: which asset roots a job has, where their input manifests
are, and which folders under them hold outputs (the `attachments` field of CreateJob/GetJob).

    {"manifests": [{"rootPath", "rootPathFormat", "fileSystemLocationName", "inputManifestPath",
                    "inputManifestHash", "outputRelativeDirectories"}], "fileSystem": "COPIED"|"VIRTUAL"}

A worker materialises each root in its session folder under `assetroot-<shake_256(rootPath), 10
bytes hex>` (`dest_dir_name`, Deadline's `_get_unique_dest_dir_name`). Parsing refuses, naming the
field, anything a worker could be led astray by: a relative root, an output folder that climbs out
of its root, an input manifest path outside `Manifests/`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Literal

import attrs

from fscas.errors import ConfigError
from fscas.pathmapping import path_format_of

__all__ = ["AttachmentRoot", "Attachments", "dest_dir_name"]

FileSystem = Literal["COPIED", "VIRTUAL"]


def dest_dir_name(root_path: str) -> str:
    """The session-folder name Deadline's worker gives an asset root: `assetroot-` + 20 hex digits."""
    return "assetroot-" + hashlib.shake_256(root_path.encode()).hexdigest(10)


@attrs.frozen(kw_only=True)
class AttachmentRoot:
    """One entry of `manifests`: an asset root of the job."""

    root_path: str
    root_path_format: Literal["POSIX", "WINDOWS"]
    file_system_location_name: str | None = None
    input_manifest_path: str | None = None
    """Relative to the store's `Manifests/` (as Deadline stores it)."""
    input_manifest_hash: str | None = None
    output_relative_directories: tuple[str, ...] = ()

    @property
    def input_manifest_key(self) -> str | None:
        """The input manifest's key under the store's root."""
        return f"Manifests/{self.input_manifest_path}" if self.input_manifest_path else None

    def output_dirs(self) -> list[tuple[str, ...]]:
        """Each output folder as path parts, in either format's separators (a Windows job's
        `renders\\out` on a Linux worker is `renders/out`, as Deadline converts it)."""
        return [tuple(p for p in d.replace("\\", "/").split("/") if p not in ("", "."))
                for d in self.output_relative_directories]


@attrs.frozen(kw_only=True)
class Attachments:
    """A job's attachments document, checked."""

    manifests: tuple[AttachmentRoot, ...]
    file_system: FileSystem = "COPIED"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Attachments:
        """Read the document from a JSON file; errors name the file and the field."""
        where = os.fspath(path)
        try:
            with open(where, encoding="utf-8") as f:
                doc = json.load(f)
        except OSError as e:
            raise ConfigError(f"{where}: cannot read the attachments document: {e.strerror}") from e
        except ValueError as e:
            raise ConfigError(f"{where}: not JSON: {e}") from e
        return cls.from_json(doc, where=where)

    @classmethod
    def from_json(cls, doc: Any, *, where: str = "attachments") -> Attachments:
        """The document from its parsed JSON (a dict), or a string of it.

        Raises:
            ConfigError: a missing or wrong field, named (`manifests[1].rootPath`).
        """
        if isinstance(doc, str):
            try:
                doc = json.loads(doc)
            except ValueError as e:
                raise ConfigError(f"{where}: not JSON: {e}") from e
        if not isinstance(doc, Mapping) or not isinstance(doc.get("manifests"), list):
            raise ConfigError(f"{where}: expected {{\"manifests\": [...], \"fileSystem\": ...}}")
        system = doc.get("fileSystem") or "COPIED"
        if system not in ("COPIED", "VIRTUAL"):
            raise ConfigError(f"{where}: fileSystem must be COPIED or VIRTUAL, not {system!r}")
        roots = tuple(_root(m, f"{where}: manifests[{i}]") for i, m in enumerate(doc["manifests"]))
        return cls(manifests=roots, file_system="VIRTUAL" if system == "VIRTUAL" else "COPIED")


def _root(m: Any, where: str) -> AttachmentRoot:
    if not isinstance(m, Mapping):
        raise ConfigError(f"{where}: expected an object")
    root = _text(m, "rootPath", where, required=True)
    assert root is not None
    fmt = m.get("rootPathFormat", "").upper() if isinstance(m.get("rootPathFormat"), str) else ""
    if fmt not in ("POSIX", "WINDOWS"):
        raise ConfigError(f"{where}.rootPathFormat: POSIX or WINDOWS, not {m.get('rootPathFormat')!r}")
    pure = PureWindowsPath(root) if fmt == "WINDOWS" else PurePosixPath(root)
    if path_format_of(root) != fmt or not pure.is_absolute():
        raise ConfigError(f"{where}.rootPath: {root!r} is not an absolute {fmt} path")
    manifest = _text(m, "inputManifestPath", where)
    if manifest is not None and (manifest.startswith("/") or ".." in manifest.split("/") or "\\" in manifest):
        raise ConfigError(f"{where}.inputManifestPath: {manifest!r} is not a key under Manifests/")
    outputs = m.get("outputRelativeDirectories") or []
    if not isinstance(outputs, list) or not all(isinstance(d, str) for d in outputs):
        raise ConfigError(f"{where}.outputRelativeDirectories: expected a list of strings")
    for d in outputs:
        parts = d.replace("\\", "/").split("/")
        if ".." in parts or d.startswith(("/", "\\")) or PureWindowsPath(d).drive or "\0" in d:
            raise ConfigError(f"{where}.outputRelativeDirectories: {d!r} leaves its root")
    return AttachmentRoot(root_path=root, root_path_format="WINDOWS" if fmt == "WINDOWS" else "POSIX",
                          file_system_location_name=_text(m, "fileSystemLocationName", where),
                          input_manifest_path=manifest, input_manifest_hash=_text(m, "inputManifestHash", where),
                          output_relative_directories=tuple(outputs))


def _text(m: Mapping[str, Any], name: str, where: str, *, required: bool = False) -> str | None:
    value = m.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or "\0" in value:
        raise ConfigError(f"{where}.{name}: expected a non-empty string, got {value!r}")
    return value
