"""Capture vLLM's scheduler stats (KV usage, queue depths, prefix hits) for heartbeats.

vLLM calls stat loggers in the frontend process after every engine step, which
is the worker's own process, so the latest snapshot is simply kept in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vllm.v1.metrics.loggers import StatLoggerBase


@dataclass
class KVSnapshot:
    kv_usage: float = 0.0
    running: int = 0
    waiting: int = 0
    prefix_query_tokens: int = 0  # cumulative since start
    prefix_hit_tokens: int = 0


class SnapshotLogger(StatLoggerBase):
    """A stat logger whose only job is to keep the newest numbers in `snapshot`."""

    snapshot = KVSnapshot()  # one engine per worker process, so one snapshot

    def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
        self.vllm_config = vllm_config

    def record(
        self,
        scheduler_stats: Any,
        iteration_stats: Any,
        mm_cache_stats: Any = None,
        engine_idx: int = 0,
    ) -> None:
        if scheduler_stats is None:
            return
        snap = SnapshotLogger.snapshot
        snap.kv_usage = scheduler_stats.kv_cache_usage
        snap.running = scheduler_stats.num_running_reqs
        snap.waiting = scheduler_stats.num_waiting_reqs
        prefix = scheduler_stats.prefix_cache_stats
        snap.prefix_query_tokens += prefix.queries
        snap.prefix_hit_tokens += prefix.hits

    def log_engine_initialized(self) -> None:
        return None
