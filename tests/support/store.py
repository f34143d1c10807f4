"""A migrated store with members of accounts, for tests that need their keys."""

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


def store_with_keys(db: str, members: dict[str, str]) -> tuple[Store, dict[str, str]]:
    """The store at `db` (migrated) and an API key per account of `members` (account: user)."""
    store = Store.open(db)
    store.upgrade()
    keys = {}
    for account, user in members.items():
        store.ensure_account(account)
        store.ensure_user(user)
        store.ensure_association(user, account)
        keys[account] = store.create_api_key(user, account)[1]
    return store, keys
