"""The trace replay against a real head (echo workers, no vLLM): every call, timed and counted."""

from __future__ import annotations

import asyncio
from pathlib import Path

from saga_hpc.bench.probe import PROBE_TOKENS, probe
from saga_hpc.bench.real_bench import _keys
from saga_hpc.bench.real_client import replay
from saga_hpc.bench.real_trace import TraceScale, TraceTokens, scaled_trace
from saga_hpc.bench.sim_bench import DEFAULT_TENANTS
from tests.support.harness import HeadHarness


def test_replay_runs_every_call_of_every_task_with_its_exact_prompt(
    tiny_model: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'saga.db'}"
    keys = _keys(db, DEFAULT_TENANTS)
    scale = TraceScale(tasks=3, rate_per_s=5.0, max_turns=3, tool_scale=0.01)
    tasks = scaled_trace("swe-bench", 0, DEFAULT_TENANTS, scale)
    tokens = TraceTokens(vocab_size=368, seed=0)
    prompts = {t.task_id: tokens.prompts(t) for t in tasks}
    with HeadHarness(tiny_model, db, workers=2) as head:
        measured = asyncio.run(probe(head.base, keys["physics"], 368))
        result = asyncio.run(replay(head.base, keys, tasks, prompts, block_size=32))
    assert measured.cached_tokens <= PROBE_TOKENS
    assert sorted(result.tct_s) == sorted(t.task_id for t in tasks)
    want = sorted((t.task_id, p) for t in tasks for p in t.prompt_tokens())
    assert sorted((c.task_id, c.prompt) for c in result.calls) == want
    for task in tasks:
        calls = [c for c in result.calls if c.task_id == task.task_id]
        assert [c.out for c in calls] == [s.output_tokens for s in task.steps]
        assert all(c.tenant == task.tenant and 0 < c.ttft_s <= c.service_s for c in calls)
        # A task ends with its last call; it cannot finish before its calls did.
        assert result.tct_s[task.task_id] >= max(c.finished for c in calls) - task.arrival_s - 1e-6
    assert result.makespan_s >= max(t.arrival_s for t in tasks)
