"""The load client's summary: what the handover test reads from it."""

from __future__ import annotations

import asyncio
import time

import httpx

from saga_hpc.client.loadgen import LoadResult, LoadSpec, _agent


def test_service_jobs_are_listed_in_the_order_they_first_answered() -> None:
    result = LoadResult()
    for workflow, job in [("a", "9"), ("b", "9"), ("a", "10"), ("b", "10"), ("c", "10")]:
        result.saw_job(workflow, job)
    summary = result.summary()
    assert summary["service_jobs"] == ["9", "10"]  # sorted as strings, "10" came first
    assert summary["workflows_across_jobs"] == 2


def test_an_agent_running_ahead_does_not_take_its_peers_calls() -> None:
    """Workflow 1's calls are slow (its agent waits out a handover, say): agent 0
    finishes first, but every workflow still gets all of its turns."""
    calls: dict[str, int] = {}

    async def serve(request: httpx.Request) -> httpx.Response:
        workflow = request.headers["x-saga-workflow"]
        calls[workflow] = calls.get(workflow, 0) + 1
        await asyncio.sleep(0.02 if workflow.startswith("load-1-") else 0)
        usage = {"completion_tokens": 1, "prompt_tokens": 1}
        usage["prompt_tokens_details"] = {"cached_tokens": 0}  # type: ignore[assignment]
        return httpx.Response(200, json={"usage": usage})

    spec = LoadSpec(base_url="http://head", keys=("k",), workflows=2, calls=6, turns=3)
    budget, result = [spec.calls], LoadResult()

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as client:
            deadline = time.monotonic() + 30
            await asyncio.gather(
                *(_agent(client, spec, i, budget, deadline, result) for i in (0, 1))
            )

    asyncio.run(run())
    assert sorted(calls.values()) == [3, 3] and result.calls_ok == 6
