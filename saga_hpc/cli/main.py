"""`saga-hpc` entry point: one sub-command module per verb, each with `register()`."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

import saga_hpc.cli
from saga_hpc.errors import UsageError


def command_modules() -> list[str]:
    """Every module of `saga_hpc.cli` but this one is a verb: it defines
    `register(subparsers) -> None` and sets `func(args) -> int` on its parser."""
    names = (
        m.name for m in pkgutil.iter_modules(saga_hpc.cli.__path__) if not m.name.startswith("_")
    )
    return [f"saga_hpc.cli.{n}" for n in sorted(names) if n != "main"]


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad arguments already; keep its message to one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"saga-hpc: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="saga-hpc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in command_modules():
        importlib.import_module(name).register(sub)
    return parser


def first_line(message: str) -> str:
    """Drivers (libpq, Open MPI) explain over several lines; the first says what failed."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the verb of `argv` and return its exit code. Called without `argv`
    (from the console script or `python -m`), main is the process's own entry:
    a verb that sets `exit_without_teardown` (`sim`: millions of objects, nothing
    open once its output is written) then ends the process here, stdout and
    stderr flushed, instead of having the interpreter free each object first."""
    args = build_parser().parse_args(argv)
    code = _run(args)
    if argv is None and getattr(args, "exit_without_teardown", False):
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # a closed pipe: the interpreter's own exit would say 120
            os._exit(120)
        os._exit(code)
    return code


def _run(args: argparse.Namespace) -> int:
    try:
        code: int = args.func(args)
    except UsageError as exc:
        print(f"saga-hpc: error: {first_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        # A path or address given on the command line that cannot be used
        # (missing directory, read-only file system, port taken): say which.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"saga-hpc: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
