"""`saga-hpc` entry point: one sub-command module per verb, each with `register()`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from saga_hpc.errors import UsageError

# Each module defines `register(subparsers) -> None` and sets `func(args) -> int` on its parser.
COMMAND_MODULES: tuple[str, ...] = (
    "saga_hpc.cli.serve",
    "saga_hpc.cli.model",
    "saga_hpc.cli.demo",
    "saga_hpc.cli.keys",
    "saga_hpc.cli.accounts",
    "saga_hpc.cli.workflow",
)


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on bad arguments already; keep its message to one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"saga-hpc: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="saga-hpc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except UsageError as exc:
        print(f"saga-hpc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
