"""Chunked prefill in the cost model (`prefill_stalls_decode`): prompts computed
on a GPU lengthen the decodes running there by the prefill time, exactly."""

from __future__ import annotations

from dataclasses import replace

import pytest

from saga_hpc.sim.engine import Simulation
from saga_hpc.sim.profile import DEFAULT_PROFILE, GpuProfile, load_profile
from saga_hpc.workload.model import Step, Task

PROFILE = GpuProfile("test", 16, 100_000, 10_000.0, 0.01, 0.01, 8)
SYSTEM = 1600


def one_call(task_id: str, tenant: str, arrival: float, new: int, out: int) -> Task:
    return Task(task_id, tenant, "swe-bench", arrival, SYSTEM, (Step(0, new, out, None, 0.0),))


def ends(profile: GpuProfile, tasks: list[Task]) -> dict[str, tuple[float, float]]:
    r = Simulation(tasks, "vllm", 1, profile).run()
    return {c.task_id: (c.finished, c.service_s) for c in r.calls}


def test_a_prompt_computed_during_a_decode_delays_it_by_the_prefill_time() -> None:
    # a decodes 1,000 tokens (10 s); b's 20,000-token prompt is computed meanwhile.
    tasks = [one_call("a", "physics", 0.0, 400, 1000), one_call("b", "chem", 1.0, 20_000, 1)]
    base = ends(PROFILE, tasks)
    chunked = ends(replace(PROFILE, prefill_stalls_decode=True), tasks)
    b_prefill = (SYSTEM + 20_000) / PROFILE.prefill_tokens_per_s
    assert chunked["a"][0] == pytest.approx(base["a"][0] + b_prefill)
    assert chunked["a"][1] == pytest.approx(base["a"][1] + b_prefill)
    assert chunked["b"] == pytest.approx(base["b"])  # prefill itself is not slowed


def test_only_prefill_after_a_calls_first_token_delays_it() -> None:
    # b's prompt is queued first: a's first token waits for it (as before), but
    # its decode is not delayed by it. a's prompt is computed while b decodes its
    # one token, so b ends a's prefill time later.
    tasks = [one_call("b", "chem", 0.0, 20_000, 1), one_call("a", "physics", 0.1, 400, 1000)]
    base = ends(PROFILE, tasks)
    chunked = ends(replace(PROFILE, prefill_stalls_decode=True), tasks)
    a_prefill = (SYSTEM + 400) / PROFILE.prefill_tokens_per_s
    assert chunked["a"] == pytest.approx(base["a"])
    assert chunked["b"][0] == pytest.approx(base["b"][0] + a_prefill)


def test_the_default_profile_is_the_chunked_one() -> None:
    assert DEFAULT_PROFILE == "h100-llama3-8b-chunked"
    assert load_profile(DEFAULT_PROFILE).prefill_stalls_decode


def test_the_chunked_profile_differs_from_its_base_in_that_alone() -> None:
    base, chunked = load_profile("h100-llama3-8b"), load_profile("h100-llama3-8b-chunked")
    assert not base.prefill_stalls_decode and chunked.prefill_stalls_decode
    assert (
        replace(chunked, name=base.name, description=base.description, prefill_stalls_decode=False)
        == base
    )
