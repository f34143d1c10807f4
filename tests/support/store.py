"""A migrated store, and one with members of accounts for tests that need their keys."""

from __future__ import annotations

from saga_hpc.store.store import Store


def migrated_store(db: str) -> Store:
    """The store at `db`, migrated to the latest schema."""
    store = Store.open(db)
    store.upgrade()
    return store


def store_with_key(db: str, user: str = "alice", account: str = "physics") -> tuple[Store, str]:
    """The store at `db` (migrated) and an API key of `user` in `account`."""
    store, keys = store_with_keys(db, {account: user})
    return store, keys[account]


def store_with_keys(db: str, members: dict[str, str]) -> tuple[Store, dict[str, str]]:
    """The store at `db` (migrated) and an API key per account of `members` (account: user)."""
    store = migrated_store(db)
    keys = {}
    for account, user in members.items():
        store.ensure_account(account)
        store.ensure_user(user)
        store.ensure_association(user, account)
        keys[account] = store.create_api_key(user, account)[1]
    return store, keys
