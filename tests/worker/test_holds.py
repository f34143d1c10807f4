"""BlockHolds on vLLM's own BlockPool (no engine): exact eviction order, like vLLM's tests."""

from __future__ import annotations

from typing import Any

import pytest

from saga_hpc.worker.holds import BlockHolds, Hold

pytestmark = pytest.mark.vllm


def pool_with(n_blocks: int) -> Any:
    from vllm.v1.core.block_pool import BlockPool

    return BlockPool(num_gpu_blocks=n_blocks, enable_caching=True, hash_block_size=32)


def cached(pool: Any, tag: str, n: int) -> list[Any]:
    """n blocks holding a hashed prefix, used once and freed (now LRU candidates)."""
    from vllm.v1.core.kv_cache_utils import BlockHash, make_block_hash_with_group_id

    blocks = pool.get_new_blocks(n)
    for i, b in enumerate(blocks):
        b.set_block_hash(make_block_hash_with_group_id(BlockHash(f"{tag}{i}".encode()), 0))
    pool.free_blocks(reversed(blocks))
    return list(blocks)


def ids(blocks: list[Any]) -> list[int]:
    return [b.block_id for b in blocks]


def test_held_blocks_survive_allocation_that_evicts_everything_else() -> None:
    pool = pool_with(9)  # 8 usable, block 0 is vLLM's null block
    a = cached(pool, "a", 3)
    b = cached(pool, "b", 3)
    holds = BlockHolds(pool, budget_blocks=8)
    holds.record("wf-a", a)
    assert holds.hold("wf-a", until=10.0, score=1.0, now=0.0) == 3
    assert pool.get_num_free_blocks() == 5
    got = pool.get_new_blocks(5)  # LRU: b's blocks are newer, yet a's are held
    assert set(ids(got)) == set(ids(b)) | {7, 8}
    assert all(x.block_hash is not None for x in a)
    assert all(x.block_hash is None for x in b)


def test_release_evict_first_puts_unshared_blocks_first_among_cached_tail_first() -> None:
    pool = pool_with(9)
    a = cached(pool, "a", 3)
    b = cached(pool, "b", 3)
    never_used = ids(pool.free_block_queue.get_all_free_blocks())[:2]
    holds = BlockHolds(pool, budget_blocks=8)
    holds.record("wf-b", b)
    holds.record("wf-a", a)
    holds.record("wf-c", a[:1])  # another workflow shares a's first block
    holds.release("wf-b", evict_first=False)
    holds.release("wf-a", evict_first=True)
    order = ids(pool.free_block_queue.get_all_free_blocks())
    # Blocks that cache nothing go first; then a's own blocks, tail first.
    assert order[:2] == never_used and {7, 8} == set(never_used)
    assert order[2:4] == [a[2].block_id, a[1].block_id]
    assert a[0].block_id in order[4:]  # shared with wf-c: keeps its LRU place
    assert holds.stats.released_first == 2
    assert pool.free_block_queue.num_free_blocks == len(order) == 8
    got = pool.get_new_blocks(3)  # the next allocation evicts a's tail, not b
    assert ids(got) == [*never_used, a[2].block_id]
    assert all(x.block_hash is not None for x in b)


def test_release_evict_first_leaves_lru_order_when_the_scan_finds_no_cached_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import saga_hpc.worker.holds as holds_module

    pool = pool_with(9)
    a = cached(pool, "a", 3)
    holds = BlockHolds(pool, budget_blocks=8)
    holds.record("wf-a", a)
    before = ids(pool.free_block_queue.get_all_free_blocks())
    monkeypatch.setattr(holds_module, "SCAN_LIMIT", 2)  # 5 blocks cache nothing: plenty free
    holds.release("wf-a", evict_first=True)
    assert ids(pool.free_block_queue.get_all_free_blocks()) == before
    assert holds.stats.released_first == 0


def test_release_of_a_hold_gives_blocks_back_to_the_lru() -> None:
    pool = pool_with(9)
    a = cached(pool, "a", 3)
    holds = BlockHolds(pool, budget_blocks=8)
    holds.record("wf-a", a)
    holds.hold("wf-a", until=5.0, score=1.0, now=0.0)
    holds.expire(now=4.0)
    assert holds.held == 3
    holds.expire(now=5.0)
    assert holds.held == 0 and all(x.ref_cnt == 0 for x in a)
    assert pool.get_num_free_blocks() == 8


def test_budget_drops_lower_scores_first_and_truncates_to_a_prefix() -> None:
    pool = pool_with(17)
    a, b, c = cached(pool, "a", 4), cached(pool, "b", 4), cached(pool, "c", 4)
    holds = BlockHolds(pool, budget_blocks=6)
    for wf, blocks in (("a", a), ("b", b), ("c", c)):
        holds.record(wf, blocks)
    assert holds.hold("a", 10.0, score=0.5, now=0.0) == 4
    assert holds.hold("b", 10.0, score=0.1, now=0.0) == 2  # budget left: the first 2 blocks
    assert holds.hold("c", 10.0, score=1.0, now=0.0) == 4  # b, then a: lower scores give way
    assert set(holds.holds) == {"c"} and holds.held == 4
    assert holds.stats.dropped_for_budget == 2
    assert holds.hold("d-unknown", 10.0, score=9.0, now=0.0) == 0  # nothing recorded: nothing held


