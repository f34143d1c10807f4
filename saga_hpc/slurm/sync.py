"""Mirror Slurm's accounts, users, associations and fair-share weights into the store.

Slurm is the source of truth: after a sync the store has exactly Slurm's
associations (a user removed from an account in Slurm loses it here, and the
keys for it answer 403), and each account's weight is its RawShares.
"""

from __future__ import annotations

from dataclasses import dataclass

from saga_hpc.slurm.client import SlurmClient
from saga_hpc.store.store import Store


@dataclass(frozen=True)
class SyncSummary:
    accounts: int
    associations: int
    added: int
    removed: int

    def line(self) -> str:
        return (
            f"{self.accounts} accounts, {self.associations} associations "
            f"({self.added} added, {self.removed} removed)"
        )


def sync_accounts(client: SlurmClient, store: Store) -> SyncSummary:
    assocs = client.associations()
    accounts = {a.account: a for a in assocs if a.user is None and a.account != "root"}
    wanted = {
        (a.account, a.user): a.fairshare
        for a in assocs
        if a.user is not None and a.account in accounts
    }
    for name, a in sorted(accounts.items()):
        store.ensure_account(
            name, parent=a.parent if a.parent != "root" else None, fairshare=a.fairshare
        )
    have = {(acct, user) for acct, user, _ in store.list_associations()}
    added = 0
    for (account, user), fairshare in sorted(wanted.items()):
        assert user is not None
        store.ensure_user(user)
        store.ensure_association(user, account, fairshare=fairshare)
        added += (account, user) not in have
    removed = 0
    for account, user in sorted(have - set(wanted)):
        removed += store.remove_association(user, account)
    return SyncSummary(len(accounts), len(wanted), added, removed)
