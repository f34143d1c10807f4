"""Agent Execution Graphs in SQL: calls are nodes, tool gaps are edges (read
here; written by writes.py)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from saga_hpc.errors import NotFound
from saga_hpc.store.records import (
    CALL_FIELDS,
    StoredCall,
    ToolEdgeRow,
    WorkflowRow,
    WorkflowStory,
)
from saga_hpc.store.tables import Call, ToolEdge, Workflow


def _stored(c: Call) -> StoredCall:
    return StoredCall(seq=c.seq, **{f: getattr(c, f) for f in CALL_FIELDS})


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
        _stored(c)
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
    return [_stored(c) for c in s.scalars(query)]


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
