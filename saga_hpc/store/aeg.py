"""Agent Execution Graphs in SQL: calls are nodes, tool gaps are edges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from saga_hpc.errors import NotFound
from saga_hpc.store.records import (
    CallRecord,
    StoredCall,
    ToolEdgeRow,
    WorkflowOpen,
    WorkflowRow,
    WorkflowStory,
)
from saga_hpc.store.tables import Call, LedgerEntry, ToolEdge, Workflow

_FIELDS = tuple(CallRecord.__dataclass_fields__)


def record_calls(s: Session, recs: Sequence[CallRecord]) -> list[bool]:
    """Write many finished calls (AEG nodes, tool edges, ledger rows) with a few
    statements; one call is a batch of one. A call id already recorded is
    skipped (False): a retry after a crash bills nothing twice. Calls of one
    workflow take their positions in the order given."""
    if not recs:
        return []
    ids = [r.call_id for r in recs]
    seen = set(s.connection().scalars(_KNOWN_CALLS, {"ids": ids}))
    fresh: list[CallRecord] = []
    written: list[bool] = []
    for rec in recs:
        written.append(rec.call_id not in seen)
        if rec.call_id not in seen:
            seen.add(rec.call_id)
            fresh.append(rec)
    if not fresh:
        return written
    _open_missing(s, fresh)
    last = _last_calls(s, {r.workflow_id for r in fresh})
    calls, edges, ledger = [], [], []
    for rec in fresh:
        previous = last.get(rec.workflow_id)
        seq = previous.seq + 1 if previous is not None else 0
        calls.append({"seq": seq, **{f: getattr(rec, f) for f in _FIELDS}})
        if previous is not None and previous.next_tool:
            # The edge's duration is what the agent spent between two calls: the tool's
            # run time plus the agent's own think time, as the service sees it.
            edges.append(
                {
                    "workflow_id": rec.workflow_id,
                    "from_call": previous.call_id,
                    "to_call": rec.call_id,
                    "tool": previous.next_tool,
                    "duration_s": max(0.0, rec.arrived_at - previous.finished_at),
                }
            )
        ledger.append(
            {
                "call_id": rec.call_id,
                "workflow_id": rec.workflow_id,
                "account": rec.account,
                "user": rec.user,
                "prompt_tokens": rec.prompt_tokens,
                "cached_tokens": rec.cached_tokens,
                "output_tokens": rec.output_tokens,
                "worker_seconds": rec.worker_time_s,
                "at": rec.finished_at,
            }
        )
        last[rec.workflow_id] = _Last(rec.call_id, seq, rec.next_tool, rec.finished_at)
    # Table-level inserts: the ORM's bulk path costs about as much again per row,
    # and these rows need none of its bookkeeping (no objects are loaded).
    conn = s.connection()
    conn.execute(_INSERT_CALL, calls)
    if edges:
        conn.execute(_INSERT_EDGE, edges)
    conn.execute(_INSERT_LEDGER, ledger)
    return written


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


_INSERT_CALL = insert(_table(Call))
_INSERT_EDGE = insert(_table(ToolEdge))
_INSERT_LEDGER = insert(_table(LedgerEntry))


@dataclass(frozen=True)
class _Last:
    call_id: str
    seq: int
    next_tool: str | None
    finished_at: float


def _open_missing(s: Session, recs: Sequence[CallRecord]) -> None:
    """A call recorded without an opened workflow (tests, old clients) opens it."""
    wanted = {r.workflow_id: r for r in reversed(recs)}  # the first call of each
    have = set(s.connection().scalars(_KNOWN_WORKFLOWS, {"ids": list(wanted)}))
    missing = [
        {
            "id": r.workflow_id,
            "account": r.account,
            "user": r.user,
            "started_at": r.arrived_at,
            "finished_at": None,
        }
        for wf, r in wanted.items()
        if wf not in have
    ]
    if missing:
        insert_ignore(s, Workflow, missing)


def open_workflows(s: Session, opens: Sequence[WorkflowOpen]) -> list[str]:
    """Create each workflow unless it exists; returns each one's owning account."""
    if not opens:
        return []
    rows = {
        o.workflow_id: {
            "id": o.workflow_id,
            "account": o.account,
            "user": o.user,
            "started_at": o.now,
            "finished_at": None,
        }
        for o in reversed(opens)
    }
    insert_ignore(s, Workflow, list(rows.values()))
    found = s.connection().execute(_OWNERS, {"ids": list(rows)})
    owners = {r[0]: r[1] for r in found}
    return [owners[o.workflow_id] for o in opens]


