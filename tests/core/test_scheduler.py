"""The scheduling core: exact decisions for small scenarios, per policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest

from saga_hpc.core.cost import CostModel
from saga_hpc.core.ordering import Ordering
from saga_hpc.core.scheduler import Scheduler
from saga_hpc.core.systems import SYSTEMS, make_scheduler
from saga_hpc.core.types import CallOutcome, CallSpec, Dispatch, Release, Retain, WorkerStats


def spec(
    call: str,
    wf: str,
    tenant: str = "a",
    prompt: int = 100,
    at: float = 0.0,
    hashes: tuple[int, ...] = (),
    task_class: str = "default",
) -> CallSpec:
    return CallSpec(call, wf, tenant, prompt, 16, at, task_class, hashes)


def done(
    call: str,
    worker: str,
    at: float,
    tool: str | None = "bash",
    final: bool = False,
    prompt: int = 100,
) -> CallOutcome:
    return CallOutcome(call, worker, at, prompt, 0, 16, None if final else tool, final)


def dispatches(decisions: list[object]) -> list[tuple[str, str]]:
    return [(d.call_id, d.worker_id) for d in decisions if isinstance(d, Dispatch)]


def two_workers(system: str, slots: int = 1, **kw: object) -> Scheduler:
    s = make_scheduler(system, **kw)  # type: ignore[arg-type]
    s.add_worker("w1", slots=slots, kv_capacity_tokens=10_000, now=0.0)
    s.add_worker("w2", slots=slots, kv_capacity_tokens=10_000, now=0.0)
    return s


def test_every_system_is_buildable() -> None:
    for name in SYSTEMS:
        assert make_scheduler(name).system_name == name
    with pytest.raises(ValueError, match="unknown routing policy"):
        make_scheduler("vllm", routing="teleport")


def test_affinity_keeps_a_workflow_on_its_worker() -> None:
    s = two_workers("vllm")
    assert dispatches(s.submit(spec("c1", "A"), 0.0)) == [("c1", "w1")]
    assert dispatches(s.submit(spec("c2", "B"), 0.0)) == [("c2", "w2")]
    s.complete(done("c1", "w1", 1.0), 1.0)
    s.complete(done("c2", "w2", 1.0), 1.0)
    # B returns first; it still goes to w2 although w1 is as free.
    assert dispatches(s.submit(spec("c3", "B"), 2.0)) == [("c3", "w2")]
    assert dispatches(s.submit(spec("c4", "A"), 2.0)) == [("c4", "w1")]


def test_calls_queue_when_slots_are_full_and_run_in_fcfs_order() -> None:
    s = two_workers("vllm")
    s.submit(spec("c1", "A"), 0.0)
    s.submit(spec("c2", "B"), 0.0)
    assert dispatches(s.submit(spec("c3", "A"), 0.1)) == []  # A's worker busy: waits (no stealing)
    assert dispatches(s.submit(spec("c4", "A"), 0.2)) == []
    assert s.queue_length() == 2
    assert dispatches(s.complete(done("c2", "w2", 1.0), 1.0)) == []  # w2 may not take A's calls
    assert dispatches(s.complete(done("c1", "w1", 1.0), 1.0)) == [("c3", "w1")]
    assert s.queue_length() == 1


def test_saga_steals_when_waiting_costs_more_than_recompute() -> None:
    s = two_workers("saga", cost=CostModel(prefill_tokens_per_s=1000.0))
    s.submit(spec("c1", "A"), 0.0)
    s.submit(spec("c2", "B"), 0.0)
    s.complete(done("c2", "w2", 0.5), 0.5)  # B leaves on a tool; w2 idle
    s.mean_service_s = 2.0
    # A's next call would wait ~2 s behind c1; recomputing 100 tokens costs 0.1 s: steal.
    decisions = s.submit(spec("c3", "A", prompt=100), 0.6)
    (d,) = [d for d in decisions if isinstance(d, Dispatch)]
    assert (d.call_id, d.worker_id) == ("c3", "w2")
    assert d.reason.startswith("steal from w1")


def blocked(worker: str, flag: bool = True) -> WorkerStats:
    return WorkerStats(worker, 100, 100, 0, 0, 0, 1, 1 if flag else 0, memory_blocked=flag)


def test_a_memory_blocked_worker_gets_no_call_until_it_unblocks() -> None:
    s = two_workers("vllm", slots=8)
    s.submit(spec("c1", "A"), 0.0)
    assert s.observe(blocked("w1"), 0.1) == []
    # Slots are free, but its engine is out of KV memory: A's call waits at the head.
    assert dispatches(s.submit(spec("c2", "A"), 0.2)) == []
    assert dispatches(s.submit(spec("c3", "B"), 0.2)) == [("c3", "w2")]
    assert dispatches(s.observe(blocked("w1", False), 0.5)) == [("c2", "w1")]


def test_saga_steals_from_a_memory_blocked_worker() -> None:
    s = two_workers("saga", slots=8, cost=CostModel(prefill_tokens_per_s=1000.0))
    s.submit(spec("c1", "A"), 0.0)
    s.observe(blocked("w1"), 0.1)
    s.mean_service_s = 2.0
    # w1 serves one call at a time now, so A's call would wait ~2 s: w2 takes it.
    assert dispatches(s.submit(spec("c2", "A"), 0.2)) == [("c2", "w2")]


def test_saga_does_not_steal_a_long_prefix() -> None:
    s = two_workers("saga", cost=CostModel(prefill_tokens_per_s=1000.0))
    s.submit(spec("c1", "A"), 0.0)
    s.mean_service_s = 2.0
    # 5000 tokens cost 5 s to recompute > 2 s of waiting: stay.
    assert dispatches(s.submit(spec("c3", "A", prompt=5000), 0.1)) == []


def test_ttl_pins_on_tool_call_and_releases_when_done() -> None:
    s = two_workers("continuum", ttl_s=5.0)
    s.submit(spec("c1", "A"), 0.0)
    decisions = s.complete(done("c1", "w1", 1.0, tool="pytest"), 1.0)
    # The hint carries its own expiry: the pool lapses it, the core says nothing more.
    assert [d for d in decisions if isinstance(d, Retain)] == [
        Retain("w1", "A", 6.0, 1.0, "done-c1", "ttl 5s on tool pytest")
    ]
    assert s.tick(10.0) == []
    s.submit(spec("c2", "A"), 11.0)
    final = s.complete(done("c2", "w1", 12.0, final=True), 12.0)
    assert Release("w1", "A", "done-c2", "workflow done") in final


def test_lru_emits_no_hints() -> None:
    s = two_workers("vllm")
    s.submit(spec("c1", "A"), 0.0)
    assert [d for d in s.complete(done("c1", "w1", 1.0), 1.0) if not isinstance(d, Dispatch)] == []


def test_aeg_learns_tool_latency_and_releases_finished_workflows() -> None:
    s = two_workers("saga")
    t = 0.0
    for i in range(6):  # workflow A: pytest takes 3 s each time
        s.submit(spec(f"c{i}", "A"), t)
        decisions = s.complete(done(f"c{i}", "w1", t + 1, tool="pytest"), t + 1)
        t += 4.0
    (hint,) = [d for d in decisions if isinstance(d, Retain)]
    # Learned: mean 3 s; the hint covers the return with a small margin, not the 4 s prior.
    assert 3.0 <= hint.until - (t - 3.0) <= 3.5
    s.submit(spec("last", "A"), t)
    final = s.complete(done("last", "w1", t + 1, final=True), t + 1)
    assert Release("w1", "A", "done-last", "workflow done") in final


def test_aeg_scores_likely_returns_higher() -> None:
    s = two_workers("saga")
    retention = s.retention
    retention.on_abandon("default", "submit_patch")  # type: ignore[attr-defined]
    retention.on_abandon("default", "submit_patch")  # type: ignore[attr-defined]
    s.submit(spec("x1", "X"), 0.0)
    s.submit(spec("y1", "Y"), 0.0)
    hx = [
        d
        for d in s.complete(done("x1", "w1", 1.0, tool="submit_patch"), 1.0)
        if isinstance(d, Retain)
    ]
    hy = [d for d in s.complete(done("y1", "w2", 1.0, tool="bash"), 1.0) if isinstance(d, Retain)]
    assert hx[0].reuse_score < hy[0].reuse_score


def test_remove_worker_requeues_its_calls_elsewhere() -> None:
    s = two_workers("vllm")
    s.submit(spec("c1", "A"), 0.0)
    s.submit(spec("c2", "B"), 0.0)
    s.submit(spec("c3", "A"), 0.1)  # waits for w1
    decisions = s.remove_worker("w1", 1.0)
    assert s.running_on("w2") == {"c2"}
    assert dispatches(decisions) == []  # w2's slot is busy: both of A's calls wait for it
    assert s.queue_length() == 2
    assert dispatches(s.complete(done("c2", "w2", 2.0), 2.0)) == [("c1", "w2")]


def test_fail_frees_the_slot_and_the_queue_place() -> None:
    s = two_workers("vllm")
    s.submit(spec("c1", "A"), 0.0)
    s.submit(spec("c2", "A"), 0.0)
    s.submit(spec("c3", "A"), 0.0)
    assert s.fail("c2", 0.5) == []  # dropped from the queue
    assert dispatches(s.fail("c1", 0.6)) == [("c3", "w1")]
    assert s.queue_length() == 0


def test_calls_wait_for_the_first_worker() -> None:
    s = make_scheduler("saga")
    assert s.submit(spec("c1", "A"), 0.0) == []
    assert dispatches(s.add_worker("w1", slots=2, kv_capacity_tokens=1, now=1.0)) == [("c1", "w1")]


def test_cache_aware_routes_to_the_longest_prefix() -> None:
    s = two_workers("sglang", slots=4)
    s.submit(spec("c1", "A", hashes=(1, 2, 3)), 0.0)
    s.submit(spec("c2", "B", hashes=(7, 8)), 0.0)
    assert dispatches(s.submit(spec("c3", "C", hashes=(7, 8, 9)), 0.0)) == [("c3", "w2")]
    assert dispatches(s.submit(spec("c4", "D", hashes=(1, 2, 5)), 0.0)) == [("c4", "w1")]


def test_story_explains_decisions() -> None:
    s = two_workers("saga")
    s.submit(spec("c1", "A"), 0.0)
    s.complete(done("c1", "w1", 1.0, tool="pytest"), 1.0)
    story = s.story("A")
    assert [e.event for e in story] == ["submit", "done"]
    assert isinstance(story[0].decisions[0], Dispatch)
    assert isinstance(story[1].decisions[0], Retain)


def test_without_story_decisions_are_the_same_but_carry_no_text() -> None:
    """The simulator's mode: same workers, hints and scores; no stimulus ids, and no
    reason that would have to be formatted (a router's constant reason stays)."""

    def run(record: bool) -> list[object]:
        s = two_workers("saga")
        s.record_story = record
        out: list[object] = list(s.submit(spec("c1", "A"), 0.0))
        out += s.complete(done("c1", "w1", 1.0, tool="pytest"), 1.0)
        out += s.submit(spec("c2", "A"), 3.0)
        out += s.complete(done("c2", "w1", 4.0, final=True), 4.0)
        return out

    told, silent = run(True), run(False)
    assert [type(d) for d in silent] == [Dispatch, Retain, Dispatch, Release]
    for a, b in zip(told, silent, strict=True):
        assert a.stimulus_id and a.reason  # type: ignore[attr-defined]
        assert b.stimulus_id == ""  # type: ignore[attr-defined]
        assert replace(a, stimulus_id="", reason=b.reason) == b  # type: ignore[type-var, attr-defined]
    assert silent[1].reason == ""  # type: ignore[attr-defined]
    quiet = two_workers("saga")
    quiet.record_story = False
    quiet.submit(spec("c1", "A"), 0.0)
    assert quiet.story("A") == []


def test_a_workflow_moving_releases_its_blocks_on_the_old_worker() -> None:
    s = two_workers("continuum", routing="round-robin")
    assert dispatches(s.submit(spec("c1", "A"), 0.0)) == [("c1", "w1")]
    s.complete(done("c1", "w1", 1.0), 1.0)
    assert s.submit(spec("c2", "A"), 2.0) == [
        Release("w1", "A", "submit-c2", "moved to w2"),
        Dispatch("c2", "A", "w2", 0, "submit-c2", "round robin"),
    ]


def test_cache_aware_model_is_bounded_by_the_worker_kv_and_drops_tails_first() -> None:
    from saga_hpc.core.routing import CacheAware, WorkerView

    router = CacheAware(block_tokens=16)
    views = [WorkerView("w1", 1, 32, order=1), WorkerView("w2", 1, 32, order=2)]
    for v in views:
        router.add_worker(v)  # 2 blocks each
    router.on_dispatch(spec("c1", "A", hashes=(1, 2, 3)), "w2")
    assert list(router.cached["w2"]) == [2, 1]  # block 3, the tail, went
    assert router.route(spec("c2", "B", hashes=(1, 2, 3, 4)), None, views) == (
        "w2",
        "longest cached prefix: 2 blocks",
    )
    router.forget_worker("w2")
    assert router.holders == {}


def test_cache_aware_balances_as_sgl_router_on_pending_calls_absolute_and_relative() -> None:
    """Load is pending calls per worker (not per slot); imbalanced is max - min > 64
    and max > 1.5 x min (sgl-router's launcher defaults); then the fewest pending."""
    from saga_hpc.core.routing import CacheAware, WorkerView

    router = CacheAware(block_tokens=16)
    w1, w2 = WorkerView("w1", 64, 10_000, order=1), WorkerView("w2", 64, 10_000, order=2)
    views = [w1, w2]
    for v in views:
        router.add_worker(v)
    router.on_dispatch(spec("c0", "A", hashes=(1, 2)), "w1")
    call = spec("c1", "A", hashes=(1, 2))
    cases = [
        (100, 35, ("w2", "load imbalance: fewest pending")),  # gap 65, 100 > 52.5
        (99, 35, ("w1", "longest cached prefix: 2 blocks")),  # gap 64: not above
        (200, 135, ("w1", "longest cached prefix: 2 blocks")),  # gap 65, 200 <= 202.5
        (204, 135, ("w2", "load imbalance: fewest pending")),  # gap 69, 204 > 202.5
        (65, 0, ("w2", "load imbalance: fewest pending")),  # an idle worker: any gap > 64
    ]
    for pending1, pending2, expected in cases:
        w1.waiting, w2.waiting = pending1, pending2
        assert router.route(call, "w1", views) == expected, (pending1, pending2)
    # Slots do not scale the load: 60 pending on a 1-slot worker is still balanced.
    w1.slots, w1.waiting, w2.waiting = 1, 60, 0
    assert router.route(call, "w1", views) == ("w1", "longest cached prefix: 2 blocks")
    # Imbalanced with equal fewest pending: the first registered.
    w3 = WorkerView("w3", 64, 10_000, order=3)
    router.add_worker(w3)
    w1.waiting, w2.waiting, w3.waiting = 80, 10, 10
    assert router.route(call, "w1", [w3, w1, w2]) == ("w2", "load imbalance: fewest pending")


def test_a_call_dispatched_at_submit_still_joins_the_ordering() -> None:
    """An idle worker takes a new call at once (no queue round trip), but the
    ordering sees it join as if it had queued: fair-share lifts depend on it."""
    joined: list[tuple[str, dict[str, int]]] = []

    class Recording(Ordering):
        def on_enqueue(self, spec: CallSpec, backlogged: Mapping[str, int]) -> None:
            joined.append((spec.call_id, dict(backlogged)))

    s = Scheduler(SYSTEMS["vllm"], ordering=Recording())
    s.add_worker("w1", slots=1, kv_capacity_tokens=10_000, now=0.0)
    assert dispatches(s.submit(spec("c1", "A"), 0.0)) == [("c1", "w1")]
    assert dispatches(s.submit(spec("c2", "A"), 0.1)) == []  # w1 busy: queued
    assert dispatches(s.submit(spec("c3", "A"), 0.2)) == []
    assert joined == [("c1", {}), ("c2", {}), ("c3", {"": 1})]
    assert dispatches(s.complete(done("c1", "w1", 1.0), 1.0)) == [("c2", "w1")]
