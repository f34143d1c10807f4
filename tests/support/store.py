"""A migrated store with one member of one account, for tests that need a key."""

from __future__ import annotations

from saga_hpc.store.store import Store


def store_with_key(db: str, user: str = "alice", account: str = "physics") -> tuple[Store, str]:
    """The store at `db` (migrated) and an API key of `user` in `account`."""
    store = Store.open(db)
    store.upgrade()
    store.ensure_account(account)
    store.ensure_user(user)
    store.ensure_association(user, account)
    return store, store.create_api_key(user, account)[1]
