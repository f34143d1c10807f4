"""The head-added latency (`saga_head_overhead_seconds`) runs to the answer,
which waits for the call's ledger commit: a slow store shows in it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from saga_hpc.store.store import LedgerBatch, Store
from tests.support.harness import HeadHarness
from tests.support.store import store_with_key

COMMIT_S = 0.3


def _overhead_sum(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("saga_head_overhead_seconds_sum"):
            return float(line.split()[-1])
    raise AssertionError("saga_head_overhead_seconds_sum missing from /metrics")


def test_a_slow_ledger_commit_counts_as_head_added_latency(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'saga.db'}"
    store, key = store_with_key(db)
    store.close()
    write_batch = Store.write_batch

    def slow_commit(self: Store, batch: LedgerBatch) -> tuple[list[str], list[bool]]:
        if batch.calls:  # a finished call's row, not a workflow's open
            time.sleep(COMMIT_S)
        return write_batch(self, batch)

    monkeypatch.setattr(Store, "write_batch", slow_commit)
    with (
        HeadHarness(tiny_model, db, workers=1) as harness,
        httpx.Client(
            base_url=harness.base, timeout=30, headers={"Authorization": f"Bearer {key}"}
        ) as client,
    ):
        r = client.post(
            "/v1/chat/completions",
            json={
                "model": "tiny",
                "max_tokens": 2,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"X-Saga-Workflow": "wf-slow-commit"},
        )
        assert r.status_code == 200, r.text
        overhead = _overhead_sum(client.get("/metrics").text)
    assert COMMIT_S <= overhead < COMMIT_S + 5.0
