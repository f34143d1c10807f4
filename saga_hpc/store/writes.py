"""The ledger's writes (workflows opened, calls recorded, workflows finished)
in plain SQL on the driver's cursor.

These run for every call the head serves, in its group-commit batches. Through
SQLAlchemy's execution layer (statement cache, parameter processing, result
objects per statement, ~10 statements a batch) they cost the head more CPU
than the SQL itself: a batch of 10 calls ~2.4 ms on SQLite. Here the same
statements go straight to the driver, inside the transaction SQLAlchemy
opened (so SQLite still begins IMMEDIATE, and the commit is SQLAlchemy's).
Both backends take the same SQL but for placeholders and `IN` lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from saga_hpc.store.records import CALL_FIELDS, CallRecord, WorkflowOpen

_CALL_COLUMNS = ("seq", *CALL_FIELDS)


@dataclass(frozen=True)
class _Last:
    call_id: str
    seq: int
    next_tool: str | None
    finished_at: float


class LedgerSql:
    """The ledger's statements for one dialect ("sqlite" or "postgresql")."""

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"
        p = "%s" if self.postgres else "?"
        self.p = p

        def insert(table: str, columns: Sequence[str], ignore: bool = False) -> str:
            names = ", ".join(f'"{c}"' for c in columns)
            values = ", ".join(p for _ in columns)
            tail = " ON CONFLICT DO NOTHING" if ignore else ""
            return f"INSERT INTO {table} ({names}) VALUES ({values}){tail}"

        self.insert_workflow = insert(
            "workflows", ("id", "account", "user", "started_at", "finished_at"), ignore=True
        )
        self.insert_call = insert("calls", _CALL_COLUMNS)
        self.insert_edge = insert(
            "tool_edges", ("workflow_id", "from_call", "to_call", "tool", "duration_s")
        )
        self.insert_ledger = insert(
            "usage_ledger",
            (
                "call_id",
                "workflow_id",
                "account",
                "user",
                "prompt_tokens",
                "cached_tokens",
                "output_tokens",
                "worker_seconds",
                "at",
            ),
        )
        self.finish = (
            f"UPDATE workflows SET finished_at = {p} WHERE id = {p} AND finished_at IS NULL"
        )

    def _in(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        """`column IN values` and its parameters."""
        if self.postgres:
            return f"{column} = ANY(%s)", [list(values)]
        return f"{column} IN ({', '.join('?' for _ in values)})", list(values)

    def write(
        self,
        cur: Any,
        opens: Sequence[WorkflowOpen],
        calls: Sequence[CallRecord],
        finishes: Sequence[tuple[str, float]],
    ) -> tuple[list[str], list[bool]]:
        """Opens, calls and finishes (in that order) on `cur`, inside a transaction."""
        owners = self.open_workflows(cur, opens)
        written = self.record_calls(cur, calls)
        if finishes:
            cur.executemany(self.finish, [(at, wf) for wf, at in finishes])
        return owners, written

    def open_workflows(self, cur: Any, opens: Sequence[WorkflowOpen]) -> list[str]:
        """Create each workflow unless it exists; returns each one's owning account."""
        if not opens:
            return []
        # The first open of each workflow counts.
        rows = {o.workflow_id: (o.workflow_id, o.account, o.user, o.now, None) for o in opens[::-1]}
        cur.executemany(self.insert_workflow, list(rows.values()))
        where, params = self._in("id", list(rows))
        cur.execute(f"SELECT id, account FROM workflows WHERE {where}", params)
        owners = dict(cur.fetchall())
        return [owners[o.workflow_id] for o in opens]

    def record_calls(self, cur: Any, recs: Sequence[CallRecord]) -> list[bool]:
        """Write finished calls (AEG nodes, tool edges, ledger rows). A call id
        already recorded is skipped (False): a retry after a crash bills nothing
        twice. Calls of one workflow take their positions in the order given."""
        if not recs:
            return []
        where, params = self._in("call_id", [r.call_id for r in recs])
        cur.execute(f"SELECT call_id FROM calls WHERE {where}", params)
        seen = {row[0] for row in cur.fetchall()}
        fresh: list[CallRecord] = []
        written: list[bool] = []
        for rec in recs:
            written.append(rec.call_id not in seen)
            if rec.call_id not in seen:
                seen.add(rec.call_id)
                fresh.append(rec)
        if not fresh:
            return written
        self._open_missing(cur, fresh)
        last = self._last_calls(cur, {r.workflow_id for r in fresh})
        calls, edges, ledger = [], [], []
        for rec in fresh:
            previous = last.get(rec.workflow_id)
            seq = previous.seq + 1 if previous is not None else 0
            calls.append((seq, *(getattr(rec, f) for f in CALL_FIELDS)))
            if previous is not None and previous.next_tool:
                # The edge's duration is what the agent spent between two calls: the
                # tool's run time plus the agent's own think time, as the service sees it.
                gap = max(0.0, rec.arrived_at - previous.finished_at)
                edges.append(
                    (rec.workflow_id, previous.call_id, rec.call_id, previous.next_tool, gap)
                )
            ledger.append(
                (
                    rec.call_id,
                    rec.workflow_id,
                    rec.account,
                    rec.user,
                    rec.prompt_tokens,
                    rec.cached_tokens,
                    rec.output_tokens,
                    rec.worker_time_s,
                    rec.finished_at,
                )
            )
            last[rec.workflow_id] = _Last(rec.call_id, seq, rec.next_tool, rec.finished_at)
        cur.executemany(self.insert_call, calls)
        if edges:
            cur.executemany(self.insert_edge, edges)
        cur.executemany(self.insert_ledger, ledger)
        return written

    def _open_missing(self, cur: Any, recs: Sequence[CallRecord]) -> None:
        """A call recorded without an opened workflow (tests, old clients) opens it."""
        wanted = {r.workflow_id: r for r in reversed(recs)}  # the first call of each
        where, params = self._in("id", list(wanted))
        cur.execute(f"SELECT id FROM workflows WHERE {where}", params)
        have = {row[0] for row in cur.fetchall()}
        missing = [
            (wf, r.account, r.user, r.arrived_at, None)
            for wf, r in wanted.items()
            if wf not in have
        ]
        if missing:
            cur.executemany(self.insert_workflow, missing)

    def _last_calls(self, cur: Any, workflow_ids: set[str]) -> dict[str, _Last]:
        where, params = self._in("workflow_id", list(workflow_ids))
        cur.execute(
            "SELECT c.workflow_id, c.call_id, c.seq, c.next_tool, c.finished_at FROM calls c"
            " JOIN (SELECT workflow_id, max(seq) AS seq FROM calls"
            f" WHERE {where} GROUP BY workflow_id) n"
            " ON c.workflow_id = n.workflow_id AND c.seq = n.seq",
            params,
        )
        return {r[0]: _Last(r[1], r[2], r[3], r[4]) for r in cur.fetchall()}
