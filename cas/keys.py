"""Deadline's key layout and manifest metadata, exactly as docs/reference/deadline-job-attachments.md §3 states.

Keys here are relative to the store's root prefix (the backend adds it), so
`{rootPrefix}/Data/{hash}.xxh128` is `data_key(hash)` on a backend opened at `.../rootPrefix`.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

from fscas.errors import ConfigError, ManifestError
from fscas.manifests import hash_bytes

__all__ = [
    "DATA",
    "EPOCH",
    "MANIFESTS",
    "asset_root_from_metadata",
    "data_key",
    "digest_of_key",
    "input_manifest_key",
    "iso_time",
    "legacy_data_key",
    "output_manifest_key",
    "output_metadata",
]

DATA = "Data"  # S3_DATA_FOLDER_NAME
MANIFESTS = "Manifests"  # S3_MANIFEST_FOLDER_NAME
EPOCH = "fscas-epoch"
"""fscas's own object: a random id that changes when the store may have lost objects (a new
bucket, a gc that deleted). Existence caches trust entries recorded under the current id only.
Deadline ignores it (it reads only Data/ and Manifests/)."""
_SUFFIX = ".xxh128"  # PR #167: hash algorithm as key suffix
_HEX = re.compile(r"[0-9a-f]{32}\Z")
_SEGMENT = re.compile(r"[^/\x00-\x1f\\]+\Z")


def _digest(digest: str) -> str:
    if not _HEX.match(digest):
        raise ConfigError(f"{digest!r} is not an xxh128 digest (32 lowercase hex characters)")
    return digest


def data_key(digest: str) -> str:
    """`Data/<hash>.xxh128`: where content with this xxh128 digest lives."""
    return f"{DATA}/{_digest(digest)}{_SUFFIX}"


def legacy_data_key(digest: str) -> str:
    """`Data/<hash>`: the pre-PR #167 name, read only when the suffixed key is absent."""
    return f"{DATA}/{_digest(digest)}"


def digest_of_key(key: str) -> str | None:
    """The digest a Data key names (suffixed or legacy), or None for any other key."""
    folder, _, name = key.partition("/")
    name = name.removesuffix(_SUFFIX)
    return name if folder == DATA and _HEX.match(name) else None


def _segment(value: str, field: str) -> str:
    if not _SEGMENT.match(value) or value in (".", ".."):
        raise ConfigError(f"{field} {value!r} cannot be one key segment")
    return value


def input_manifest_key(farm_id: str, queue_id: str, root: str, *, guid: str | None = None) -> str:
    """`Manifests/<farm>/<queue>/Inputs/<guid32hex>/<xxh128(root)>_input`; a fresh GUID per call."""
    folder = guid or uuid.uuid4().hex
    return "/".join([MANIFESTS, _segment(farm_id, "farm id"), _segment(queue_id, "queue id"), "Inputs",
                     _segment(folder, "guid"), f"{hash_bytes(root.encode('utf-8', 'surrogatepass'))}_input"])


def iso_time(seconds: float) -> str:
    """Deadline's `_float_to_iso_datetime_string`: `%Y-%m-%dT%H:%M:%S.%fZ`, µs from the fraction."""
    whole = int(seconds)
    t = datetime.fromtimestamp(whole, UTC) + timedelta(microseconds=int((seconds - whole) * 1e6))
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def output_manifest_key(farm_id: str, queue_id: str, job_id: str, step_id: str, task_id: str | None,
                        session_action_id: str, start_time: float, root: str,
                        file_system_location_name: str | None = None) -> str:
    """`Manifests/<farm>/<queue>/<job>/<step>[/<task>]/<ISO µs Z>_<sessionAction>/<xxh128(fsl+root)>_output`."""
    ids = [_segment(v, f) for v, f in ((farm_id, "farm id"), (queue_id, "queue id"), (job_id, "job id"),
                                       (step_id, "step id"))]
    if task_id is not None:
        ids.append(_segment(task_id, "task id"))
    folder = _segment(f"{iso_time(start_time)}_{session_action_id}", "session action id")
    name = hash_bytes(((file_system_location_name or "") + root).encode("utf-8", "surrogatepass"))
    return "/".join([MANIFESTS, *ids, folder, f"{name}_output"])


def output_metadata(root: str, file_system_location_name: str | None = None) -> dict[str, str]:
    """Deadline's output-manifest metadata: `asset-root` (ASCII), else also JSON-quoted `asset-root-json`."""
    if root.isascii():
        meta = {"asset-root": root}
    else:
        quoted = json.dumps(root, ensure_ascii=True)
        meta = {"asset-root": quoted, "asset-root-json": quoted}
    if file_system_location_name:
        meta["file-system-location-name"] = file_system_location_name
    return meta


def asset_root_from_metadata(metadata: dict[str, str], key: str) -> str:
    """Deadline's `_get_asset_root_from_metadata`: `asset-root-json` first, else `asset-root`.

    Raises:
        ManifestError: neither is present (Deadline's MissingAssetRootError), naming the key.
    """
    if "asset-root-json" in metadata:
        try:
            root = json.loads(metadata["asset-root-json"])
        except (ValueError, RecursionError):
            raise ManifestError(f"{key}: metadata asset-root-json is not a JSON string") from None
        if isinstance(root, str):
            return root
        raise ManifestError(f"{key}: metadata asset-root-json is not a JSON string")
    if "asset-root" in metadata:
        return metadata["asset-root"]
    raise ManifestError(f"{key}: output manifest has no asset-root metadata")
