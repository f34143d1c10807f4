"""Prometheus metrics of the head. Labels carry accounts and workers, never prompt text."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from saga_hpc.protocol import Done, Register

if TYPE_CHECKING:
    from saga_hpc.head.calls import CallContext

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)
# Head overhead is milliseconds; fine buckets so its median and p99 can be read off.
_OVERHEAD_BUCKETS = (
    0.0002,
    0.0005,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.004,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class HeadMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls = Counter("saga_calls", "Finished calls", ["account", "worker"], registry=r)
        self.prompt_tokens = Counter("saga_prompt_tokens", "Prompt tokens", ["account"], registry=r)
        self.cached_tokens = Counter(
            "saga_cached_prompt_tokens",
            "Prompt tokens served from the KV prefix cache",
            ["account"],
            registry=r,
        )
        self.output_tokens = Counter(
            "saga_output_tokens", "Generated tokens", ["account"], registry=r
        )
        self.head_overhead = Histogram(
            "saga_head_overhead_seconds",
            "Time a call spends in the head: total minus engine time minus queueing for a slot",
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.call_latency = Histogram(
            "saga_call_latency_seconds",
            "Request arrival to last token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.workers_alive = Gauge(
            "saga_workers_alive", "Workers registered and heartbeating", registry=r
        )
        self.engine_start = Gauge(
            "saga_worker_engine_start_seconds",
            "Engine start time per worker",
            ["worker"],
            registry=r,
        )
        self.worker_up = Gauge(
            "saga_worker_up",
            "1 while the worker heartbeats, 0 once it is declared dead or has left",
            ["worker"],
            registry=r,
        )
        self.worker_deaths = Counter("saga_worker_deaths", "Workers declared dead", registry=r)
        self.requeued = Counter(
            "saga_requeued_calls",
            "Calls run again on another worker because theirs died before streaming a token",
            registry=r,
        )
        self.interrupted = Counter(
            "saga_interrupted_calls",
            "Calls answered with a retryable error because their worker died "
            "(tokens already streamed, out of attempts, or no worker left)",
            registry=r,
        )
        self.rejected = Counter(
            "saga_rejected_requests", "Requests answered 4xx", ["status"], registry=r
        )
        # Kept for the demo/bench summaries (bounded: one float per call of a run).
        self.overheads: list[float] = []

    def track_calls(self, per_worker: Callable[[], Mapping[str, tuple[int, int]]]) -> None:
        """`saga_worker_calls{worker}` and `saga_worker_streams{worker}`, counted
        when scraped (no bookkeeping per call)."""
        self.registry.register(_CallsPerWorker(per_worker))

    def worker_started(self, info: Register) -> None:
        self.workers_alive.inc()
        self.worker_up.labels(info.worker_id).set(1)
        self.engine_start.labels(info.worker_id).set(info.engine_start_s)

    def worker_died(self, worker_id: str) -> None:
        self.worker_left(worker_id)
        self.worker_deaths.inc()

    def worker_left(self, worker_id: str) -> None:
        self.workers_alive.dec()
        self.worker_up.labels(worker_id).set(0)

    def observe_call(self, ctx: CallContext, done: Done, overhead_s: float) -> None:
        account = ctx.principal.account
        self.calls.labels(account, ctx.worker_id or "").inc()
        self.prompt_tokens.labels(account).inc(done.prompt_tokens)
        self.cached_tokens.labels(account).inc(done.cached_tokens)
        self.output_tokens.labels(account).inc(done.output_tokens)
        self.head_overhead.observe(max(overhead_s, 0.0))
        if len(self.overheads) < 1_000_000:
            self.overheads.append(overhead_s)


class _CallsPerWorker(Collector):
    def __init__(self, per_worker: Callable[[], Mapping[str, tuple[int, int]]]) -> None:
        self.per_worker = per_worker

    def collect(self) -> Iterator[GaugeMetricFamily]:
        calls = GaugeMetricFamily(
            "saga_worker_calls",
            "Calls dispatched to the worker and not finished (live workers)",
            labels=["worker"],
        )
        streams = GaugeMetricFamily(
            "saga_worker_streams",
            "Of those, streamed calls whose tokens already reach their client "
            "(the worker's death cuts them; the others run again elsewhere)",
            labels=["worker"],
        )
        for worker, (n_calls, n_streams) in sorted(self.per_worker().items()):
            calls.add_metric([worker], n_calls)
            streams.add_metric([worker], n_streams)
        yield calls
        yield streams
