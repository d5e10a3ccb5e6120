"""The `fscas` command line: a thin shell over the library.

Output goes to stdout, progress and warnings to stderr; `--json` prints only JSON.
Exit codes: 0 ok, 1 failed, 2 usage or input error. Every error is one line on stderr, with no
credential in it; `--debug` (or FSCAS_DEBUG=1) adds the traceback, redacted the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence

from fscas import __version__
from fscas.cli.attachment import add_attachment_commands
from fscas.cli.browse import add_browse_commands
from fscas.cli.conformance import add_conformance_commands
from fscas.cli.copying import add_copy_commands
from fscas.cli.manifest import add_manifest_commands, add_manifest_transfer_commands
from fscas.cli.output import set_secrets
from fscas.cli.outputs import add_outputs_commands
from fscas.cli.publish import add_publish_commands
from fscas.cli.session import add_session_commands
from fscas.cli.store import add_store_commands
from fscas.errors import ConfigError, FscasError, ManifestError, UnsafePathError, redact, secrets_in

__all__ = ["COMMANDS", "build_parser", "main"]

_INPUT_ERRORS = (ConfigError, ManifestError, UnsafePathError)
_SECRET_ENV = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "ACCOUNT_KEY", "STORAGE_KEY", "CONNECTION_STRING", "SAS")


class _Parser(argparse.ArgumentParser):
    """argparse, plus "did you mean" for a misspelt option or command (subparsers inherit the class).

    Suggestions come from the parsers' own actions and choices, never from argparse's English error
    text (which has changed between CPython patch releases); an unknown option is reported with the
    usage of the command it was given to, not the top level's.
    """

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        ns, extras = super().parse_known_args(args, namespace)
        if not hasattr(ns, "_parser"):  # the innermost command's parser finishes first and wins
            ns._parser = self
        return ns, extras

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            command: argparse.ArgumentParser = getattr(ns, "_parser", self)
            command.error(f"unrecognized arguments: {' '.join(extras)}{_hint(self, command, extras)}")
        return ns

    def _check_value(self, action: argparse.Action, value: object) -> None:
        import difflib

        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from {', '.join(choices)}){hint}")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((dict(a.choices) for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def _own_long_options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for action in parser._actions for o in action.option_strings if o.startswith("--")}


def _hint(root: argparse.ArgumentParser, command: argparse.ArgumentParser, words: Sequence[str]) -> str:
    """" (did you mean --x?)" from the command's own options, else which command has the option."""
    import difflib

    own = _own_long_options(command)
    for word in words:
        option = word.split("=", 1)[0]
        if not option.startswith("--"):
            continue
        if close := [c for c in difflib.get_close_matches(option, sorted(own), n=2) if c != option]:
            return f" (did you mean {close[0]}?)"
        if owners := [prog for prog, p in _all_commands(root) if option in _own_long_options(p) and p is not command]:
            return f" ({option} is an option of '{owners[0]}')"
    return ""


def _all_commands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for sub in _subcommands(parser).values():
        yield sub.prog, sub
        yield from _all_commands(sub)


def _long_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every long option of `parser` and of its subcommands, all the way down."""
    found = _own_long_options(parser)
    for _, sub in _all_commands(parser):
        found |= _own_long_options(sub)
    return found


def _check_long_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Refuse a misspelt long option before argparse takes its value for a positional argument."""
    known = _long_options(parser) | {"--help", "--version"}
    command = parser
    for word in argv:
        if word == "--":
            break
        if not word.startswith("-") and word in (subs := _subcommands(command)):
            command = subs[word]
        option = word.split("=", 1)[0]
        if option.startswith("--") and not any(k.startswith(option) for k in known):
            command.error(f"unrecognized arguments: {option}{_hint(parser, command, [option])}")


