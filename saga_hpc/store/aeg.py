"""Agent Execution Graphs in SQL: calls are nodes, tool gaps are edges."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from saga_hpc.errors import NotFound
from saga_hpc.store.records import CallRecord, StoredCall, ToolEdgeRow, WorkflowRow, WorkflowStory
from saga_hpc.store.tables import Call, LedgerEntry, ToolEdge, Workflow

_FIELDS = tuple(CallRecord.__dataclass_fields__)


def record_call(s: Session, rec: CallRecord) -> bool:
    if s.get(Call, rec.call_id) is not None:
        return False
    wf = s.get(Workflow, rec.workflow_id)
    if wf is None:
        s.add(
            Workflow(
                id=rec.workflow_id,
                account=rec.account,
                user=rec.user,
                started_at=rec.arrived_at,
                finished_at=None,
            )
        )
        s.flush()
    previous = s.scalars(
        select(Call).where(Call.workflow_id == rec.workflow_id).order_by(Call.seq.desc()).limit(1)
    ).first()
    seq = previous.seq + 1 if previous is not None else 0
    s.add(Call(seq=seq, **{f: getattr(rec, f) for f in _FIELDS}))
    s.flush()
    if previous is not None and previous.next_tool:
        # The edge's duration is what the agent spent between two calls: the tool's
        # run time plus the agent's own think time, as the service sees it.
        s.add(
            ToolEdge(
                workflow_id=rec.workflow_id,
                from_call=previous.call_id,
                to_call=rec.call_id,
                tool=previous.next_tool,
                duration_s=max(0.0, rec.arrived_at - previous.finished_at),
            )
        )
    s.add(
        LedgerEntry(
            call_id=rec.call_id,
            workflow_id=rec.workflow_id,
            account=rec.account,
            user=rec.user,
            prompt_tokens=rec.prompt_tokens,
            cached_tokens=rec.cached_tokens,
            output_tokens=rec.output_tokens,
            worker_seconds=rec.worker_time_s,
            at=rec.finished_at,
        )
    )
    return True


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
