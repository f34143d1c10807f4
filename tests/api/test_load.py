"""The head under load, bounded: 500 concurrent workflows through the real head
(HTTP with keys, tokenizer, core scheduler, group-committed ledger) and echo
workers in their own process, on SQLite and PostgreSQL. Every call answers and
every answered call has its ledger row. Speed is measured by `saga-hpc
bench-head` (docs/reliability.md), not asserted here: timing on a shared
2-core machine would make the test flaky."""

from __future__ import annotations

from pathlib import Path

import pytest

from saga_hpc.bench.head_bench import EchoHeadOptions, run_bench
from saga_hpc.bench.rawload import RawLoadSpec
from tests.support.postgres import db_url, pg_database

__all__ = ["db_url", "pg_database"]

pytestmark = [pytest.mark.load, pytest.mark.timeout(300)]

WORKFLOWS, CALLS, TURNS = 500, 2000, 4


def test_500_concurrent_workflows_lose_no_call_and_no_ledger_row(
    tiny_model: Path, db_url: str
) -> None:
    opts = EchoHeadOptions(
        model_dir=str(tiny_model), db_url=db_url, slots=512, stream_every=4, delay_s=0.0005
    )
    spec = RawLoadSpec(
        base_url="",
        keys=(),
        workflows=WORKFLOWS,
        calls=CALLS,
        turns=TURNS,
        max_tokens=8,
        tool_s=0.05,
        deadline_s=180,
        retry_s=0,  # a 503 or a dropped connection is an error here, not retried
        tag="load-test",
    )
    doc = run_bench(opts, spec, warmup_calls=0)
    assert doc["errors"] == {}
    assert doc["calls_ok"] == CALLS
    assert doc["ledger_missing"] == 0
    head_added = doc["head_added_ms"]
    assert isinstance(head_added, dict) and head_added["p99"] > 0  # the head measured them all
