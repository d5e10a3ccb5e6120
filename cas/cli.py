"""The `fscas` command line: a thin shell over the library.

Output goes to stdout, progress and warnings to stderr; `--json` prints only JSON.
Exit codes: 0 ok, 1 failed, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fscas import __version__
from fscas.cli_conformance import add_conformance_commands
from fscas.cli_manifest import add_manifest_commands
from fscas.cli_publish import add_publish_commands
from fscas.cli_store import add_store_commands
from fscas.errors import ConfigError, FscasError, ManifestError, UnsafePathError

__all__ = ["main"]

_INPUT_ERRORS = (ConfigError, ManifestError, UnsafePathError)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subcommands register themselves)."""
    parser = argparse.ArgumentParser(prog="fscas", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fscas {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    add_store_commands(groups, add_manifest_commands(groups))
    add_publish_commands(groups)
    add_conformance_commands(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args = build_parser().parse_args(argv)
    # gcsfs logs every retry of an unreachable endpoint with a traceback; our error says it once.
    logging.getLogger("gcsfs").setLevel(logging.CRITICAL)
    try:
        return int(args.handler(args))
    except _INPUT_ERRORS as e:
        print(f"fscas: error: {e}", file=sys.stderr)
        return 2
    except FscasError as e:
        print(f"fscas: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fscas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
