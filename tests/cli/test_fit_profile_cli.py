"""`saga-hpc fit-profile`: a simulator profile from the ledger's engine timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saga_hpc.sim.profile import load_profile
from saga_hpc.store.store import CallRecord, Store
from tests.cli.test_cli import db, no_slurm, run  # noqa: F401 (fixtures)


def call(i: int, prefill_s: float | None) -> CallRecord:
    at = 100.0 + 10 * i  # one call at a time: batch 1
    return CallRecord(
        call_id=f"c{i}",
        workflow_id=f"wf{i}",
        account="physics",
        user="alice",
        model="tiny",
        worker="w1",
        prompt_tokens=1100,
        cached_tokens=100,
        output_tokens=21,
        arrived_at=at,
        dispatched_at=at,
        first_token_at=at + 0.6,
        finished_at=at + 0.9,
        worker_time_s=0.8,
        next_tool=None,
        engine_queue_s=0.1,
        prefill_s=prefill_s,
        decode_s=0.2 if prefill_s is not None else None,
    )


def test_fits_the_ledger_and_writes_a_loadable_profile(
    db: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = Store.open(db)
    store.upgrade()
    for i in range(5):
        store.record_call(call(i, 0.5))
    store.record_call(call(5, None))  # no engine stats: left out
    store.close()
    out = tmp_path / "cpu.json"
    argv = [
        "fit-profile",
        "--db",
        db,
        "--kv-tokens",
        "6150",
        "--max-batch",
        "8",
        "--json",
        str(out),
    ]
    code, stdout, _ = run(capsys, *argv, "--start", "0")
    assert code == 0 and "5 calls" in stdout
    profile = load_profile(str(out))
    # 1000 uncached tokens in 0.5 s; 0.2 s over 20 steps; 0.9 - 0.8 s outside the engine.
    assert profile.prefill_tokens_per_s == pytest.approx(2000)
    assert profile.decode_step_s_batch1 == pytest.approx(0.01)
    assert profile.call_overhead_s == pytest.approx(0.1)
    assert (profile.kv_tokens, profile.max_batch, profile.name) == (6144, 8, "cpu")
    assert json.loads(out.read_text())["block_tokens"] == 32


def test_a_ledger_without_engine_timings_exits_2_with_one_line(
    db: str,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["fit-profile", "--db", db, "--kv-tokens", "6144", "--json", str(tmp_path / "p.json")]
    code, _, err = run(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no calls with engine timings" in err
    assert not (tmp_path / "p.json").exists()
