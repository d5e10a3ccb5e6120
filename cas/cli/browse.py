"""`fscas ls` and `fscas cat`: what a store holds, and one object's bytes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fscas.cli.common import open_store_of, store_arg
from fscas.cli.output import emit_json

__all__ = ["add_browse_commands"]


def add_browse_commands(groups: Any) -> None:
    """Register `fscas ls` and `fscas cat`."""
    p = groups.add_parser("ls", help="list the manifests in a store (inputs and outputs), or its Data objects")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--inputs", action="store_const", const="input", dest="kind",
                      help="only input manifests (Manifests/FARM/QUEUE/Inputs/...)")
    kind.add_argument("--outputs", action="store_const", const="output", dest="kind",
                      help="only job output manifests")
    kind.add_argument("--data", action="store_const", const="data", dest="kind",
                      help="the Data objects instead of the manifests")
    p.add_argument("--farm-id", default=None, help="only manifests of this farm")
    p.add_argument("--queue-id", default=None, help="only manifests of this queue")
    store_arg(p, positional=True)
    p.set_defaults(handler=_ls)

    p = groups.add_parser("cat", help="print one stored object's bytes (a manifest key, or a Data key verified)")
    p.add_argument("key", help="a key under the store: Manifests/... or Data/<hash>.xxh128")
    store_arg(p)
    p.set_defaults(handler=_cat)


def _when(seconds: float | None) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S") if seconds else "-"


def _ls(args: argparse.Namespace) -> int:
    from fscas.keys import DATA
    from fscas.runner import run_sync

    with open_store_of(args) as store:
        if args.kind == "data":
            async def listed() -> list[Any]:
                return [o async for o in store.aio.backend.list(DATA + "/")]

            rows = [{"key": o.key, "kind": "data", "size": o.size, "last_modified": o.last_modified}
                    for o in run_sync(listed())]
        else:
            rows = [{"key": m.key, "kind": m.kind, "size": m.size, "last_modified": m.last_modified}
                    for m in store.manifests(kind=args.kind, farm_id=args.farm_id, queue_id=args.queue_id)]
    rows.sort(key=lambda r: r["key"])
    if args.json:
        emit_json({"store": store.url, "objects": rows})
        return 0
    for r in rows:
        print(f"{r['kind']:<6}  {r['size']:>10}  {_when(r['last_modified'])}  {r['key']}")
    print(f"{len(rows)} {'objects' if args.kind == 'data' else 'manifests'}, "
          f"{sum(r['size'] for r in rows)} bytes", file=sys.stderr)
    return 0


def _cat(args: argparse.Namespace) -> int:
    from fscas.keys import digest_of_key
    from fscas.runner import run_sync

    with open_store_of(args) as store:
        digest = digest_of_key(args.key)
        data = store.get_bytes(digest) if digest else run_sync(store.aio.backend.get(args.key))
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0
