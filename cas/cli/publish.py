"""`fscas publish` and `fscas fetch`: job results with Bacalhau's S3 publisher semantics."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from fscas.cli.args import existing_path, size
from fscas.cli.output import emit_json, warn

__all__ = ["add_publish_commands", "read_spec"]


def add_publish_commands(groups: Any) -> None:
    """Register `fscas publish` and `fscas fetch`."""
    p = groups.add_parser("publish", help="publish a file or folder as Bacalhau's S3 publisher does, on any backend")
    p.add_argument("path", type=existing_path, help="the result file or folder to publish")
    p.add_argument("url", help="s3://bucket/key-{jobID}-{date}[,opt=endpoint=...,opt=region=...,opt=compress=true]")
    p.add_argument("--compress", action="store_true", default=None, help="one tar.gz object")
    p.add_argument("--gzip-level", type=int, choices=range(1, 10), default=9, metavar="1-9",
                   help="with --compress: 1 is fastest, 9 smallest (the default)")
    p.add_argument("--job-id", default="", help="fills {jobID} in the key template")
    p.add_argument("--execution-id", default="", help="fills {executionID} in the key template")
    p.add_argument("--node-id", default="", help="fills {nodeID} in the key template")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the published-result spec as JSON")
    out.add_argument("--yaml", action="store_true", help="print the published-result spec as YAML (the default)")
    p.set_defaults(handler=_publish)

    p = groups.add_parser("fetch", help="download a published result, verify it and extract it safely")
    p.add_argument("source", help="a publish URL, or a file holding a published-result spec (JSON or YAML)")
    p.add_argument("dest", help="the folder to create (it must not exist, or be empty)")
    p.add_argument("--max-size", type=size, default=None, metavar="SIZE",
                   help="refuse a result that expands past SIZE (500M, 3GiB...); default: the free space of "
                        "DEST's filesystem, minus a margin")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(handler=_fetch)


def read_spec(text: str) -> dict[str, Any]:
    """A published-result spec from JSON, or from the YAML `fscas publish --yaml` prints.

    Raises:
        ConfigError: neither.
    """
    from fscas.errors import ConfigError

    try:
        spec = json.loads(text)
    except RecursionError:
        raise ConfigError("not a published-result spec: nested too deeply") from None
    except ValueError:
        spec = {"Params": {}}
        for line in text.splitlines():
            name, sep, value = line.strip().partition(": ")
            if not sep:
                continue
            try:
                parsed = json.loads(value)
            except (ValueError, RecursionError):
                parsed = value
            (spec if name == "Type" else spec["Params"])[name] = parsed
    if not isinstance(spec, dict) or not spec.get("Params", spec).get("Bucket"):
        raise ConfigError("not a published-result spec (JSON or YAML with Bucket and Key)")
    return spec


def _publish(args: argparse.Namespace) -> int:
    from fscas.results.publisher import publish

    result = publish(args.path, args.url, compress=args.compress, job_id=args.job_id,
                     execution_id=args.execution_id, node_id=args.node_id,
                     on_skip=lambda rel, why: warn(f"skipped {rel}: {why}"), gzip_level=args.gzip_level)
    if args.json:
        emit_json(result.as_spec())
    else:
        sys.stdout.write(result.to_yaml())
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from fscas.results.fetcher import fetch
    from fscas.results.publisher import PublishedResult

    source: Any = args.source
    if os.path.isfile(source):
        with open(source, encoding="utf-8") as f:
            source = PublishedResult.from_spec(read_spec(f.read()))
    path = fetch(source, args.dest, max_bytes=args.max_size)
    files = sum(len(fs) for _, _, fs in os.walk(path))
    if args.json:
        emit_json({"dest": str(path), "files": files})
    else:
        print(f"{path}: {files} files")
    return 0
