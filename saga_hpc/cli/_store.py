"""Opening the store from a CLI command, with errors as one line (exit 2)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from saga_hpc.config import db_url
from saga_hpc.errors import UsageError

if TYPE_CHECKING:
    from saga_hpc.store.store import Store


def open_store(args: argparse.Namespace) -> Store:
    # Imported here: SQLAlchemy costs ~0.2 s, which commands without a store
    # (sim, bench) should not pay at every start.
    from sqlalchemy.exc import OperationalError

    from saga_hpc.store.store import Store

    url = db_url(args)
    store = Store.open(url)
    try:
        store.upgrade()
    except OperationalError as exc:
        raise UsageError(f"cannot open database {url}: {exc.orig}") from exc
    return store
