"""`saga-hpc keys create|list|revoke`: API keys of (user, account) pairs."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from saga_hpc.cli._store import open_store
from saga_hpc.config import add_db_argument
from saga_hpc.errors import Forbidden, NotFound, UsageError

if TYPE_CHECKING:  # SQLAlchemy loads with the store, when a command opens one
    from saga_hpc.store.store import Store


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="issue, list and revoke API keys")
    verbs = keys.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="issue a key for a user's account (shown once)")
    create.add_argument("--user", required=True)
    create.add_argument("--account", required=True)
    create.add_argument(
        "--ttl-days", type=float, help="expire after this many days (default never)"
    )
    create.add_argument("--note", help="free text shown by `keys list`")
    create.set_defaults(func=_create)
    lst = verbs.add_parser("list", help="list keys (never their secrets)")
    lst.add_argument("--user")
    lst.set_defaults(func=_list)
    revoke = verbs.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=_revoke)
    for p in (create, lst, revoke):
        add_db_argument(p)


def check_association(store: Store, user: str, account: str) -> None:
    """The one place that decides whether a user may get a key for an account.
    On a Slurm cluster the store is first brought in line with Slurm, so a key
    is issued only for an association Slurm has now."""
    from saga_hpc.slurm.client import SlurmClient, SlurmError
    from saga_hpc.slurm.sync import sync_accounts

    if SlurmClient.available() is None:
        try:
            sync_accounts(SlurmClient(), store)
        except SlurmError as exc:
            raise UsageError(f"cannot check the association in Slurm: {exc}") from exc
    if not store.has_association(user, account):
        raise UsageError(
            f"user '{user}' has no association with account '{account}' "
            f"(add it in Slurm and run `saga-hpc accounts sync`, or `saga-hpc accounts add-user`)"
        )


def _create(args: argparse.Namespace) -> int:
    if args.ttl_days is not None and args.ttl_days <= 0:
        raise UsageError("--ttl-days must be positive")
    store = open_store(args)
    try:
        check_association(store, args.user, args.account)
        try:
            key_id, secret = store.create_api_key(
                args.user, args.account, ttl_days=args.ttl_days, note=args.note
            )
        except (Forbidden, NotFound) as exc:
            raise UsageError(str(exc)) from exc
    finally:
        store.close()
    print(f"key {key_id} for {args.user}@{args.account} (store it now; it is not shown again):")
    print(secret)
    return 0


def _list(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        keys = store.list_api_keys(args.user)
    finally:
        store.close()
    print(f"{'KEY':14s} {'USER':12s} {'ACCOUNT':12s} {'CREATED':19s} {'STATE':8s} NOTE")
    now = time.time()
    for k in keys:
        state = (
            "revoked"
            if k.revoked_at
            else "expired"
            if k.expires_at and k.expires_at < now
            else "active"
        )
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(k.created_at))
        print(
            f"{k.key_id:14s} {k.user:12s} {k.account:12s} {created:19s} {state:8s} {k.note or ''}"
        )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        store.revoke_api_key(args.key_id)
    except NotFound as exc:
        raise UsageError(str(exc)) from exc
    finally:
        store.close()
    print(f"key {args.key_id} revoked")
    return 0
