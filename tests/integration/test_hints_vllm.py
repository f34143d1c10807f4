"""Retention hints take effect inside a real vLLM engine (issue 7).

One worker with a KV pool of ~80 blocks. Workflow A sends a long prompt and
leaves on a tool call; while it is away, other workflows fill the pool several
times over. When A returns, its old prompt is served from cache under `saga`
(the hint scheduler held its blocks) and was evicted under `vllm` (stock LRU).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import openai
import pytest

from saga_hpc.client.service import ServiceProcess
from saga_hpc.model.tiny import WORDS
from saga_hpc.store.store import Store
from saga_hpc.worker.engine import EngineSettings
from tests.support.store import store_with_key

pytestmark = [pytest.mark.vllm, pytest.mark.mpi, pytest.mark.timeout(900)]

BLOCK = 32


def words(seed: int, n: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(n))


def call(
    client: openai.OpenAI, wf: str, messages: list[dict[str, str]], headers: dict[str, str]
) -> tuple[int, int, str]:
    raw = client.chat.completions.with_raw_response.create(
        model="tiny",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=8,
        temperature=0,
        extra_headers={"X-Saga-Workflow": wf, **headers},
        extra_body={"ignore_eos": True},
    )
    resp = raw.parse()
    u = resp.usage
    assert u is not None and u.prompt_tokens_details is not None
    return (
        u.prompt_tokens,
        u.prompt_tokens_details.cached_tokens or 0,
        resp.choices[0].message.content or "",
    )


def returning_call(system: str, model: Path, run_dir: Path) -> tuple[int, int]:
    """(A's first prompt length, cached tokens of A's returning call) under `system`."""
    db = f"sqlite:///{run_dir / 'saga.db'}"
    store, key = store_with_key(db)
    store.close()
    extra = ["--system", system, "--kv-cache-mb", "2.7", "--max-model-len", "2048"]
    extra += ["--hold-budget", "0.7"]
    with ServiceProcess(model, db, run_dir, workers=1, extra=extra, ready_timeout_s=400) as svc:
        client = openai.OpenAI(base_url=svc.url, api_key=key, max_retries=0, timeout=120)
        a = [{"role": "user", "content": words(1, 1100)}]
        first, _, answer = call(client, "wf-a", a, {"X-Saga-Next-Tool": "bash"})
        # A runs its tool for longer than the worker's grace hold, so only the
        # head's Retain can keep its blocks; three other workflows, each ~30
        # blocks, pass through meanwhile.
        time.sleep(2 * EngineSettings.hold_grace_s)
        for i in range(3):
            other = [{"role": "user", "content": words(100 + i, 950)}]
            call(client, f"wf-other-{i}", other, {"X-Saga-Workflow-End": "true"})
        a += [{"role": "assistant", "content": answer}, {"role": "user", "content": "ok"}]
        _, cached, _ = call(client, "wf-a", a, {"X-Saga-Workflow-End": "true"})
        log = svc.log_tail(400)
    assert "Traceback" not in log, log
    # Each call's time inside the engine, from vLLM's own stats, reached the
    # ledger (what `saga-hpc fit-profile` fits the simulator to).
    store = Store.open(db)
    calls = store.list_calls()
    store.close()
    assert len(calls) == 5
    for c in calls:
        assert c.engine_queue_s is not None and c.decode_s is not None, c
        assert c.prefill_s is not None and 0 < c.prefill_s < c.worker_time_s, c
    return first, cached


def test_saga_keeps_the_returning_workflow_cached_where_lru_evicts_it(
    tiny_model: Path, tmp_path: Path
) -> None:
    first, cached = returning_call("saga", tiny_model, tmp_path / "saga")
    assert first > 1000
    assert cached >= first - BLOCK, (first, cached)
    first_lru, cached_lru = returning_call("vllm", tiny_model, tmp_path / "vllm")
    assert first_lru == first
    assert cached_lru < first // 2, (first_lru, cached_lru)
    print(f"first prompt {first}: cached on return saga {cached}, vllm {cached_lru}")
