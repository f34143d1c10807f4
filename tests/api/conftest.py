from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from saga_hpc.store.store import Store
from tests.support.harness import HeadHarness


@dataclass
class Service:
    harness: HeadHarness
    store: Store
    keys: dict[str, str]  # "alice@physics" -> secret

    @property
    def url(self) -> str:
        return self.harness.url

    def client(self, who: str = "alice@physics") -> httpx.Client:
        return httpx.Client(
            base_url=self.harness.base,
            timeout=30,
            headers={"Authorization": f"Bearer {self.keys[who]}"},
        )


@pytest.fixture(scope="module")
def service(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    db = f"sqlite:///{tmp_path_factory.mktemp('api') / 'saga.db'}"
    store = Store.open(db)
    store.upgrade()
    keys = {}
    for user, account in (("alice", "physics"), ("bob", "biology"), ("carol", "physics")):
        store.ensure_account(account)
        store.ensure_user(user)
        store.ensure_association(user, account)
        keys[f"{user}@{account}"] = store.create_api_key(user, account)[1]
    # One emulated prefix cache for both fake workers: cache hits then depend on
    # the tenant's salt only, not on routing.
    with HeadHarness(tiny_model, db, workers=2, seen_blocks=set()) as harness:
        yield Service(harness, store, keys)
    store.close()
