"""Group commit: the store writes of many calls in one transaction.

A finished call's AEG node, tool edge and ledger row must be committed before
its response ends. One transaction per call costs a commit (and on SQLite the
single write lock) per call; instead calls queue their writes here and one
writer task commits everything queued so far in one transaction, then wakes
each waiting call. While a batch commits the next one gathers, so batches grow
with load and an idle head still commits at once.

Workflow opens (a workflow's first call waits for its own before it runs) go
in a lane of their own where the store lets two transactions write at once
(PostgreSQL): queued behind the batch of finished calls committing, the first
call of each workflow waited for that batch and then its own, ~2 batches (on
PostgreSQL at ~480 calls/s: 23 ms median, 72 ms p99; docs/reliability.md,
"Sixth round"). On SQLite the two would only take turns at the one write lock
(and its busy handler sleeps), so there they share one lane.

If a batch fails, each write is retried alone, so one bad write fails only its
own call.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from saga_hpc.store.store import CallRecord, LedgerBatch, Store, WorkflowOpen


@dataclass
class _Pending:
    batch: LedgerBatch = field(default_factory=LedgerBatch)
    waiters: list[tuple[asyncio.Future[object], str, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.waiters)


class LedgerWriter:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._calls = _Lane(store)
        self._opens = _Lane(store) if store.concurrent_writers else self._calls
        self._lanes = (self._opens, self._calls) if store.concurrent_writers else (self._calls,)

    @property
    def batches(self) -> int:
        """Transactions committed (for /metrics and tests)."""
        return sum(lane.batches for lane in self._lanes)

    def start(self) -> None:
        for lane in self._lanes:
            lane.start()

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        for lane in self._lanes:
            await lane.close()

    async def open_workflow(self, op: WorkflowOpen) -> str:
        """The workflow's owning account (created for `op.account` if new)."""
        owner = await self._opens.queue("opens", op)
        assert isinstance(owner, str)
        return owner

    async def record_call(self, rec: CallRecord, finishes_workflow: bool) -> bool:
        """Commit the call; False if its call id was recorded already."""
        if finishes_workflow:
            self._calls.pending.batch.finishes.append((rec.workflow_id, rec.finished_at))
        written = await self._calls.queue("calls", rec)
        assert isinstance(written, bool)
        return written


class _Lane:
    """One writer task committing what was queued while the last batch committed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending = _Pending()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        while self.pending:
            await self._commit(self._take())
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def queue(self, kind: str, item: WorkflowOpen | CallRecord) -> object:
        items: list[object] = getattr(self.pending.batch, kind)
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.pending.waiters.append((fut, kind, len(items)))
        items.append(item)
        self._wake.set()
        return await fut

    def _take(self) -> _Pending:
        taken, self.pending = self.pending, _Pending()
        return taken

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                await self._commit(self._take())

    async def _commit(self, pending: _Pending) -> None:
        self.batches += 1
        try:
            owners, written = await asyncio.to_thread(self.store.write_batch, pending.batch)
        except Exception as exc:
            if len(pending) > 1:
                await self._one_by_one(pending)
            else:
                _fail(pending, exc)
            return
        results: dict[str, list[str] | list[bool]] = {"opens": owners, "calls": written}
        for fut, kind, index in pending.waiters:
            if not fut.done():
                fut.set_result(results[kind][index])

    async def _one_by_one(self, pending: _Pending) -> None:
        b = pending.batch
        finishes = dict(b.finishes)
        for fut, kind, index in pending.waiters:
            if kind == "opens":
                one = LedgerBatch(opens=[b.opens[index]])
            else:
                rec = b.calls[index]
                at = finishes.get(rec.workflow_id)
                one = LedgerBatch(
                    calls=[rec], finishes=[] if at is None else [(rec.workflow_id, at)]
                )
            try:
                owners, written = await asyncio.to_thread(self.store.write_batch, one)
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)
                continue
            if not fut.done():
                fut.set_result(owners[0] if kind == "opens" else written[0])


def _fail(pending: _Pending, exc: Exception) -> None:
    for fut, _, _ in pending.waiters:
        if not fut.done():
            fut.set_exception(exc)
