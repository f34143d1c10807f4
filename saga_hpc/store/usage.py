"""Usage per account (and user) over a period, from the ledger and the AEG."""

from __future__ import annotations

import math
import statistics
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from saga_hpc.store.records import UsageRow
from saga_hpc.store.tables import Call, LedgerEntry, Workflow


def account_usage(
    s: Session,
    start: float | None,
    end: float | None,
    *,
    account: str | None,
    user: str | None,
    by_user: bool,
) -> list[UsageRow]:
    keys = (LedgerEntry.account, LedgerEntry.user) if by_user else (LedgerEntry.account,)
    q = select(
        *keys,
        func.count(func.distinct(LedgerEntry.workflow_id)),
        func.count(),
        func.sum(LedgerEntry.prompt_tokens),
        func.sum(LedgerEntry.cached_tokens),
        func.sum(LedgerEntry.output_tokens),
        func.sum(LedgerEntry.worker_seconds),
    ).group_by(*keys)
    q = _window(q, LedgerEntry.at, start, end, account, user)
    rows: dict[tuple[str, str | None], UsageRow] = {}
    for r in s.execute(q):
        acct, who = r[0], (r[1] if by_user else None)
        vals = r[len(keys) :]
        rows[(acct, who)] = UsageRow(
            acct,
            who,
            tasks=int(vals[0]),
            calls=int(vals[1]),
            prompt_tokens=int(vals[2] or 0),
            cached_tokens=int(vals[3] or 0),
            output_tokens=int(vals[4] or 0),
            worker_seconds=float(vals[5] or 0),
        )
    # Task completion time: a finished workflow's first arrival to its last
    # finish, counted in the period where the workflow finished.
    tq = (
        select(
            Workflow.account, Workflow.user, func.min(Call.arrived_at), func.max(Call.finished_at)
        )
        .join(Call, Call.workflow_id == Workflow.id)
        .where(Workflow.finished_at.is_not(None))
        .group_by(Workflow.id, Workflow.account, Workflow.user)
    )
    tq = _window(tq, Workflow.finished_at, start, end, account, user, table=Workflow)
    for acct, who, first, last in s.execute(tq):
        row = rows.get((acct, who if by_user else None))
        if row is not None:
            row.tcts_s.append(float(last - first))
    for row in rows.values():
        if row.tcts_s:
            ordered = sorted(row.tcts_s)
            row.tct_median_s = statistics.median(ordered)
            row.tct_p99_s = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1] or ""))]


def _window(
    q: Any,
    column: Any,
    start: float | None,
    end: float | None,
    account: str | None,
    user: str | None,
    table: Any = LedgerEntry,
) -> Any:
    if start is not None:
        q = q.where(column >= start)
    if end is not None:
        q = q.where(column < end)
    if account is not None:
        q = q.where(table.account == account)
    if user is not None:
        q = q.where(table.user == user)
    return q
