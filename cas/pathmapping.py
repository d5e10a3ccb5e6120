"""Path-mapping rules between the machines that wrote job outputs and the one that downloads them.

Deadline's rules JSON (`{"version": "pathmapping-1.0", "path_mapping_rules": [{"source_path_format":
"POSIX"|"WINDOWS", "source_path", "destination_path"}]}`, or the bare list), applied as Deadline's
`_PathMappingRuleApplier` does: the longest matching source prefix wins, by whole path parts;
Windows sources match case-insensitively with either separator. Unlike Deadline, rules of both
formats may be mixed: each path is matched against the rules of its own format (a drive letter or
a UNC share makes a Windows path).
"""

from __future__ import annotations

import json
import ntpath
import os
import posixpath
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

import attrs

from fscas.errors import ConfigError

__all__ = ["FileSystemLocation", "PathFormat", "PathMappingRule", "PathMappingRules", "innermost", "join_source",
           "path_format_of"]

PathFormat = Literal["POSIX", "WINDOWS"]


def path_format_of(path: str) -> PathFormat:
    """`WINDOWS` for a drive-letter or UNC path (`C:\\x`, `c:/x`, `\\\\server\\share`), else `POSIX`."""
    return "WINDOWS" if PureWindowsPath(path).drive else "POSIX"


def _parts(path: str, fmt: PathFormat) -> tuple[str, ...]:
    if fmt == "WINDOWS":
        return tuple(p.lower() for p in PureWindowsPath(path).parts)
    return PurePosixPath(path).parts


def join_source(root: str, rel: str) -> str:
    """`root` joined with a manifest path in the root's own OS path module, normalised (Deadline's
    `source_os_path.normpath(source_os_path.join(root, rel))`)."""
    module = ntpath if path_format_of(root) == "WINDOWS" else posixpath
    return str(module.normpath(module.join(root, rel)))


@attrs.frozen(kw_only=True)
class PathMappingRule:
    """Paths under `source_path` (written on a `source_path_format` machine) go under `destination_path`."""

    source_path_format: PathFormat
    source_path: str
    destination_path: str


def _tuple_of_rules(rules: Iterable[PathMappingRule]) -> tuple[PathMappingRule, ...]:
    return tuple(rules)


@attrs.frozen
class PathMappingRules:
    """A set of rules; `map` applies the longest one that matches a path."""

    rules: tuple[PathMappingRule, ...] = attrs.field(converter=_tuple_of_rules, factory=tuple)

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any] | list[Any], *, where: str = "rules") -> PathMappingRules:
        """Read Deadline's rules JSON (the `pathmapping-1.0` document or the bare list of rules).

        Raises:
            ConfigError: not such a document; the message names `where` and the field.
        """
        try:
            doc = json.loads(data) if isinstance(data, (str, bytes)) else data
        except ValueError as e:
            raise ConfigError(f"{where}: not JSON: {e}") from None
        except RecursionError:
            raise ConfigError(f"{where}: not path-mapping rules: nested too deeply") from None
        if isinstance(doc, dict):
            if doc.get("version", "pathmapping-1.0") != "pathmapping-1.0":
                raise ConfigError(f"{where}: unknown version {doc.get('version')!r}; expected pathmapping-1.0")
            doc = doc.get("path_mapping_rules")
        if not isinstance(doc, list):
            raise ConfigError(f"{where}: expected a list of rules or {{\"path_mapping_rules\": [...]}}")
        rules = []
        for i, item in enumerate(doc):
            try:
                fmt = str(item["source_path_format"]).upper()
                source, destination = item["source_path"], item["destination_path"]
            except (KeyError, TypeError):
                raise ConfigError(f"{where}: rule {i} needs source_path_format, source_path and "
                                  "destination_path") from None
            if fmt not in ("POSIX", "WINDOWS") or not isinstance(source, str) or not isinstance(destination, str):
                raise ConfigError(f"{where}: rule {i}: source_path_format must be POSIX or WINDOWS and both paths "
                                  "strings")
            rules.append(PathMappingRule(source_path_format="WINDOWS" if fmt == "WINDOWS" else "POSIX",
                                         source_path=source, destination_path=destination))
        return cls(tuple(rules))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PathMappingRules:
        """Read a rules file. Raises ConfigError naming the file."""
        try:
            with open(path, "rb") as f:
                return cls.from_json(f.read(), where=os.fspath(path))
        except OSError as e:
            raise ConfigError(f"{os.fspath(path)}: cannot read path-mapping rules: {e.strerror}") from None

    def __add__(self, other: PathMappingRules) -> PathMappingRules:
        return PathMappingRules(self.rules + other.rules)

    def match(self, path: str) -> tuple[PathMappingRule, tuple[str, ...]] | None:
        """The longest rule whose source is a prefix of `path` (by parts), and the parts after it."""
        fmt = path_format_of(path)
        parts = _parts(path, fmt)
        best: tuple[PathMappingRule, tuple[str, ...]] | None = None
        for rule in self.rules:
            if rule.source_path_format != fmt:
                continue
            source = _parts(rule.source_path, fmt)
            if parts[: len(source)] == source and (best is None or len(source) > len(_parts(best[0].source_path, fmt))):
                best = rule, _original_parts(path, fmt)[len(source):]  # the rest keeps its case
        return best

    def map(self, path: str) -> str | None:
        """`path` under the destination of its longest matching rule, or None if no rule matches."""
        found = self.match(path)
        return None if found is None else str(Path(found[0].destination_path).joinpath(*found[1]))


