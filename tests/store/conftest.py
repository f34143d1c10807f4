"""Every store test runs on SQLite and, when reachable, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from saga_hpc.store.store import Store
from tests.support.postgres import db_url, pg_database

__all__ = ["db_url", "pg_database"]  # fixtures for this directory


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    s.upgrade()
    s.ensure_account("physics", fairshare=3)
    s.ensure_account("biology", fairshare=1)
    for user, account in (("alice", "physics"), ("bob", "biology")):
        s.ensure_user(user)
        s.ensure_association(user, account)
    yield s
    s.close()
