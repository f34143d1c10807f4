"""What a worker tells the head every heartbeat, from the engine's two reports.

vLLM's stat logger gives queue depths, KV usage and prefix hits (every engine
step, in the worker's process); the hint scheduler's block-pool stats give
free / cached / held blocks and whether the next waiting request fits the free
blocks (`PoolStats`, from the engine-core process). Without the hint scheduler
(another vLLM version) only the first exists, and memory pressure is inferred
from it.
"""

from __future__ import annotations

import math

from saga_hpc.protocol import Heartbeat
from saga_hpc.worker.hint_channel import PoolStats

# Without block-pool stats: requests that wait while the pool is this full are
# taken to wait for memory (vLLM's usage counts cached-but-free blocks as free).
FULL_POOL = 0.95


def waits_for_memory(next_request_tokens: int | None, free_blocks: int, block_size: int) -> bool:
    """True when the engine's next waiting request needs more blocks than are free.

    A request takes one block per `block_size` tokens, cached prefix blocks
    included: those are free (evictable) until it touches them, so they count
    on both sides."""
    if next_request_tokens is None:
        return False
    return math.ceil(next_request_tokens / block_size) > free_blocks


def memory_blocked(waiting: int, kv_usage: float, pool: PoolStats | None) -> bool:
    """Calls wait inside the engine for KV memory (not merely for the next step).

    The scheduler's own verdict wins: it is as new as the last step, while the
    stat logger's queue depth lags it by a step."""
    if pool is not None:
        return pool.memory_blocked
    return waiting > 0 and kv_usage >= FULL_POOL


def heartbeat(
    worker_id: str,
    *,
    running: int,
    waiting: int,
    kv_usage: float,
    prefix_query_tokens: int,
    prefix_hit_tokens: int,
    total_blocks: int,
    pool: PoolStats | None,
) -> Heartbeat:
    return Heartbeat(
        worker_id=worker_id,
        running=running,
        waiting=waiting,
        kv_blocks_total=total_blocks,
        kv_blocks_used=total_blocks - pool.free if pool else round(kv_usage * total_blocks),
        kv_blocks_cached=pool.cached_free if pool else 0,
        prefix_query_tokens=prefix_query_tokens,
        prefix_hit_tokens=prefix_hit_tokens,
        kv_blocks_held=pool.held if pool else 0,
        kv_evictions=pool.evictions if pool else 0,
        memory_blocked=memory_blocked(waiting, kv_usage, pool),
    )
