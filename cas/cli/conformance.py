"""`fscas conformance` (backend x check matrix) and `fscas emulator run` (one emulator in the foreground)."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import time
from typing import Any

from fscas.cli.args import positive_int
from fscas.cli.output import emit_json, masked

__all__ = ["add_conformance_commands"]

_SUITE_EMULATORS = ["moto", "seaweedfs", "gcs", "azure", "sftp", "webdav", "ftp"]
"""The emulators `--emulators` starts, in the order of the matrix (`s3` is another name of moto)."""


def add_conformance_commands(groups: Any) -> None:
    """Register `fscas conformance` and `fscas emulator`."""
    p = groups.add_parser("conformance", help="run the conformance suite on store URLs; print a backend x check matrix")
    p.add_argument("urls", nargs="*", metavar="URL", help="store URLs of existing buckets (options in the query)")
    p.add_argument("--emulators", nargs="?", const=",".join(_SUITE_EMULATORS), default=None, metavar="KIND,...",
                   type=_kinds, help="also start local emulators: all of them (moto, seaweedfs, gcs, azure, sftp, "
                                     "webdav, ftp, plus file:// and memory://), or the ones named (--emulators "
                                     "s3,gcs); one that cannot start is shown as n/a with what it needs")
    p.add_argument("--backends", action="store_true", help="list the installed backends and where each comes from")
    p.add_argument("--check", action="append", default=[], metavar="NAME", help="run only these checks")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=_conformance)

    group = groups.add_parser("emulator", help="run a local emulator for trying fscas out")
    sub = group.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("run", help="start one emulator in the foreground; print its store URLs and environment")
    p.add_argument("kind", choices=_emulator_kinds(), help="which server to start (s3 is moto)")
    p.add_argument("--bucket", action="append", default=[], metavar="NAME",
                   help="a bucket (or container, or folder) to create; repeatable (default: fscas)")
    p.add_argument("--port", type=positive_int, default=None,
                   help="the port its API listens on, on 127.0.0.1 (default: a free one)")
    p.set_defaults(handler=_emulator_run)


def _emulator_kinds() -> list[str]:
    return ["s3", *_SUITE_EMULATORS]


def _kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in _emulator_kinds()]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"unknown emulator {', '.join(unknown) or text!r}; choose from "
                                         f"{', '.join(_emulator_kinds())}")
    return list(dict.fromkeys("moto" if k == "s3" else k for k in kinds))


Target = tuple[str, str, dict[str, Any]]
"""(column name, store URL, options) of one store the suite runs on."""


def _targets(args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[list[Target], dict[str, str]]:
    """The stores to run on, and the emulators that could not start (name: why, in one line)."""
    import tempfile

    from fscas.conformance.emulators import EmulatorError, start_emulator
    from fscas.errors import ConfigError, redact

    targets: list[Target] = [(redact(url), url, {}) for url in args.urls]
    skipped: dict[str, str] = {}
    if args.emulators:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="fscas-conf-"))
        targets.append(("file", folder + "/native", {}))
        targets.append(("memory", "memory://conformance", {}))
        for kind in args.emulators:
            try:
                emulator = stack.enter_context(start_emulator(kind))
            except EmulatorError as e:
                skipped[kind] = str(e).splitlines()[0]
                continue
            emulator.create_bucket("fscas-conformance")
            targets.append((emulator.name, emulator.store_url("fscas-conformance"), emulator.options()))
            if kind == "moto":  # the generic backend over s3fs, beside the native one
                url = emulator.store_url("fscas-conformance", "generic")
                targets.append(("s3fs (fsspec)", f"{url}&backend=fsspec", emulator.options()))
        targets.append(("local (fsspec)", f"file://{folder}/generic?backend=fsspec", {}))
        targets.append(("memory (fsspec)", "memory://conformance-generic?backend=fsspec", {}))
    if not targets:
        raise ConfigError("give store URLs, or --emulators")
    return targets, skipped


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
    from fscas.conformance.suite import CHECKS, run_suite, unusable
    from fscas.errors import ConfigError
    from fscas.runner import run_sync

    if args.backends:
        return _list_backends(args)
    unknown = [c for c in args.check if c not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check(s) {unknown}; choose from {sorted(CHECKS)}")
    with contextlib.ExitStack() as stack:
        targets, skipped = _targets(args, stack)
        results: dict[str, list[Any]] = {}
        for name, url, options in targets:
            if (why := run_sync(unusable(url, options))) is not None:  # a missing bucket is one error, not 20
                skipped[name] = why
                continue
            results[name] = run_sync(run_suite(url, options, args.check or None))
    unreachable = [name for name, _, _ in targets if name in skipped]  # a store named or started, then unusable
    failed = bool(unreachable) or any(r.status == "fail" for rs in results.values() for r in rs)
    if args.json:
        emit_json({"ok": not failed, "results": [
            {"target": name, "check": r.check, "status": r.status, "detail": masked(r.detail),
             "seconds": round(r.seconds, 3)} for name, rs in results.items() for r in rs] + [
            {"target": name, "check": None, "status": "n/a", "detail": masked(why)} for name, why in skipped.items()]})
    else:
        _matrix(results, skipped, args.check or list(CHECKS))
    return 1 if failed else 0


def _matrix(results: dict[str, list[Any]], skipped: dict[str, str], checks: list[str]) -> None:
    names = [*results, *skipped]
    mark = {"pass": "pass", "fail": "FAIL", "not-supported": "n/s"}
    width = max(len(c) for c in checks)
    cols = [max(len(n), 4) for n in names]
    print("check".ljust(width) + "  " + "  ".join(n.ljust(w) for n, w in zip(names, cols, strict=True)))
    for i, check in enumerate(checks):
        cells = [(mark[results[n][i].status] if n in results else "n/a").ljust(w) for n, w in zip(names, cols,
                                                                                                 strict=True)]
        print(check.ljust(width) + "  " + "  ".join(cells))
    for name, rs in results.items():
        for r in rs:
            if r.status != "pass":
                detail = masked(r.detail.splitlines()[0]) if r.detail else ""
                print(f"{name}: {r.check}: {r.status}: {detail}", file=sys.stderr)
    for name, why in skipped.items():
        print(f"{name}: n/a: {masked(why)}", file=sys.stderr)


def _emulator_run(args: argparse.Namespace) -> int:
    from fscas.conformance.emulators import EMULATORS, start_emulator

    buckets = args.bucket or ["fscas"]
    for bucket in buckets:  # a name the server would refuse is refused before it starts
        EMULATORS[args.kind].check_bucket(bucket)

    def stop(signum: int, frame: Any) -> None:
        # SIGTERM and SIGHUP clean up like Ctrl-C (process stopped, data removed), and once: a second
        # Ctrl-C while it does would leave the data behind (on /dev/shm, memory until a reboot).
        for sig in ends:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    ends = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for sig in ends:
        signal.signal(sig, stop)
    try:
        with start_emulator(args.kind, port=args.port) as emulator:
            for bucket in buckets:
                emulator.create_bucket(bucket)
                print(f"store URL: {emulator.cli_url(bucket)}")
            for name, value in emulator.env().items():
                print(f"export {name}={shlex.quote(value)}")
            print("(Ctrl-C stops it and removes its data)", file=sys.stderr)
            sys.stdout.flush()
            while emulator.process is not None and emulator.process.poll() is None:
                time.sleep(0.5)
    except KeyboardInterrupt:  # also while it starts: start_emulator stopped it and removed its data
        pass
    return 0
