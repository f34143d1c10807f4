"""The prefix-sharing block pool: hits by hash, accounting, and each eviction order exactly."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from saga_hpc.core.blockpool import BlockPool
from saga_hpc.core.retention.eviction import EVICTIONS, make_eviction


def run(pool: BlockPool, rid: str, wf: str, hashes: list[int], now: float) -> None:
    """One call whose prompt is exactly `hashes`, finished at once."""
    assert pool.admit(rid, wf, hashes, len(hashes), now) is not None
    pool.finish(rid, now)


def evict_order(pool: BlockPool, candidates: list[int], now: float) -> list[int]:
    """Admit one-block calls until every candidate is gone; the order they went in."""
    order: list[int] = []
    step = 0
    while len(order) < len(candidates):
        step += 1
        assert pool.admit(f"filler{step}", "filler", [], 1, now) is not None
        order += [h for h in candidates if h not in pool and h not in order]
    return order


def test_hits_shared_prefix_across_workflows_and_accounting() -> None:
    pool = BlockPool(10, 16, make_eviction("lru"))
    assert pool.admit("r1", "A", [1, 2, 3], 4, 0.0) == 0
    assert (pool.used, pool.cached, pool.free) == (4, 0, 6)
    pool.finish("r1", 1.0)
    assert (pool.used, pool.cached, pool.free) == (0, 3, 7)  # the partial block is freed
    assert pool.lookup([1, 2, 9]) == 2
    assert pool.admit("r2", "B", [1, 2, 9], 3, 2.0) == 2
    assert (pool.used, pool.cached, pool.free) == (3, 1, 6)
    assert (pool.hit_tokens, pool.query_tokens) == (32, 96)
    assert pool.extend("r2", 1, 2.5)  # decode grew into one more block
    pool.finish("r2", 3.0, new_hashes=[10])
    assert pool.lookup([1, 2, 9, 10]) == 4 and (pool.used, pool.cached) == (0, 5)


def test_no_room_leaves_state_untouched() -> None:
    pool = BlockPool(4, 16, make_eviction("lru"))
    assert pool.admit("r1", "A", [1, 2], 3, 0.0) == 0
    assert pool.admit("r2", "B", [], 2, 0.0) is None
    assert (pool.used, pool.cached, pool.query_tokens) == (3, 0, 32)
    assert pool.extend("r1", 1, 0.0) and not pool.extend("r1", 1, 0.0)
    pool.finish("r1", 1.0)
    assert pool.admit("r2", "B", [], 4, 2.0) == 0  # evicts all of A's cached blocks
    assert pool.evictions == 2 and 1 not in pool


def test_running_blocks_are_never_evicted() -> None:
    pool = BlockPool(4, 16, make_eviction("lru"))
    run(pool, "r1", "A", [1, 2], 0.0)
    assert pool.admit("r2", "B", [1, 2], 3, 1.0) == 2  # pins 1, 2
    assert pool.admit("r3", "C", [], 2, 2.0) is None
    assert pool.admit("r3", "C", [], 1, 2.0) == 0


def test_lru_oldest_first_tail_before_head() -> None:
    pool = BlockPool(6, 16, make_eviction("lru"))
    run(pool, "a", "A", [10, 11], 1.0)
    run(pool, "b", "B", [20, 21], 2.0)
    run(pool, "c", "C", [30, 31], 3.0)
    run(pool, "a2", "A", [10, 11], 4.0)  # A used again: now the most recent
    assert evict_order(pool, [10, 11, 20, 21, 30, 31], 5.0) == [21, 20, 31, 30, 11, 10]


def test_ttl_pins_retained_workflow_until_the_hint_lapses() -> None:
    pool = BlockPool(4, 16, make_eviction("ttl"))
    run(pool, "a", "A", [10, 11], 1.0)
    run(pool, "b", "B", [20, 21], 2.0)
    pool.retain("A", until=10.0, score=1.0)
    assert evict_order(pool, [20, 21], 3.0) == [21, 20]
    assert 10 in pool and 11 in pool


def test_ttl_lapsed_hint_is_plain_lru() -> None:
    pool = BlockPool(4, 16, make_eviction("ttl"))
    run(pool, "a", "A", [10, 11], 1.0)
    run(pool, "b", "B", [20, 21], 2.0)
    pool.retain("A", until=10.0, score=1.0)
    assert evict_order(pool, [10, 11, 20, 21], 11.0) == [11, 10, 21, 20]


def test_aeg_released_then_unhinted_then_lowest_score() -> None:
    pool = BlockPool(4, 16, make_eviction("aeg"))
    for i, wf in enumerate("ABCD"):
        run(pool, wf, wf, [i + 1], float(i))
    pool.retain("A", until=100.0, score=0.5)
    pool.retain("B", until=100.0, score=0.1)
    pool.release("D")  # C: no hint
    assert evict_order(pool, [1, 2, 3, 4], 10.0) == [4, 3, 2, 1]


def test_aeg_score_follows_the_hints_steps_then_lapses() -> None:
    def pool_at(now: float) -> list[int]:
        pool = BlockPool(3, 16, make_eviction("aeg"))
        for i, wf in enumerate("ABC"):
            run(pool, wf, wf, [i + 1], float(i))
        pool.retain("A", until=20.0, score=0.1, steps=((6.0, 3.0), (9.0, 0.5)))
        pool.retain("B", until=20.0, score=1.0)
        pool.retain("C", until=30.0, score=2.0)
        return evict_order(pool, [1, 2, 3], now)

    assert pool_at(5.0) == [1, 2, 3]  # 0.1 < 1 < 2
    assert pool_at(7.0) == [2, 3, 1]  # A from 6: 3
    assert pool_at(10.0) == [1, 2, 3]  # A from 9: 0.5
    assert pool_at(21.0) == [1, 2, 3]  # A and B lapsed at 20 (plain LRU), C still held


def test_aeg_shared_prefix_ignores_one_workflows_release() -> None:
    pool = BlockPool(4, 16, make_eviction("aeg"))
    run(pool, "a", "A", [1, 2], 0.0)
    run(pool, "c", "C", [4], 0.5)
    run(pool, "b", "B", [1, 3], 1.0)  # 1 is the shared system prompt
    pool.release("B")
    # B's own block first, then plain LRU: A's tail, C, the shared prefix (used at 1.0).
    assert evict_order(pool, [1, 2, 3, 4], 3.0) == [3, 2, 4, 1]


def test_belady_furthest_next_use_first_leaves_only() -> None:
    next_use = {1: 3.0, 2: 5.0, 3: 50.0, 4: math.inf}
    pool = BlockPool(4, 16, make_eviction("belady", lambda h, now: next_use[h]))
    run(pool, "a", "A", [1, 2], 0.0)
    run(pool, "b", "B", [3], 1.0)
    run(pool, "c", "C", [4], 2.0)
    assert evict_order(pool, [1, 2, 3, 4], 2.5) == [4, 3, 2, 1]


def test_belady_never_evicts_an_inner_block_before_its_leaf() -> None:
    next_use = {1: 100.0, 2: 1.0, 3: 10.0}  # 1's far future must not expose 2
    pool = BlockPool(3, 16, make_eviction("belady", lambda h, now: next_use[h]))
    run(pool, "a", "A", [1, 2], 0.0)
    run(pool, "b", "B", [3], 0.0)
    assert evict_order(pool, [1, 2, 3], 1.0) == [3, 2, 1]


@settings(max_examples=300, deadline=None)
@given(
    policy=st.sampled_from(EVICTIONS),
    ops=st.lists(
        st.tuples(st.integers(0, 5), st.integers(1, 6), st.integers(0, 3), st.booleans()),
        max_size=40,
    ),
)
def test_accounting_invariants(policy: str, ops: list[tuple[int, int, int, bool]]) -> None:
    """Random calls over shared chains: blocks are conserved, cached blocks stay
    reachable, and the leaves evicted are those with the smallest keys."""
    pool = BlockPool(12, 16, make_eviction(policy, lambda h, now: float(h % 7)))
    running: list[str] = []
    for step, (wf, length, extra, finish_one) in enumerate(ops):
        now = float(step)
        chain = [wf % 2 * 1000 + i for i in range(length)]  # two families of chains
        rid = f"r{step}"
        pool._tick(now)
        leaves = {
            h: pool._key(h, b) for h, b in pool._blocks.items() if not b.refs and not b.children
        }
        if pool.admit(rid, f"wf{wf}", chain, length + extra, now) is not None:
            running.append(rid)
        gone = [k for h, k in leaves.items() if h not in pool]
        kept = [k for h, k in leaves.items() if h in pool and not pool._blocks[h].refs]
        if gone and kept:  # the smallest keys went first
            assert max(gone) <= min(kept)
        if finish_one and running:
            pool.finish(running.pop(0), now)
            # Its score steps down after a second (its key changes with no call).
            pool.retain(f"wf{wf}", now + 2.0, 1.0 / (1 + wf), ((now + 1.0, 0.1 / (1 + wf)),))
        assert pool.used + pool.cached + pool.free == 12
        assert pool.free >= 0 and pool.used >= 0 and pool.cached >= 0
        for base in (0, 1000):  # a cached block's parent is cached: leaves go first
            assert all(base + i - 1 in pool for i in range(1, 12) if base + i in pool)
    for rid in running:
        pool.finish(rid, 100.0)
    assert pool.used == 0
