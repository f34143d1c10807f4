"""Group commit: the store writes of many calls in one transaction.

A finished call's AEG node, tool edge and ledger row must be committed before
its response ends. One transaction per call costs a commit (and on SQLite the
single write lock) per call; instead calls queue their writes here and one
writer task commits everything queued so far in one transaction, then wakes
each waiting call. While a batch commits the next one gathers, so batches grow
with load and an idle head still commits at once.

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
    def __init__(self, store: Store, max_batch: int = 1024) -> None:
        self.store = store
        self.max_batch = max_batch
        self._pending = _Pending()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # transactions committed (for /metrics and tests)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        while self._pending:
            await self._commit(self._take())
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def open_workflow(self, op: WorkflowOpen) -> str:
        """The workflow's owning account (created for `op.account` if new)."""
        owner = await self._queue("opens", op)
        assert isinstance(owner, str)
        return owner

    async def record_call(self, rec: CallRecord, finishes_workflow: bool) -> bool:
        """Commit the call; False if its call id was recorded already."""
        if finishes_workflow:
            self._pending.batch.finishes.append((rec.workflow_id, rec.finished_at))
        written = await self._queue("calls", rec)
        assert isinstance(written, bool)
        return written

    async def _queue(self, kind: str, item: WorkflowOpen | CallRecord) -> object:
        items: list[object] = getattr(self._pending.batch, kind)
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._pending.waiters.append((fut, kind, len(items)))
        items.append(item)
        self._wake.set()
        return await fut

    def _take(self) -> _Pending:
        taken, self._pending = self._pending, _Pending()
        return taken

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
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
