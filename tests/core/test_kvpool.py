"""The simulator's KV pool: prefix reuse, pinning, and each eviction order."""

from __future__ import annotations

import math

import pytest

from saga_hpc.core.kvpool import KVPool


def fill(pool: KVPool, keys: list[str], blocks: int = 4) -> None:
    for i, k in enumerate(keys):
        assert pool.admit(k, 0, blocks, float(i)) is not None
        pool.finish(k, float(i) + 0.5)


def evicted_first(pool: KVPool, now: float) -> str:
    """Admit a new context that needs one entry's room; return whose blocks went."""
    before = {k: e.blocks for k, e in pool.entries.items()}
    assert pool.admit("new", 0, 4, now) is not None
    return next(k for k, b in before.items() if pool.cached(k) < b)


def test_prefix_hit_and_growth() -> None:
    pool = KVPool(100)
    first = pool.admit("wf", 0, 10, 0.0)
    assert first is not None and first.hit_blocks == 0 and first.new_blocks == 10
    pool.finish("wf", 1.0)
    again = pool.admit("wf", 10, 14, 2.0)
    assert again is not None and again.own_hit_blocks == 10 and again.new_blocks == 4
    assert pool.used == 14 and pool.pinned == 14


def test_shared_prefix_counts_once() -> None:
    pool = KVPool(100)
    pool.admit("a", 0, 5, 0.0, shared_key="sys", shared_blocks=20)
    b = pool.admit("b", 0, 5, 0.0, shared_key="sys", shared_blocks=20)
    assert b is not None and b.hit_blocks == 20 and pool.used == 30


def test_running_contexts_are_never_evicted() -> None:
    pool = KVPool(10)
    assert pool.admit("a", 0, 8, 0.0) is not None
    assert pool.admit("b", 0, 4, 1.0) is None  # a is running: no room
    pool.finish("a", 2.0)
    assert pool.admit("b", 0, 4, 3.0) is not None
    assert pool.cached("a") == 6  # evicted from its tail, only what was needed


def test_lru_evicts_least_recent() -> None:
    pool = KVPool(12, "lru")
    fill(pool, ["a", "b", "c"])
    assert evicted_first(pool, 10.0) == "a"


def test_ttl_keeps_pinned_until_expiry() -> None:
    pool = KVPool(12, "ttl")
    fill(pool, ["a", "b", "c"])
    pool.retain("a", until=20.0, score=1.0, now=5.0)
    assert evicted_first(pool, 10.0) == "b"
    pool2 = KVPool(12, "ttl")
    fill(pool2, ["a", "b", "c"])
    pool2.retain("a", until=8.0, score=1.0, now=5.0)
    assert evicted_first(pool2, 10.0) == "a"  # the hint lapsed: ordinary LRU again


def test_aeg_evicts_released_then_lowest_score() -> None:
    pool = KVPool(16, "aeg")
    fill(pool, ["a", "b", "c", "d"])
    pool.retain("a", 100.0, score=5.0, now=4.0)
    pool.retain("b", 100.0, score=0.1, now=4.0)
    pool.retain("c", 100.0, score=2.0, now=4.0)
    pool.release("d", 4.0)
    assert evicted_first(pool, 10.0) == "d"
    assert pool.admit("new2", 0, 4, 11.0) is not None
    assert pool.cached("b") == 0 and pool.cached("a") == 4 and pool.cached("c") == 4


def test_aeg_applies_a_hints_steps_then_its_lapse() -> None:
    def pool_at_3() -> KVPool:
        pool = KVPool(12, "aeg")
        fill(pool, ["a", "b", "c"])
        pool.retain("a", 20.0, score=0.1, now=3.0, steps=((6.0, 3.0), (9.0, 0.5)))
        pool.retain("b", 20.0, score=1.0, now=3.0)
        pool.retain("c", 20.0, score=2.0, now=3.0)
        return pool

    assert evicted_first(pool_at_3(), 5.0) == "a"  # 0.1 < 1 < 2
    assert evicted_first(pool_at_3(), 7.0) == "b"  # a from 6: 3
    assert evicted_first(pool_at_3(), 10.0) == "a"  # a from 9: 0.5
    lapsed = pool_at_3()
    lapsed.retain("b", 30.0, score=1.0, now=3.0)
    lapsed.retain("c", 30.0, score=2.0, now=3.0)
    assert evicted_first(lapsed, 21.0) == "a"  # lapsed at 20: before every held one


