"""The group-committed ledger on SQLite and PostgreSQL: where two transactions
can write at once, a workflow's open (its first call waits for it) does not
queue behind a committing batch of finished calls."""

from __future__ import annotations

import asyncio
import threading

import pytest

from saga_hpc.head.ledger import LedgerWriter
from saga_hpc.store.store import LedgerBatch, Store, WorkflowOpen
from tests.store.test_store import rec
from tests.support.postgres import db_url, pg_database
from tests.support.store import migrated_store

__all__ = ["db_url", "pg_database"]


def test_an_open_waits_for_no_call_batch_where_writers_run_at_once(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = migrated_store(db_url)
    assert store.concurrent_writers == db_url.startswith("postgresql")
    # A batch of finished calls that takes as long as the test wants.
    in_batch, release = threading.Event(), threading.Event()
    write_batch = store.write_batch

    def slow_calls(batch: LedgerBatch) -> tuple[list[str], list[bool]]:
        if batch.calls:
            in_batch.set()
            release.wait(10)
        return write_batch(batch)

    monkeypatch.setattr(store, "write_batch", slow_calls)

    async def run(store: Store) -> bool:
        ledger = LedgerWriter(store)
        ledger.start()
        recorded = asyncio.ensure_future(
            ledger.record_call(rec("c1", "wf-a", next_tool=None), True)
        )
        assert await asyncio.to_thread(in_batch.wait, 10)
        opened = asyncio.ensure_future(
            ledger.open_workflow(WorkflowOpen("wf-b", "physics", "alice", 100.0))
        )
        done, _ = await asyncio.wait({opened}, timeout=5.0)
        release.set()
        assert await recorded
        assert await opened == "physics"
        await ledger.close()
        return opened in done

    try:
        # PostgreSQL: opened while the call batch hung; SQLite: one lane, it waited.
        assert asyncio.run(run(store)) is store.concurrent_writers
        story = store.workflow_story("wf-a")
        assert [c.call_id for c in story.calls] == ["c1"]
        assert store.get_workflow("wf-a").finished_at == 101.0  # type: ignore[union-attr]
        assert store.get_workflow("wf-b") is not None
    finally:
        release.set()
        store.close()
