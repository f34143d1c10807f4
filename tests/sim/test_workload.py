"""Workload generators and JSONL traces."""

from __future__ import annotations

import itertools
import json
import random
import statistics
from pathlib import Path

import pytest

from saga_hpc.workload.generators import generate
from saga_hpc.workload.model import Task
from saga_hpc.workload.trace import TraceError, read_trace, write_trace


def test_generators_are_deterministic_per_seed() -> None:
    a = generate("swe-bench", rate_per_s=1, duration_s=100, seed=3)
    b = generate("swe-bench", rate_per_s=1, duration_s=100, seed=3)
    c = generate("swe-bench", rate_per_s=1, duration_s=100, seed=4)
    assert a == b and a != c


def test_swe_bench_shape() -> None:
    tasks = generate("swe-bench", rate_per_s=5, duration_s=200, seed=0)
    turns = [len(t.steps) for t in tasks]
    assert 22 <= statistics.median(turns) <= 36 and max(turns) <= 120
    growth = [s.new_tokens for t in tasks for s in t.steps[1:]]
    assert 180 <= statistics.median(growth) <= 360
    tools = [s.tool_s for t in tasks for s in t.steps[:-1]]
    assert 0.015 <= sum(x > 10 for x in tools) / len(tools) <= 0.05
    assert all(t.steps[-1].tool is None for t in tasks)
    prompts = tasks[0].prompt_tokens()
    assert prompts == sorted(prompts)  # append-only context


def test_webarena_replaces_observations() -> None:
    (task, *_) = generate("webarena", rate_per_s=1, duration_s=50, seed=0)
    assert 10 <= len(task.steps) <= 30
    prompts = task.prompt_tokens()
    assert max(prompts) < task.system_tokens + 10_000  # observations do not pile up


def test_tenant_mix_follows_weights() -> None:
    tasks = generate(
        "webarena", rate_per_s=10, duration_s=200, seed=0, tenants=(("a", 3.0), ("b", 1.0))
    )
    share = sum(t.tenant == "a" for t in tasks) / len(tasks)
    assert 0.7 <= share <= 0.8


def test_trace_round_trip(tmp_path: Path) -> None:
    tasks = generate("swe-bench", rate_per_s=1, duration_s=30, seed=1)
    path = tmp_path / "trace.jsonl"
    assert write_trace(tasks, path) == len(tasks)
    assert read_trace(path) == tasks


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("not json", "line 2: not JSON"),
        ('{"task_id": "x"}', "missing field"),
        ('{"task_id": 5, "tenant": "a", "arrival_s": 0, "steps": [{}]}', "missing field"),
        ('{"task_id": "x", "tenant": "a", "arrival_s": 0, "steps": []}', "at least one step"),
        (
            '{"task_id": "x", "tenant": "a", "arrival_s": -1, "steps": '
            '[{"keep_tokens": 0, "new_tokens": 1, "output_tokens": 1, "tool": null, "tool_s": 0}]}',
            "must not be negative",
        ),
        ('{"task_id": "x", "tenant": "a", "arrival_s": "soon", "steps": []}', "wrong type"),
    ],
)
def test_bad_trace_lines_name_the_line(tmp_path: Path, line: str, needle: str) -> None:
    good = json.dumps(
        {
            "task_id": "ok",
            "tenant": "a",
            "arrival_s": 0,
            "steps": [
                {"keep_tokens": 0, "new_tokens": 5, "output_tokens": 1, "tool": None, "tool_s": 0}
            ],
        }
    )
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(TraceError, match=needle):
        read_trace(path)


def test_swe_bench_contexts_fit_the_model_and_every_task_ends_without_a_tool() -> None:
    from saga_hpc.workload.generators import MAX_CONTEXT_TOKENS, MAX_OBSERVATION_TOKENS

    tasks = generate("swe-bench", rate_per_s=20, duration_s=300, seed=3)
    assert max(max(t.prompt_tokens()) for t in tasks) <= MAX_CONTEXT_TOKENS
    assert max(s.new_tokens for t in tasks for s in t.steps) <= MAX_OBSERVATION_TOKENS
    assert all(t.steps[-1].tool is None and t.steps[-1].tool_s == 0 for t in tasks)


def test_bursty_arrivals_keep_the_mean_rate_and_come_in_one_tenant_jobs() -> None:
    tenants = (("physics", 3.0), ("chem", 1.0))
    poisson = generate("webarena", rate_per_s=2.0, duration_s=3000, seed=4, tenants=tenants)
    assert poisson == generate(
        "webarena", rate_per_s=2.0, duration_s=3000, seed=4, tenants=tenants, burst=1
    )
    bursty = generate(
        "webarena", rate_per_s=2.0, duration_s=3000, seed=4, tenants=tenants, burst=20
    )
    arrivals = [t.arrival_s for t in bursty]
    assert arrivals == sorted(arrivals)
    assert 0.8 < len(bursty) / len(poisson) < 1.2  # same mean load
    # Counts per 10-s window: Poisson's variance equals its mean; jobs of ~20
    # tasks make it ~40x larger.
    assert _dispersion(bursty) > 10 * _dispersion(poisson)
    # Neighbours mostly belong to the same job, hence the same tenant (Poisson
    # neighbours share one by chance: 0.75^2 + 0.25^2 = 0.625).
    same = sum(a.tenant == b.tenant for a, b in itertools.pairwise(bursty)) / (len(bursty) - 1)
    assert same > 0.85


def _dispersion(tasks: list[Task]) -> float:
    counts = [0] * 300
    for t in tasks:
        counts[int(t.arrival_s // 10)] += 1
    return statistics.pvariance(counts) / statistics.mean(counts)


def test_burst_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="burst"):
        generate("swe-bench", rate_per_s=1.0, duration_s=10, seed=0, burst=0.5)


def test_inlined_draws_match_the_random_module() -> None:
    """The generators draw lognormals and choices with CPython's own steps inlined;
    the numbers must be those of `Random.lognormvariate` and `Random.choice`, or
    every trace of a seed would change."""
    from saga_hpc.workload.generators import _choice, _lognormal, _lognormal_params

    ours, theirs = random.Random(5), random.Random(5)
    for median, p90 in ((29, 58), (260, 2000), (20, 100)):
        mu, sigma = _lognormal_params(median, p90)
        for _ in range(2000):
            assert _lognormal(ours.random, (mu, sigma)) == theirs.lognormvariate(mu, sigma)
    for seq in (("a", "b"), ("a", "b", "c", "d", "e"), ("x",)):
        for _ in range(500):
            assert _choice(ours.getrandbits, seq) == theirs.choice(seq)


def test_generating_pauses_the_collector_and_restores_it() -> None:
    """The cyclic collector is off while a trace is built (millions of acyclic steps)
    and as it was afterwards, on or off."""
    import gc

    from saga_hpc.nogc import collector_paused

    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    generate("swe-bench", rate_per_s=1.0, duration_s=5.0, seed=0)
    assert gc.isenabled()
    gc.disable()
    try:
        generate("swe-bench", rate_per_s=1.0, duration_s=5.0, seed=0)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_objects_built_while_paused_skip_the_young_generation() -> None:
    """What was built while the collector was off is moved to the oldest
    generation, so the next young collection does not traverse it all."""
    import gc

    from saga_hpc.nogc import collector_paused

    with collector_paused():
        kept = [[i] for i in range(1000)]
    young = {id(o) for o in gc.get_objects(generation=0)}
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert not any(id(x) in young for x in kept)
    assert all(id(x) in oldest for x in kept)
    assert gc.isenabled()
