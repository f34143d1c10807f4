"""What a worker reports: the memory verdict, from block-pool stats or vLLM's stat logger."""

from __future__ import annotations

from saga_hpc.protocol import decode, encode
from saga_hpc.worker.heartbeat import FULL_POOL, heartbeat, memory_blocked, waits_for_memory
from saga_hpc.worker.hint_channel import PoolStats


def pool(free: int, blocked: bool) -> PoolStats:
    return PoolStats(
        total=100,
        free=free,
        cached_free=7,
        held=12,
        evictions=3,
        holds=2,
        dropped_for_memory=0,
        released_first=0,
        memory_blocked=blocked,
    )


def test_a_request_waits_for_memory_when_its_blocks_exceed_the_free_ones() -> None:
    assert not waits_for_memory(None, free_blocks=0, block_size=32)  # nothing waits
    assert not waits_for_memory(320, free_blocks=10, block_size=32)  # 10 blocks: fits exactly
    assert waits_for_memory(321, free_blocks=10, block_size=32)  # an 11th block is needed
    assert not waits_for_memory(321, free_blocks=11, block_size=32)


def test_the_schedulers_verdict_wins_over_the_lagging_queue_depth() -> None:
    # The stat logger still says nothing waits, the scheduler saw the queue stall.
    assert memory_blocked(waiting=0, kv_usage=0.2, pool=pool(free=1, blocked=True))
    # The pool is full but what waits fits (e.g. the step's token budget was spent).
    assert not memory_blocked(waiting=3, kv_usage=1.0, pool=pool(free=1, blocked=False))


def test_without_pool_stats_a_full_pool_with_waiting_requests_is_blocked() -> None:
    assert memory_blocked(waiting=1, kv_usage=FULL_POOL, pool=None)
    assert not memory_blocked(waiting=0, kv_usage=1.0, pool=None)
    assert not memory_blocked(waiting=4, kv_usage=FULL_POOL - 0.1, pool=None)


def test_heartbeat_carries_pool_counts_and_the_verdict_over_the_wire() -> None:
    hb = heartbeat(
        "w1",
        running=3,
        waiting=2,
        kv_usage=0.5,
        prefix_query_tokens=900,
        prefix_hit_tokens=600,
        total_blocks=100,
        pool=pool(free=4, blocked=True),
    )
    back = decode(encode(hb))
    assert back == hb
    assert (back.kv_blocks_used, back.kv_blocks_cached, back.kv_blocks_held) == (96, 7, 12)
    assert back.memory_blocked
    plain = heartbeat(
        "w1",
        running=1,
        waiting=0,
        kv_usage=0.25,
        prefix_query_tokens=0,
        prefix_hit_tokens=0,
        total_blocks=100,
        pool=None,
    )
    assert (plain.kv_blocks_used, plain.memory_blocked) == (25, False)