def finish_workflows(s: Session, finishes: Sequence[tuple[str, float]]) -> None:
    """Mark workflows finished (the first finish time stays): one statement run
    for every row (executemany), not one compiled statement per workflow."""
    if not finishes:
        return
    wf = _table(Workflow)
    stmt = (
        update(wf)
        .where(wf.c.id == bindparam("wf_id"), wf.c.finished_at.is_(None))
        .values(finished_at=bindparam("wf_at"))
    )
    s.execute(stmt, [{"wf_id": w, "wf_at": at} for w, at in finishes])


def insert_ignore(s: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on either backend (no race between check and insert)."""
    mod: Any = postgresql if s.get_bind().dialect.name == "postgresql" else sqlite
    s.execute(mod.insert(table).on_conflict_do_nothing(), rows)


def _last_calls(s: Session, workflow_ids: set[str]) -> dict[str, _Last]:
    rows = s.connection().execute(_LAST_CALLS, {"ids": list(workflow_ids)})
    return {r[0]: _Last(r[1], r[2], r[3], r[4]) for r in rows}


# The ledger's queries, built once with an expanding IN parameter: building a
# select (and the subquery's column collection) per batch cost more than
# running it, a third of a millisecond per one-call batch. They run on the
# session's connection: the ORM's execution layer adds nothing for plain rows.
_IDS: BindParameter[list[str]] = bindparam("ids", expanding=True)
_KNOWN_CALLS = select(Call.call_id).where(Call.call_id.in_(_IDS))
_KNOWN_WORKFLOWS = select(Workflow.id).where(Workflow.id.in_(_IDS))
_OWNERS = select(Workflow.id, Workflow.account).where(Workflow.id.in_(_IDS))
_NEWEST = (
    select(Call.workflow_id, func.max(Call.seq).label("seq"))
    .where(Call.workflow_id.in_(_IDS))
    .group_by(Call.workflow_id)
    .subquery()
)
_LAST_CALLS = select(
    Call.workflow_id, Call.call_id, Call.seq, Call.next_tool, Call.finished_at
).join(_NEWEST, (Call.workflow_id == _NEWEST.c.workflow_id) & (Call.seq == _NEWEST.c.seq))


def workflow_row(s: Session, workflow_id: str) -> WorkflowRow | None:
    wf = s.get(Workflow, workflow_id)
    if wf is None:
        return None
    return WorkflowRow(wf.id, wf.account, wf.user, wf.started_at, wf.finished_at)


def story(s: Session, workflow_id: str) -> WorkflowStory:
    row = workflow_row(s, workflow_id)
    if row is None:
        raise NotFound(f"no workflow '{workflow_id}'")
    calls = [
        StoredCall(seq=c.seq, **{f: getattr(c, f) for f in _FIELDS})
        for c in s.scalars(select(Call).where(Call.workflow_id == workflow_id).order_by(Call.seq))
    ]
    edges = [
        ToolEdgeRow(e.from_call, e.to_call, e.tool, e.duration_s)
        for e in s.scalars(
            select(ToolEdge).where(ToolEdge.workflow_id == workflow_id).order_by(ToolEdge.id)
        )
    ]
    return WorkflowStory(row, calls, edges)


def calls_between(s: Session, start: float | None, end: float | None) -> list[StoredCall]:
    query = select(Call).order_by(Call.finished_at)
    if start is not None:
        query = query.where(Call.finished_at >= start)
    if end is not None:
        query = query.where(Call.finished_at < end)
    return [StoredCall(seq=c.seq, **{f: getattr(c, f) for f in _FIELDS}) for c in s.scalars(query)]


def list_workflows(s: Session, account: str | None, limit: int) -> list[tuple[WorkflowRow, int]]:
    n_calls = (
        select(Call.workflow_id, func.count().label("n")).group_by(Call.workflow_id).subquery()
    )
    q = (
        select(Workflow, func.coalesce(n_calls.c.n, 0))
        .outerjoin(n_calls, n_calls.c.workflow_id == Workflow.id)
        .order_by(Workflow.started_at.desc())
        .limit(limit)
    )
    if account is not None:
        q = q.where(Workflow.account == account)
    return [
        (WorkflowRow(w.id, w.account, w.user, w.started_at, w.finished_at), int(n))
        for w, n in s.execute(q)
    ]
