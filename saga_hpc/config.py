"""Where saga-hpc keeps its state, and which database it talks to.

`SAGA_HOME` (default `~/.saga-hpc`) holds the default SQLite database, the
generated model and run logs. `SAGA_DB` or `--db URL` picks another database,
e.g. `postgresql+psycopg://saga@dbhost/saga` for a shared service.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def saga_home() -> Path:
    return Path(os.environ.get("SAGA_HOME", Path.home() / ".saga-hpc")).expanduser()


def default_db_url() -> str:
    return os.environ.get("SAGA_DB") or f"sqlite:///{saga_home() / 'saga.db'}"


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        help="database URL (default $SAGA_DB or sqlite:///$SAGA_HOME/saga.db)",
    )


def db_url(args: argparse.Namespace) -> str:
    return str(getattr(args, "db", None) or default_db_url())
