"""Usage reports per account and user, like `sreport`, from the ledger and the AEGs.

Shares: an account's *entitled* share is its fair-share weight over the sum of
all weights; its *used* share is its worker-seconds over everyone's in the
period. The fair-share factor is Slurm's classic F = 2^(-used/entitled)
(1 = unused, 0.5 = used exactly its share, -> 0 = far over it).
SLO attainment: the fraction of finished tasks whose completion time stayed
within the SLO (`slo_tct_s`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotation: the CLI imports this module at every start
    from saga_hpc.store.store import Store

COLUMNS = (
    "account",
    "user",
    "tasks",
    "calls",
    "prompt_tokens",
    "cached_tokens",
    "output_tokens",
    "gpu_seconds",
    "tct_median_s",
    "tct_p99_s",
    "slo_attainment",
    "share_entitled",
    "share_used",
    "fairshare_factor",
)


@dataclass(frozen=True)
class ReportRow:
    account: str
    user: str  # "" on the account's own line
    tasks: int
    calls: int
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    gpu_seconds: float
    tct_median_s: float | None
    tct_p99_s: float | None
    slo_attainment: float | None
    share_entitled: float
    share_used: float
    fairshare_factor: float

    def values(self) -> list[object]:
        return [getattr(self, c) for c in COLUMNS]


def build_report(
    store: Store,
    start: float | None,
    end: float | None,
    *,
    account: str | None = None,
    user: str | None = None,
    slo_tct_s: float = 600.0,
) -> list[ReportRow]:
    entitled = store.shares()
    totals = store.account_usage(start, end)
    everyone = sum(u.worker_seconds for u in totals) or 0.0
    per_account = {u.account: u for u in totals}
    per_user = store.account_usage(start, end, account=account, user=user, by_user=True)
    rows: list[ReportRow] = []
    for acct in sorted({u.account for u in per_user}):
        a = per_account[acct]
        rows.append(_row(a, "", entitled.get(acct, 0.0), everyone, slo_tct_s))
        for u in (u for u in per_user if u.account == acct):
            rows.append(_row(u, u.user or "", entitled.get(acct, 0.0), everyone, slo_tct_s))
    return rows


def _row(u: object, user: str, entitled: float, everyone: float, slo_tct_s: float) -> ReportRow:
    from saga_hpc.store.records import UsageRow

    assert isinstance(u, UsageRow)
    used = u.worker_seconds / everyone if everyone else 0.0
    factor = 2.0 ** (-used / entitled) if entitled > 0 else 0.0
    slo = sum(t <= slo_tct_s for t in u.tcts_s) / len(u.tcts_s) if u.tcts_s else None
    return ReportRow(
        u.account,
        user,
        u.tasks,
        u.calls,
        u.prompt_tokens,
        u.cached_tokens,
        u.output_tokens,
        round(u.worker_seconds, 3),
        _r(u.tct_median_s),
        _r(u.tct_p99_s),
        _r(slo),
        round(entitled, 4),
        round(used, 4),
        round(factor, 4),
    )


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)
