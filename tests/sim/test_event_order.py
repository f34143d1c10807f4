"""The simulator's event queue: events due at the same time leave in the order
they were pushed, as (time, sequence number) ordered them."""

from __future__ import annotations

from saga_hpc.sim.engine import Simulation
from saga_hpc.sim.profile import GpuProfile
from saga_hpc.workload.model import Step, Task

PROFILE = GpuProfile("test", 16, 100_000, 10_000.0, 0.01, 0.01, 8)


def test_calls_due_at_the_same_time_are_served_in_the_order_they_were_queued() -> None:
    # Three like tasks arrive together on three idle GPUs: their calls end, and
    # their next calls arrive after the same tool, at the same instants.
    steps = (Step(0, 400, 10, "pytest", 2.0), Step(410, 50, 10, None, 0.0))
    tasks = [Task(f"t{i}", "physics", "swe-bench", 0.0, 1600, steps) for i in (2, 0, 1)]
    r = Simulation(tasks, "vllm", 3, PROFILE).run()
    assert [c.task_id for c in r.calls] == ["t2", "t0", "t1"] * 2
    first, second = {c.finished for c in r.calls[:3]}, {c.finished for c in r.calls[3:]}
    assert len(first) == len(second) == 1 and first != second
    assert r.events == 3 + 3 + 3 + 3 + int(max(second)) + 1  # arrivals, ends, ticks from 0 s
