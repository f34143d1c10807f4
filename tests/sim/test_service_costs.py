"""What the simulator models of the service around the engines: per-call
overhead outside the engine, tenants that never share cached prefixes, and
the prefix a router sees of a workflow's first call."""

from __future__ import annotations

from dataclasses import replace

import pytest

from saga_hpc.sim.engine import Simulation
from saga_hpc.sim.profile import GpuProfile
from saga_hpc.workload.model import Step, Task

PROFILE = GpuProfile("test", 16, 100_000, 10_000.0, 0.01, 0.01, 8)


def task(task_id: str, tenant: str, arrival: float, calls: int = 3) -> Task:
    steps = tuple(
        Step(1 << 30, 200, 10, None if i == calls - 1 else "bash", 0.0 if i == calls - 1 else 1.0)
        for i in range(calls)
    )
    return Task(task_id, tenant, "swe-bench", arrival, 1600, steps)


def test_call_overhead_delays_each_next_call_and_the_tct() -> None:
    one = [task("t", "physics", 0.0)]
    base = Simulation(one, "vllm", 1, PROFILE).run()
    slow = Simulation(one, "vllm", 1, replace(PROFILE, call_overhead_s=0.25)).run()
    # Three calls, each answered a quarter second later as the agent sees it.
    assert slow.tct_s["t"] == pytest.approx(base.tct_s["t"] + 3 * 0.25)
    assert [c.arrived for c in slow.calls] == pytest.approx(
        [c.arrived + i * 0.25 for i, c in enumerate(base.calls)]
    )


@pytest.mark.parametrize(("tenant", "system_hit"), [("physics", 1600), ("chem", 0)])
def test_a_system_prompt_is_shared_within_a_tenant_only(tenant: str, system_hit: int) -> None:
    # The second task starts after the first ended, on the same GPU: its system
    # prompt is cached for the first task's tenant, never for another (cache_salt).
    ts = [task("a", "physics", 0.0, calls=1), task("b", tenant, 10.0, calls=1)]
    r = Simulation(ts, "vllm", 1, PROFILE).run()
    second = next(c for c in r.calls if c.task_id == "b")
    assert second.hit == system_hit


def test_cache_aware_routing_sends_a_workflows_second_call_where_its_first_ran() -> None:
    """The first call's prompt holds the workflow's own context (its task statement),
    so the router's model of the worker that ran it has it: the second call follows,
    as sgl-router's prefix match on the first prompt's text would. Both GPUs hold the
    shared system prompt, and g0 is busier (c's long call) when a comes back."""
    from saga_hpc.core.routing import Router, WorkerView
    from saga_hpc.core.types import CallSpec

    def one(task_id: str, arrival: float, outs: tuple[int, ...]) -> Task:
        steps = tuple(
            Step(1 << 30, 200, out, None if i == len(outs) - 1 else "bash", 0.0 if i else 1.0)
            for i, out in enumerate(outs)
        )
        return Task(task_id, "physics", "swe-bench", arrival, 1600, steps)

    tasks = [one("a", 0.0, (10, 10)), one("b", 0.01, (10,)), one("c", 0.02, (500,))]
    sim = Simulation(tasks, "sglang", 2, PROFILE)
    routes: list[tuple[str, str, str]] = []

    class Spy(Router):
        def __init__(self, inner: Router) -> None:
            self.inner = inner

        def route(
            self, spec: CallSpec, previous: str | None, workers: list[WorkerView]
        ) -> tuple[str, str]:
            worker, reason = self.inner.route(spec, previous, workers)
            routes.append((spec.call_id, worker, reason))
            return worker, reason

        def on_dispatch(self, spec: CallSpec, worker_id: str) -> None:
            self.inner.on_dispatch(spec, worker_id)

    inner = sim.sched.router
    shared = sim._shared_prefix(tasks[0])[1]
    for gpu in ("g0", "g1"):
        seed = CallSpec("seed", "seed", "physics", 1600, 1, 0.0, "swe-bench", (shared,))
        inner.on_dispatch(seed, gpu)
    sim.sched.router = Spy(inner)
    sim.run()
    assert routes == [
        ("a#0", "g0", "longest cached prefix: 1 blocks"),
        ("b#0", "g1", "longest cached prefix: 1 blocks"),
        ("c#0", "g0", "longest cached prefix: 1 blocks"),
        ("a#1", "g0", "longest cached prefix: 2 blocks"),
    ]
