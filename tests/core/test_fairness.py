"""Ordering policies: VTC, PLAS and Agent Fair Share, including AFS's bound."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from saga_hpc.core.cost import CostModel
from saga_hpc.core.systems import make_scheduler
from saga_hpc.core.types import CallOutcome, CallSpec, Dispatch


def test_afs_serves_tenants_by_their_weights() -> None:
    s = make_scheduler(
        "saga",
        cost=CostModel(call_overhead_s=1.0, decode_tokens_per_s=1e9, prefill_tokens_per_s=1e9),
    )
    s.update_shares({"a": 3.0, "b": 1.0}, 0.0)
    s.add_worker("w", slots=1, kv_capacity_tokens=1, now=0.0)
    for i in range(40):
        s.submit(CallSpec(f"a{i}", f"A{i}", "a", 10, 1, 0.0), 0.0)
        s.submit(CallSpec(f"b{i}", f"B{i}", "b", 10, 1, 0.0), 0.0)
    served = []
    running = next(iter(s.running_on("w")))
    for t in range(1, 41):
        served.append(running[0])
        decisions = s.complete(CallOutcome(running, "w", float(t), 10, 0, 1, None, True), float(t))
        running = next(d.call_id for d in decisions if isinstance(d, Dispatch))
    assert served.count("a") == 30 and served.count("b") == 10


def test_plas_prefers_the_workflow_with_least_service() -> None:
    s = make_scheduler("autellix")
    s.add_worker("w", slots=1, kv_capacity_tokens=1, now=0.0)
    s.submit(CallSpec("long1", "LONG", "a", 100_000, 1, 0.0), 0.0)
    s.complete(CallOutcome("long1", "w", 1.0, 100_000, 0, 1, "bash", False), 1.0)
    s.submit(CallSpec("blocker", "X", "a", 10, 1, 1.0), 1.0)  # occupies the slot
    s.submit(CallSpec("long2", "LONG", "a", 10, 1, 1.1), 1.1)
    s.submit(CallSpec("short1", "SHORT", "a", 10, 1, 1.2), 1.2)
    decisions = s.complete(CallOutcome("blocker", "w", 2.0, 10, 0, 1, None, True), 2.0)
    assert [d.call_id for d in decisions if isinstance(d, Dispatch)] == ["short1"]


@settings(max_examples=60, deadline=None)
@given(
    weights=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
    costs=st.lists(st.integers(1, 50), min_size=90, max_size=90),
)
def test_afs_deviation_stays_within_its_bound(
    weights: tuple[int, int, int], costs: list[int]
) -> None:
    """While all tenants are backlogged, |S_i/w_i - S_j/w_j| <= C_max (1/w_i + 1/w_j)."""
    cost = CostModel(call_overhead_s=0.0, prefill_tokens_per_s=1.0, decode_tokens_per_s=1e12)
    s = make_scheduler("saga", cost=cost)
    tenants = ["t0", "t1", "t2"]
    w = dict(zip(tenants, map(float, weights), strict=True))
    s.update_shares(w, 0.0)
    s.add_worker("w", slots=1, kv_capacity_tokens=1, now=0.0)
    prompt = {}
    for i, c in enumerate(costs):  # 30 calls per tenant, each its own workflow
        t = tenants[i % 3]
        prompt[f"{t}-{i}"] = c
        s.submit(CallSpec(f"{t}-{i}", f"wf-{t}-{i}", t, c, 1, 0.0), 0.0)
    served = dict.fromkeys(tenants, 0.0)
    left = {t: 30 for t in tenants}
    running = next(iter(s.running_on("w")))
    c_max = float(max(costs))
    now = 0.0
    while running:
        tenant = running.split("-")[0]
        served[tenant] += prompt[running]
        left[tenant] -= 1
        now += 1.0
        decisions = s.complete(
            CallOutcome(running, "w", now, prompt[running], 0, 0, None, True), now
        )
        if all(n > 0 for n in left.values()):
            for i in tenants:
                for j in tenants:
                    dev = abs(served[i] / w[i] - served[j] / w[j])
                    assert dev <= c_max * (1 / w[i] + 1 / w[j]) + 1e-9
        nxt = [d.call_id for d in decisions if isinstance(d, Dispatch)]
        running = nxt[0] if nxt else ""


@settings(max_examples=60, deadline=None)
@given(
    slots=st.integers(1, 4),
    weights=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
    costs=st.lists(st.integers(1, 50), min_size=90, max_size=90),
    picks=st.lists(st.integers(0, 3), min_size=90, max_size=90),
)
def test_afs_bound_with_k_slots_and_any_completion_order(
    slots: int, weights: tuple[int, int, int], costs: list[int], picks: list[int]
) -> None:
    """k calls in flight, finishing in any order: while all tenants have calls
    waiting, |S_i/w_i - S_j/w_j| <= k C_max (1/w_i + 1/w_j) on completed service."""
    cost = CostModel(call_overhead_s=0.0, prefill_tokens_per_s=1.0, decode_tokens_per_s=1e12)
    s = make_scheduler("saga", cost=cost)
    tenants = ["t0", "t1", "t2"]
    w = dict(zip(tenants, map(float, weights), strict=True))
    s.update_shares(w, 0.0)
    s.add_worker("w", slots=slots, kv_capacity_tokens=1, now=0.0)
    size = {}
    for i, c in enumerate(costs):
        t = tenants[i % 3]
        size[f"{t}-{i}"] = c
        s.submit(CallSpec(f"{t}-{i}", f"wf-{t}-{i}", t, c, 1, 0.0), 0.0)
    waiting = dict.fromkeys(tenants, 30)
    for cid in s.running_on("w"):
        waiting[cid.split("-")[0]] -= 1
    served = dict.fromkeys(tenants, 0.0)
    bound = slots * float(max(costs))
    for step, pick in enumerate(picks):
        running = sorted(s.running_on("w"))
        if not running:
            break
        cid = running[pick % len(running)]
        served[cid.split("-")[0]] += size[cid]
        now = float(step + 1)
        out = CallOutcome(cid, "w", now, size[cid], 0, 0, None, True)
        for d in s.complete(out, now):
            if isinstance(d, Dispatch):
                waiting[d.call_id.split("-")[0]] -= 1
        if all(n > 0 for n in waiting.values()):
            for i in tenants:
                for j in tenants:
                    dev = abs(served[i] / w[i] - served[j] / w[j])
                    assert dev <= bound * (1 / w[i] + 1 / w[j]) + 1e-9
