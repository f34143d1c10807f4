"""Replay a trace against a running service, as its agents would, and time every call.

One coroutine per task: it starts at the task's arrival, sends each call as a
streamed completion (token-id prompt, `ignore_eos`, the trace's output length)
with the workflow headers an agent sends (workflow id, next tool or end, task
class), then sleeps the tool's latency. TTFT is the first streamed text chunk;
cached tokens come from the usage chunk.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx

from saga_hpc.sim.engine import CallRecord
from saga_hpc.workload.model import Task

CALL_TIMEOUT_S = 600.0


class ReplayError(RuntimeError):
    """The service answered a call with an error: the run is not comparable."""


@dataclass
class Replay:
    calls: list[CallRecord] = field(default_factory=list)
    tct_s: dict[str, float] = field(default_factory=dict)
    makespan_s: float = 0.0
    # Returning calls whose own previous prompt (as far as this call keeps it)
    # was not served from cache, give or take a block.
    retention_misses: int = 0


@dataclass(frozen=True)
class CallResult:
    latency_s: float
    ttft_s: float
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int


async def timed_call(
    client: httpx.AsyncClient,
    url: str,
    key: str,
    prompt: list[int],
    out: int,
    headers: dict[str, str],
) -> CallResult:
    body = {
        "model": "tiny",
        "prompt": prompt,
        "max_tokens": out,
        "temperature": 0.0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.monotonic()
    ttft: float | None = None
    usage: dict[str, object] | None = None
    async with client.stream(
        "POST",
        url + "/v1/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}", **headers},
    ) as r:
        if r.status_code != 200:
            raise ReplayError(f"HTTP {r.status_code}: {(await r.aread()).decode()[:300]}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise ReplayError(f"call failed mid-stream: {chunk['error']}")
            if ttft is None and any(c.get("text") for c in chunk.get("choices", [])):
                ttft = time.monotonic() - t0
            if chunk.get("usage"):
                usage = chunk["usage"]
    latency = time.monotonic() - t0
    if usage is None:
        raise ReplayError("the stream ended without a usage chunk")
    details = usage.get("prompt_tokens_details") or {}
    assert isinstance(details, dict)
    return CallResult(
        latency_s=latency,
        ttft_s=ttft if ttft is not None else latency,
        prompt_tokens=int(str(usage["prompt_tokens"])),
        cached_tokens=int(details.get("cached_tokens") or 0),
        output_tokens=int(str(usage["completion_tokens"])),
    )


async def replay(
    url: str,
    keys: dict[str, str],
    tasks: list[Task],
    prompts: dict[str, list[list[int]]],
    block_size: int,
) -> Replay:
    """Run every task; `url` is the service's base (no /v1), `keys` one API key per tenant."""
    result = Replay()
    limits = httpx.Limits(max_connections=len(tasks) + 4)
    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=CALL_TIMEOUT_S, limits=limits) as client:
        await asyncio.gather(
            *(
                _task(client, url, keys[t.tenant], t, prompts[t.task_id], block_size, t0, result)
                for t in tasks
            )
        )
    result.makespan_s = time.monotonic() - t0
    return result


async def _task(
    client: httpx.AsyncClient,
    url: str,
    key: str,
    task: Task,
    prompts: list[list[int]],
    block_size: int,
    t0: float,
    result: Replay,
) -> None:
    await asyncio.sleep(max(0.0, t0 + task.arrival_s - time.monotonic()))
    previous: list[int] = []
    for step, prompt in zip(task.steps, prompts, strict=True):
        headers = {"X-Saga-Workflow": task.task_id, "X-Saga-Task-Class": task.task_class}
        headers |= {"X-Saga-Next-Tool": step.tool} if step.tool else {"X-Saga-Workflow-End": "true"}
        sent = time.monotonic()
        r = await timed_call(client, url, key, prompt, step.output_tokens, headers)
        now = time.monotonic()
        result.calls.append(
            CallRecord(
                task_id=task.task_id,
                tenant=task.tenant,
                arrived=sent - t0,
                ttft_s=r.ttft_s,
                tpot_s=(r.latency_s - r.ttft_s) / max(1, r.output_tokens - 1),
                finished=now - t0,
                prompt=r.prompt_tokens,
                hit=r.cached_tokens,
                out=r.output_tokens,
                service_s=r.latency_s,
            )
        )
        if previous:
            own = _common_prefix(previous, prompt)
            if r.cached_tokens < own // block_size * block_size - block_size:
                result.retention_misses += 1
        previous = prompt
        if step.tool_s:
            await asyncio.sleep(step.tool_s)
    result.tct_s[task.task_id] = time.monotonic() - (t0 + task.arrival_s)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
