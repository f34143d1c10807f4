"""`saga-hpc accounts add|add-user|remove-user|list`: tenants by hand.

On a Slurm cluster `saga-hpc accounts sync` mirrors them from Slurm instead.
"""

from __future__ import annotations

import argparse

from saga_hpc.cli._store import open_store
from saga_hpc.config import add_db_argument
from saga_hpc.errors import NotFound, UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    acc = sub.add_parser("accounts", help="tenants (Slurm accounts), users and their associations")
    verbs = acc.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="add or update an account")
    add.add_argument("name")
    add.add_argument("--parent")
    add.add_argument("--fairshare", type=int, default=1, help="fair-share weight (default 1)")
    add.set_defaults(func=_add)
    add_user = verbs.add_parser("add-user", help="let a user use an account")
    add_user.add_argument("user")
    add_user.add_argument("--account", required=True)
    add_user.add_argument("--fairshare", type=int, default=1)
    add_user.set_defaults(func=_add_user)
    rm_user = verbs.add_parser(
        "remove-user", help="take an account away from a user (their keys get 403)"
    )
    rm_user.add_argument("user")
    rm_user.add_argument("--account", required=True)
    rm_user.set_defaults(func=_remove_user)
    lst = verbs.add_parser("list", help="accounts, shares and users")
    lst.set_defaults(func=_list)
    sync = verbs.add_parser("sync", help="mirror accounts, users and fair-share weights from Slurm")
    sync.add_argument("--cluster", help="Slurm cluster name (default: the local one)")
    sync.set_defaults(func=_sync)
    for p in (add, add_user, rm_user, lst, sync):
        add_db_argument(p)


def _add(args: argparse.Namespace) -> int:
    if args.fairshare < 0:
        raise UsageError("--fairshare must be >= 0")
    store = open_store(args)
    try:
        store.ensure_account(args.name, parent=args.parent, fairshare=args.fairshare)
    finally:
        store.close()
    print(f"account {args.name} (fairshare {args.fairshare})")
    return 0


def _add_user(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        store.ensure_user(args.user)
        try:
            store.ensure_association(args.user, args.account, fairshare=args.fairshare)
        except NotFound as exc:
            raise UsageError(
                f"{exc} (create it with `saga-hpc accounts add {args.account}`)"
            ) from exc
    finally:
        store.close()
    print(f"{args.user} may use account {args.account}")
    return 0


def _remove_user(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        removed = store.remove_association(args.user, args.account)
    finally:
        store.close()
    if not removed:
        raise UsageError(f"user '{args.user}' has no association with account '{args.account}'")
    print(f"{args.user} may no longer use account {args.account}")
    return 0


def _list(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        accounts, assocs, shares = store.list_accounts(), store.list_associations(), store.shares()
    finally:
        store.close()
    users: dict[str, list[str]] = {}
    for account, user, _ in assocs:
        users.setdefault(account, []).append(user)
    print(f"{'ACCOUNT':16s} {'PARENT':12s} {'FAIRSHARE':>9s} {'SHARE':>7s} USERS")
    for name, parent, fairshare in accounts:
        print(
            f"{name:16s} {parent or '-':12s} {fairshare:9d} {shares.get(name, 0):7.3f} "
            f"{','.join(users.get(name, [])) or '-'}"
        )
    return 0


def _sync(args: argparse.Namespace) -> int:
    from saga_hpc.slurm.client import SlurmClient, SlurmError
    from saga_hpc.slurm.sync import sync_accounts

    reason = SlurmClient.available()
    if reason:
        raise UsageError(f"cannot sync from Slurm: {reason}")
    store = open_store(args)
    try:
        summary = sync_accounts(SlurmClient(cluster=args.cluster), store)
    except SlurmError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        store.close()
    print(f"synced from Slurm: {summary.line()}")
    return 0
