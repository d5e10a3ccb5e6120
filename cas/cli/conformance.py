"""`fscas conformance` (backend x check matrix) and `fscas emulator run` (one emulator in the foreground)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from typing import Any

from fscas.cli.args import positive_int
from fscas.cli.output import emit_json

__all__ = ["add_conformance_commands"]

_EMULATOR_KINDS = ["s3", "seaweedfs", "gcs", "azure", "sftp", "webdav", "ftp"]


def add_conformance_commands(groups: Any) -> None:
    """Register `fscas conformance` and `fscas emulator`."""
    p = groups.add_parser("conformance", help="run the conformance suite on store URLs; print a backend x check matrix")
    p.add_argument("urls", nargs="*", metavar="URL", help="store URLs of existing buckets (options in the query)")
    p.add_argument("--emulators", action="store_true",
                   help="also start moto, SeaweedFS, fake-gcs-server, Azurite and SFTP, WebDAV and FTP servers "
                        "(plus file:// and memory://)")
    p.add_argument("--backends", action="store_true", help="list the installed backends and where each comes from")
    p.add_argument("--check", action="append", default=[], metavar="NAME", help="run only these checks")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=_conformance)

    group = groups.add_parser("emulator", help="run a local emulator for trying fscas out")
    sub = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("run", help="start one emulator in the foreground; print its store URL and environment")
    p.add_argument("kind", choices=_EMULATOR_KINDS, help="which server to start")
    p.add_argument("--bucket", default="fscas", help="the bucket (or container, or folder) to create")
    p.add_argument("--port", type=positive_int, default=None,
                   help="the port its API listens on, on 127.0.0.1 (default: a free one)")
    p.set_defaults(handler=_emulator_run)


def _targets(args: argparse.Namespace, stack: contextlib.ExitStack) -> list[tuple[str, str, dict[str, Any]]]:
    import tempfile

    from fscas.conformance.emulators import start_emulator
    from fscas.errors import ConfigError

    targets: list[tuple[str, str, dict[str, Any]]] = [(url, url, {}) for url in args.urls]
    if args.emulators:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="fscas-conf-"))
        targets.append(("file", folder + "/native", {}))
        targets.append(("memory", "memory://conformance", {}))
        for kind in _EMULATOR_KINDS:
            emulator = stack.enter_context(start_emulator(kind))
            emulator.create_bucket("fscas-conformance")
            targets.append((emulator.name, emulator.store_url("fscas-conformance"), emulator.options()))
            if kind == "s3":  # the generic backend over s3fs, beside the native one
                url = emulator.store_url("fscas-conformance", "generic")
                targets.append(("s3fs (fsspec)", f"{url}&backend=fsspec", emulator.options()))
        targets.append(("local (fsspec)", f"file://{folder}/generic?backend=fsspec", {}))
        targets.append(("memory (fsspec)", "memory://conformance-generic?backend=fsspec", {}))
    if not targets:
        raise ConfigError("give store URLs, or --emulators")
    return targets


def _list_backends(args: argparse.Namespace) -> int:
    from fscas.backends import available_backends

    rows = [(e.scheme, e.target, e.distribution) for e in available_backends()]
    rows.append(("(any other fsspec protocol)", "fscas.backends.generic:FsspecBackend.from_location", "fscas"))
    if args.json:
        emit_json({"backends": [{"scheme": s, "target": t, "distribution": d} for s, t, d in rows]})
        return 0
    width = max(len(r[0]) for r in rows)
    for scheme, target, dist in rows:
        print(f"{scheme.ljust(width)}  {target}  ({dist})")
    return 0


def _conformance(args: argparse.Namespace) -> int:
    from fscas.conformance.suite import CHECKS, run_suite
    from fscas.errors import ConfigError
    from fscas.runner import run_sync

    if args.backends:
        return _list_backends(args)
    unknown = [c for c in args.check if c not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check(s) {unknown}; choose from {sorted(CHECKS)}")
    with contextlib.ExitStack() as stack:
        targets = _targets(args, stack)
        results = {name: run_sync(run_suite(url, options, args.check or None)) for name, url, options in targets}
    failed = any(r.status == "fail" for rs in results.values() for r in rs)
    if args.json:
        emit_json({"ok": not failed, "results": [
            {"target": name, "check": r.check, "status": r.status, "detail": r.detail, "seconds": round(r.seconds, 3)}
            for name, rs in results.items() for r in rs]})
    else:
        _matrix(results)
    return 1 if failed else 0


def _matrix(results: dict[str, list[Any]]) -> None:
    names = list(results)
    checks = [r.check for r in next(iter(results.values()))]
    mark = {"pass": "pass", "fail": "FAIL", "not-supported": "n/s"}
    width = max(len(c) for c in checks)
    cols = [max(len(n), 4) for n in names]
    print("check".ljust(width) + "  " + "  ".join(n.ljust(w) for n, w in zip(names, cols, strict=True)))
    for i, check in enumerate(checks):
        cells = [mark[results[n][i].status].ljust(w) for n, w in zip(names, cols, strict=True)]
        print(check.ljust(width) + "  " + "  ".join(cells))
    for name, rs in results.items():
        for r in rs:
            if r.status != "pass":
                print(f"{name}: {r.check}: {r.status}: {r.detail.splitlines()[0] if r.detail else ''}", file=sys.stderr)


def _emulator_run(args: argparse.Namespace) -> int:
    from fscas.conformance.emulators import start_emulator

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM and SIGHUP clean up like Ctrl-C: process stopped, data removed

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    with start_emulator(args.kind, port=args.port) as emulator:
        emulator.create_bucket(args.bucket)
        print(f"store URL: {emulator.cli_url(args.bucket)}")
        for name, value in emulator.env().items():
            print(f"export {name}={value}")
        print("(Ctrl-C stops it and removes its data)", file=sys.stderr)
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            while emulator.process is not None and emulator.process.poll() is None:
                time.sleep(0.5)
    return 0
