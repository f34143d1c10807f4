"""A bounded load generator: N concurrent workflows, each a chain of calls,
against one service endpoint; reports requests/s, tokens/s, latency and the
head's own added latency (read from the head's /metrics histogram).

Bounded in count (`calls`) and time (`deadline_s`): it never runs open-ended.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


@dataclass(frozen=True)
class LoadSpec:
    base_url: str  # http://host:port (no /v1)
    keys: tuple[str, ...]  # one or more API keys, used round-robin per workflow
    workflows: int = 32
    calls: int = 256
    turns: int = 4  # calls per workflow before it ends and a new one starts
    prompt_words: int = 60
    max_tokens: int = 16
    stream: bool = False
    deadline_s: float = 300.0
    model: str = "tiny"
    tool_s: float = 0.0  # pause between a workflow's calls (the tool runs)
    endpoint_file: str | None = None  # follow the published endpoint (handover, restarts)
    retry_s: float = 120.0  # how long one call may keep retrying 503s / refused connections


@dataclass
class LoadResult:
    calls_ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    wall_s: float = 0.0
    head_overhead_ms: dict[str, float] = field(default_factory=dict)
    retries: int = 0
    jobs_by_workflow: dict[str, set[str]] = field(default_factory=dict)
    jobs_seen: dict[str, None] = field(default_factory=dict)
    """Service jobs in the order they first answered (a dict keeps it): job ids
    do not sort as strings ("10" < "9"), and may not be numbers (arrays: 12_3)."""

    def saw_job(self, workflow: str, job: str) -> None:
        """The service job that answered one of `workflow`'s calls."""
        self.jobs_by_workflow.setdefault(workflow, set()).add(job)
        self.jobs_seen.setdefault(job)

    def summary(self) -> dict[str, object]:
        lat = sorted(self.latencies_s)
        return {
            "calls_ok": self.calls_ok,
            "errors": self.errors,
            "wall_s": round(self.wall_s, 3),
            "requests_per_s": round(self.calls_ok / self.wall_s, 1) if self.wall_s else 0.0,
            "output_tokens_per_s": round(self.output_tokens / self.wall_s, 1)
            if self.wall_s
            else 0.0,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "latency_median_ms": round(1000 * statistics.median(lat), 2) if lat else 0.0,
            "latency_p99_ms": round(1000 * _quantile(lat, 0.99), 2) if lat else 0.0,
            "head_overhead_ms": self.head_overhead_ms,
            "retries": self.retries,
            "service_jobs": list(self.jobs_seen),
            "workflows_across_jobs": sum(len(js) > 1 for js in self.jobs_by_workflow.values()),
        }


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1)]


async def run_load(spec: LoadSpec) -> LoadResult:
    result = LoadResult()
    first_base = current_base(spec)
    before = await scrape_histogram(first_base, "saga_head_overhead_seconds")
    budget = [spec.calls]
    deadline = time.monotonic() + spec.deadline_s
    limits = httpx.Limits(
        max_connections=spec.workflows + 4, max_keepalive_connections=spec.workflows + 4
    )
    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(
            *(_agent(client, spec, i, budget, deadline, result) for i in range(spec.workflows))
        )
    result.wall_s = time.monotonic() - t0
    # Another head answering now (handover): its histogram is not comparable.
    same = current_base(spec) == first_base
    after = await scrape_histogram(first_base, "saga_head_overhead_seconds") if same else {}
    result.head_overhead_ms = histogram_quantiles(before, after, (0.5, 0.99))
    return result