def _original_parts(path: str, fmt: PathFormat) -> tuple[str, ...]:
    return PureWindowsPath(path).parts if fmt == "WINDOWS" else PurePosixPath(path).parts


LocationType = Literal["LOCAL", "SHARED"]


@attrs.frozen(kw_only=True)
class FileSystemLocation:
    """A storage-profile file-system location: a named folder, LOCAL (uploaded) or SHARED (not uploaded)."""

    name: str
    path: str
    type: LocationType = "LOCAL"

    @classmethod
    def parse(cls, text: str) -> FileSystemLocation:
        """`NAME=PATH[:LOCAL|:SHARED]` (a Windows path keeps its drive colon).

        Raises:
            ConfigError: not in that form.
        """
        name, sep, rest = text.partition("=")
        if not sep or not name or not rest:
            raise ConfigError(f"{text!r}: a file-system location is NAME=PATH[:LOCAL|:SHARED]")
        path, _, kind = rest.rpartition(":")
        if kind.upper() in ("LOCAL", "SHARED") and path:
            return cls(name=name, path=path, type=_location_type(kind))
        return cls(name=name, path=rest)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> tuple[FileSystemLocation, ...]:
        """Locations from a storage profile JSON (`{"fileSystemLocations": [{"name", "path", "type"}]}`, as
        Deadline's GetStorageProfile answers) or a bare list of such objects.

        Raises:
            ConfigError: unreadable, or not such a document (the file and entry are named).
        """
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{os.fspath(path)}: cannot read file-system locations: {e}") from None
        except RecursionError:
            raise ConfigError(f"{os.fspath(path)}: not file-system locations: nested too deeply") from None
        items = doc.get("fileSystemLocations") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise ConfigError(f"{os.fspath(path)}: expected {{\"fileSystemLocations\": [...]}} or a list")
        try:
            return tuple(cls(name=str(i["name"]), path=str(i["path"]), type=_location_type(i.get("type", "LOCAL")))
                         for i in items)
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{os.fspath(path)}: every location needs a name, a path and a type of LOCAL or "
                              "SHARED") from None

    def contains(self, path: str) -> bool:
        """True when `path` is this location's folder or below it (by parts, Windows case-insensitively)."""
        fmt = path_format_of(self.path)
        if path_format_of(path) != fmt:
            return False
        mine = _parts(self.path, fmt)
        return _parts(path, fmt)[: len(mine)] == mine


def _location_type(value: object) -> LocationType:
    kind = str(value).upper()
    if kind == "LOCAL":
        return "LOCAL"
    if kind == "SHARED":
        return "SHARED"
    raise ValueError(kind)


def innermost(locations: Iterable[FileSystemLocation], path: str) -> FileSystemLocation | None:
    """The location with the longest folder that contains `path` (Deadline groups inputs this way)."""
    found = [loc for loc in locations if loc.contains(path)]
    return max(found, key=lambda loc: len(_parts(loc.path, path_format_of(loc.path))), default=None)