def test_aeg_steps_due_while_a_context_is_in_use_apply_when_its_call_ends() -> None:
    pool = KVPool(12, "aeg")
    fill(pool, ["a", "b", "c"])
    pool.retain("a", 20.0, score=0.1, now=3.0, steps=((6.0, 3.0),))
    pool.retain("b", 20.0, score=1.0, now=3.0)
    pool.retain("c", 20.0, score=2.0, now=3.0)
    assert pool.admit("a", 4, 4, 4.0) is not None  # back: a's call runs past 6
    assert pool.admit("x", 0, 4, 6.5) is not None  # takes b (1 < 2)
    pool.finish("a", 7.0)  # no new hint: the step at 6 holds, a's score is 3
    pool.finish("x", 7.5)
    pool.retain("x", 20.0, score=5.0, now=7.5)
    assert pool.admit("y", 0, 4, 8.0) is not None
    assert [pool.cached(k) for k in "abcx"] == [4, 0, 0, 4]  # c (2) before a (3)
    assert pool.admit("z", 0, 4, 9.0) is not None
    assert [pool.cached(k) for k in "ax"] == [0, 4]


def test_belady_evicts_furthest_next_use() -> None:
    next_use = {"a": 50.0, "b": 20.0, "c": math.inf}
    pool = KVPool(12, "belady", lambda k, now: next_use.get(k, now))
    fill(pool, ["a", "b", "c"])
    assert evicted_first(pool, 10.0) == "c"
    assert pool.admit("new2", 0, 4, 11.0) is not None
    assert pool.cached("a") == 0 and pool.cached("b") == 4


def test_waiting_call_keeps_its_context() -> None:
    pool = KVPool(12, "lru")
    fill(pool, ["a", "b", "c"])
    pool.want("a", 9.0)
    assert evicted_first(pool, 10.0) == "b"


def test_hints_lapsing_at_the_same_time_all_lapse() -> None:
    pool = KVPool(16, "ttl")
    fill(pool, ["a", "b", "c", "d"])
    pool.retain("b", 8.0, score=1.0, now=4.0)  # two hints lapse at 8.0, the later key first
    pool.retain("a", 8.0, score=1.0, now=4.0)
    pool.retain("c", 100.0, score=1.0, now=4.0)
    assert pool.admit("p", 0, 4, 5.0) is not None  # a, b and c ranked under their pins
    assert pool.cached("d") == 0
    pool.finish("p", 9.0)
    assert pool.admit("q", 0, 4, 10.0) is not None
    assert pool.admit("r", 0, 4, 11.0) is not None
    # Both pins lapsed at 8: a and b go first (least recent), before p (used at 9) and c.
    assert [pool.cached(k) for k in "abcp"] == [0, 0, 4, 4]


def test_bad_policy() -> None:
    with pytest.raises(ValueError, match="unknown eviction policy"):
        KVPool(10, "random")
    with pytest.raises(ValueError, match="oracle"):
        KVPool(10, "belady")


def _random_ops(pool: KVPool, seed: int) -> list[tuple[str, ...]]:
    """Drive a pool through calls, hints and waits of many workflows; what it holds
    after every admission is the trace."""
    import random

    rng = random.Random(seed)
    running: set[str] = set()
    trace: list[tuple[str, ...]] = []
    now = 0.0
    for _ in range(3000):
        now += rng.choice((0.0, 0.25, 1.0))  # equal times too: ties in rank
        key = f"wf{rng.randrange(40)}"
        op = rng.random()
        if key in running:
            pool.finish(key, now, shared_key="sys")
            running.discard(key)
            if op < 0.6:
                until = now + rng.choice((0.5, 2.0, 8.0))
                steps = tuple(
                    (now + d, rng.choice((0.05, 0.3, 0.7)))
                    for d in (0.25, 1.0)
                    if now + d < until and rng.random() < 0.5
                )
                pool.retain(key, until, rng.choice((0.1, 0.5)), now, steps)
            elif op < 0.7:
                pool.release(key, now)
        elif op < 0.15:
            pool.want(key, now)
        elif op < 0.2:
            pool.unwant(key, now)
        else:
            keep = pool.cached(key)
            adm = pool.admit(key, keep, keep + rng.randrange(1, 12), now, "sys", 3)
            if adm is not None:
                running.add(key)
            trace.append(tuple(sorted(f"{k}:{e.blocks}" for k, e in pool.entries.items())))
    return trace


@pytest.mark.parametrize("policy", ["lru", "ttl", "aeg"])
@pytest.mark.parametrize("capacity", [60, 200])
def test_deferred_ranking_evicts_as_pushing_every_change(policy: str, capacity: int) -> None:
    """A changed entry is pushed once, before the next eviction, instead of at every
    change, and only a slot whose hint may have lapsed is ranked again on top: the
    same contexts are evicted in the same order (equal ranks included), and stale
    slots are swept out of the heap."""
    deferred, eager = KVPool(capacity, policy), KVPool(capacity, policy)
    eager._deferred = False  # the plain order: every change pushed at once,
    eager._lapsing = None  # and every slot ranked again when it reaches the top
    assert _random_ops(deferred, 7) == _random_ops(eager, 7)
    assert deferred.evicted_blocks == eager.evicted_blocks > 0
    assert len(deferred._heap) <= 2 * len(deferred.entries) + 64