async def _agent(
    client: httpx.AsyncClient,
    spec: LoadSpec,
    index: int,
    budget: list[int],
    deadline: float,
    result: LoadResult,
) -> None:
    key = spec.keys[index % len(spec.keys)]
    wf_round = 0
    while budget[0] > 0 and time.monotonic() < deadline:
        wf = f"load-{index}-{wf_round}-{time.time_ns()}"
        history = "system prompt of the load agent " * 8
        # A workflow takes its calls from the budget when it starts: an agent that
        # runs ahead (its peers waiting out a handover) must not start another
        # workflow with calls its peers' workflows still need.
        turns = min(spec.turns, budget[0])
        budget[0] -= turns
        for turn in range(turns):
            if time.monotonic() >= deadline:
                return
            history += f" turn {turn} " + "observation " * spec.prompt_words
            last = turn == turns - 1
            headers = {"Authorization": f"Bearer {key}", "X-Saga-Workflow": wf}
            headers |= {"X-Saga-Workflow-End": "true"} if last else {"X-Saga-Next-Tool": "bash"}
            body = {
                "model": spec.model,
                "max_tokens": spec.max_tokens,
                "ignore_eos": True,
                "messages": [{"role": "user", "content": history}],
            }
            if turn and spec.tool_s:
                await asyncio.sleep(spec.tool_s)
            t = time.monotonic()
            try:
                r = await _post_following(client, spec, body, headers, result)
            except httpx.HTTPError as exc:
                name = type(exc).__name__
                result.errors[name] = result.errors.get(name, 0) + 1
                continue
            if r.status_code != 200:
                result.errors[str(r.status_code)] = result.errors.get(str(r.status_code), 0) + 1
                continue
            result.latencies_s.append(time.monotonic() - t)
            job = r.headers.get("x-saga-service-job")
            if job:
                result.saw_job(wf, job)
            usage = r.json()["usage"]
            result.calls_ok += 1
            result.output_tokens += usage["completion_tokens"]
            result.prompt_tokens += usage["prompt_tokens"]
            result.cached_tokens += usage["prompt_tokens_details"]["cached_tokens"]
        wf_round += 1


async def _post_following(
    client: httpx.AsyncClient,
    spec: LoadSpec,
    body: dict[str, object],
    headers: dict[str, str],
    result: LoadResult,
) -> httpx.Response:
    """POST a call; on 503 or a refused connection, re-read the endpoint and retry
    (bounded by `spec.retry_s`), as an agent following a moving service does."""
    give_up = time.monotonic() + spec.retry_s
    while True:
        base = current_base(spec)
        try:
            r = await client.post(base + "/v1/chat/completions", json=body, headers=headers)
        except httpx.TransportError:
            if time.monotonic() > give_up:
                raise
            r = None
        if r is not None and r.status_code != 503:
            return r
        if time.monotonic() > give_up:
            assert r is not None
            return r
        result.retries += 1
        wait = float(r.headers.get("retry-after", "1")) if r is not None else 1.0
        await asyncio.sleep(min(max(wait, 0.2), 5.0))


def current_base(spec: LoadSpec) -> str:
    """The service's base URL: from the endpoint file when following one."""
    if spec.endpoint_file:
        try:
            url = str(json.loads(Path(spec.endpoint_file).read_text())["url"])
            return url.rstrip("/").removesuffix("/v1")
        except (OSError, ValueError, KeyError):
            pass  # mid-replace or gone for a moment: use the last known one
    return spec.base_url


async def scrape_histogram(base_url: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts {upper bound: count} of a Prometheus histogram."""
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(base_url + "/metrics")).text
    except httpx.HTTPError:
        return {}
    buckets: dict[float, float] = {}
    prefix = name + "_bucket{"
    for line in text.splitlines():
        if line.startswith(prefix):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[math.inf if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return buckets


def histogram_quantiles(
    before: dict[float, float], after: dict[float, float], qs: tuple[float, ...]
) -> dict[str, float]:
    """Quantiles (ms) of the observations between two scrapes, interpolated within buckets."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    out: dict[str, float] = {}
    for q in qs:
        if total <= 0:
            out[f"p{round(q * 100)}"] = 0.0
            continue
        target = q * total
        lower_bound, lower_count = 0.0, 0.0
        for b, c in zip(bounds, counts, strict=True):
            if c >= target:
                upper = b if math.isfinite(b) else lower_bound
                frac = (target - lower_count) / (c - lower_count) if c > lower_count else 1.0
                out[f"p{round(q * 100)}"] = round(
                    1000 * (lower_bound + frac * (upper - lower_bound)), 3
                )
                break
            lower_bound, lower_count = b, c
    return out