#: The top-level commands each registrar adds, in the order `fscas --help` lists them.
COMMANDS: dict[str, tuple[str, ...]] = {
    "manifest": ("manifest",),
    "store": ("push", "pull", "gc", "verify", "mount"),
    "attachment": ("attachment",),
    "browse": ("ls", "cat"),
    "outputs": ("outputs",),
    "publish": ("publish", "fetch"),
    "session": ("session",),
    "copy": ("copy",),
    "conformance": ("conformance", "emulator"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser (subcommands register themselves); with `command`, only that command's.

    One command's parser is what `main` builds when the command line names one: argparse spends
    about 40 µs per option (translation lookups), and the warm `fscas manifest snapshot` counts them.
    """
    parser = _Parser(prog="fscas", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fscas {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, also print the traceback (credentials still masked); env FSCAS_DEBUG=1")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)

    def wanted(registrar: str) -> bool:
        return command is None or command in COMMANDS[registrar]

    if wanted("manifest"):
        add_manifest_transfer_commands(add_manifest_commands(groups))
    if wanted("store"):
        add_store_commands(groups)
    if wanted("attachment"):
        add_attachment_commands(groups)
    if wanted("browse"):
        add_browse_commands(groups)
    if wanted("outputs"):
        add_outputs_commands(groups)
    if wanted("publish"):
        add_publish_commands(groups)
    if wanted("session"):
        add_session_commands(groups)
    if wanted("copy"):
        add_copy_commands(groups)
    if wanted("conformance"):
        add_conformance_commands(groups)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command `argv` names (its first word that is not an option), if fscas has it."""
    word = next((w for w in argv if not w.startswith("-")), None)
    return word if any(word in names for names in COMMANDS.values()) else None


def known_secrets(argv: Sequence[str], environ: dict[str, str] | os._Environ[str]) -> set[str]:
    """Credential values the command line and the environment carry: masked in anything printed."""
    found: set[str] = set()
    for text in (*argv, environ.get("FSCAS_STORE", "")):
        if "://" in text or ",opt=" in text or "connection_string=" in text.lower():  # URLs, not file names
            found |= secrets_in(text)
    for name, value in environ.items():
        if any(word in name.upper() for word in _SECRET_ENV) and len(value) >= 4:
            found.add(value)
            found |= secrets_in(value)  # a connection string's AccountKey on its own
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in args_in[1:]:  # accepted after the subcommand too
        args_in.remove("--debug")
        args_in.insert(0, "--debug")
    secrets = known_secrets(args_in, os.environ)
    set_secrets(secrets)
    parser = build_parser(_command_of(args_in))
    _check_long_options(parser, args_in)
    args = parser.parse_args(args_in)
    debug = args.debug or os.environ.get("FSCAS_DEBUG", "") not in ("", "0")
    if not getattr(args, "local", False):  # commands that open no store skip the import of logging
        import logging

        # gcsfs logs every retry of an unreachable endpoint with a traceback; our error says it once.
        logging.getLogger("gcsfs").setLevel(logging.CRITICAL)
        logging.getLogger("azure").setLevel(logging.ERROR)  # the credential chain warns at length; our error says it
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("fscas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fscas ... | head`: the reader went away, nothing is wrong
        sys.stderr.close()
        return 1
    except Exception as e:
        if debug:
            import traceback

            sys.stderr.write(redact(traceback.format_exc(), secrets))
        if isinstance(e, FscasError):
            print(f"fscas: error: {redact(str(e), secrets)}", file=sys.stderr)
            return 2 if isinstance(e, _INPUT_ERRORS) else 1
        if isinstance(e, OSError) and e.filename is not None:  # a local path in the way: not fscas's fault
            where = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else str(e.filename)
            print(f"fscas: error: {redact(where, secrets)}: {e.strerror or type(e).__name__}", file=sys.stderr)
            return 1
        message = redact(f"{type(e).__name__}: {e}", secrets).splitlines()[0] if str(e) else type(e).__name__
        hint = "" if debug else " — rerun with --debug for the traceback"
        print(f"fscas: internal error: {message}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