def test_a_prefix_stops_at_the_first_reused_block() -> None:
    pool = pool_with(9)
    a = cached(pool, "a", 3)
    holds = BlockHolds(pool, budget_blocks=8)
    holds.record("wf-a", a)
    a[1].reset_hash()  # evicted and reused since the workflow left
    assert holds.hold("wf-a", 10.0, 1.0, now=0.0) == 1


def test_make_room_frees_lowest_score_until_the_request_fits() -> None:
    pool, holds = two_holds()
    holds.make_room(4, now=0.0)
    assert set(holds.holds) == {"a"} and pool.get_num_free_blocks() == 5
    assert holds.stats.dropped_for_memory == 1


def test_a_holds_score_is_the_step_in_force() -> None:
    # Steps as the hint channel's JSON brings them: lists.
    hold = Hold([], until=20.0, score=1.0, steps=[[5.0, 0.5], [8.0, 2.0]])
    times = (0.0, 4.9, 5.0, 7.9, 8.0, 30.0)
    assert [hold.score_at(t) for t in times] == [1.0, 1.0, 0.5, 0.5, 2.0, 2.0]


def two_holds(steps_a: list[list[float]] | None = None) -> tuple[Any, BlockHolds]:
    """a: score 2 (with `steps_a`), b: score 1, 3 blocks each held until 20 s,
    2 free of 8."""
    pool = pool_with(9)
    a, b = cached(pool, "a", 3), cached(pool, "b", 3)
    holds = BlockHolds(pool, budget_blocks=8)
    holds.record("a", a)
    holds.record("b", b)
    holds.hold("a", 20.0, score=2.0, now=0.0, steps=steps_a or ())
    holds.hold("b", 20.0, score=1.0, now=0.0)
    return pool, holds


def test_make_room_takes_the_lowest_score_at_now_before_and_after_a_step() -> None:
    _, holds = two_holds([[5.0, 0.5]])
    holds.make_room(4, now=4.9)  # a 2 > b 1: b goes
    assert set(holds.holds) == {"a"}
    _, holds = two_holds([[5.0, 0.5]])
    holds.make_room(4, now=5.0)  # a from 5: 0.5 < b 1: a goes
    assert set(holds.holds) == {"b"}
    pool, holds = two_holds([[5.0, 0.5]])
    holds.hold("a", 20.0, score=2.0, now=5.0)  # a new hint for a: its steps replaced
    holds.make_room(4, now=6.0)
    assert set(holds.holds) == {"a"} and pool.get_num_free_blocks() == 5


def test_budget_compares_the_scores_in_force_when_a_hold_arrives() -> None:
    def after_c(now: float) -> set[str]:
        pool = pool_with(17)
        holds = BlockHolds(pool, budget_blocks=6)
        for wf in "abc":
            holds.record(wf, cached(pool, wf, 3))
        holds.hold("a", 20.0, score=0.5, now=0.0, steps=[[5.0, 3.0]])
        holds.hold("b", 20.0, score=2.0, now=0.0)
        holds.hold("c", 20.0, score=1.0, now=now, steps=[[now + 1.0, 0.1]])
        return set(holds.holds)

    assert after_c(4.0) == {"b", "c"}  # a 0.5 < c 1: a gives way
    assert after_c(5.0) == {"a", "b"}  # a from 5: 3; no hold scores below c's 1


def test_the_heads_hint_extends_a_grace_hold_the_budget_cut_short() -> None:
    def after_hint(score: float) -> tuple[BlockHolds, list[Any], list[Any]]:
        pool = pool_with(17)
        low, a = cached(pool, "low", 3), cached(pool, "a", 3)
        holds = BlockHolds(pool, budget_blocks=5)
        holds.record("low", low)
        holds.record("a", a)
        assert holds.hold("low", 20.0, score=0.5, now=0.0) == 3
        # a's call ended: the grace hold (score 0) gets what the budget has left.
        assert holds.hold("a", 1.0, score=0.0, now=0.0) == 2
        holds.hold("a", 20.0, score=score, now=0.1)  # then the head's hint
        return holds, low, a

    holds, low, a = after_hint(2.0)  # outranks low: low gives way, a is held whole
    assert set(holds.holds) == {"a"} and holds.held == 3
    assert [x.ref_cnt for x in a] == [1, 1, 1] and [x.ref_cnt for x in low] == [0, 0, 0]
    assert holds.stats.dropped_for_budget == 1
    holds, low, a = after_hint(0.1)  # outranks nothing: a keeps what it had
    assert holds.held == 5 and len(holds.holds["a"].blocks) == 2
    assert holds.holds["a"].until == 20.0 and [x.ref_cnt for x in a] == [1, 1, 0]
