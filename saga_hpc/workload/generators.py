"""Seeded generators with the shapes of public agent traces (docs/workloads.md).

- `swe-bench`: coding agents. Turns per task: lognormal, median 29, p90 ~58,
  capped at 120. First prompt ~600 tokens over a 2-4k system prompt shared by
  every task; the context only grows (append-only), by a median ~260 tokens per
  turn (p90 ~2k: tool output). Output median ~20 tokens, p90 ~100. Tool time is
  bimodal: half instant (0-1 ms), most of the rest 0.4-0.6 s, and 3% test runs
  of 10-60 s.
- `webarena`: browser agents. 10-30 steps; each step's page observation
  (2-8k tokens) *replaces* the previous one, so only the system prompt and the
  action history (~100 tokens a step) are reused; browser tool time 1-5 s.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from saga_hpc.nogc import collector_paused
from saga_hpc.workload.model import Step, Task

CODING_TOOLS = ("bash", "str_replace_editor", "find", "grep", "view")
TEST_TOOLS = ("pytest", "run_tests")
BROWSER_TOOLS = ("click", "type", "goto", "scroll")


# Agents truncate a long tool output before it enters the context (SWE-agent
# cuts observations; a 500k-token log would not fit a model anyway), and a task
# that outgrows the model's context window ends there (SWE-agent's
# "exit_context"). Without these caps the lognormal tail yields a prompt larger
# than a GPU's whole KV pool once in ~10^6 turns.
MAX_OBSERVATION_TOKENS = 16_000
MAX_CONTEXT_TOKENS = 128_000  # Llama-3.1-8B-class context window


def _lognormal_params(median: float, p90: float) -> tuple[float, float]:
    """(mu, sigma) of the normal whose exponential has this median and p90."""
    return math.log(median), math.log(p90 / median) / 1.2816


_TURNS = _lognormal_params(29, 58)
_NEW_TOKENS = _lognormal_params(260, 2000)
_OUT_TOKENS = _lognormal_params(20, 100)
_WEB_OUT_TOKENS = _lognormal_params(40, 120)


def _lognormal(random: Callable[[], float], params: tuple[float, float]) -> float:
    """`Random.lognormvariate(mu, sigma)` for `random = rng.random`: CPython's own
    steps (Kinderman-Monahan ratio of uniforms in `normalvariate`) inlined, so the
    same draws give the same numbers with one call instead of three; a trace of
    millions of turns spends most of its time here."""
    mu, sigma = params
    while True:
        u1 = random()
        u2 = 1.0 - random()
        z = _NV_MAGICCONST * (u1 - 0.5) / u2
        if z * z / 4.0 <= -_log(u2):
            return _exp(mu + z * sigma)


_NV_MAGICCONST = 4 * math.exp(-0.5) / math.sqrt(2.0)  # random.NV_MAGICCONST
_log, _exp = math.log, math.exp


def _choice(getrandbits: Callable[[int], int], seq: Sequence[str]) -> str:
    """`Random.choice(seq)` for `getrandbits = rng.getrandbits`, CPython's steps
    (`_randbelow_with_getrandbits`) inlined as `_lognormal` is."""
    n = len(seq)
    k = n.bit_length()
    r = getrandbits(k)
    while r >= n:
        r = getrandbits(k)
    return seq[r]


def swe_bench_task(
    rng: random.Random, task_id: str, tenant: str, arrival_s: float, system_tokens: int
) -> Task:
    random, bits = rng.random, rng.getrandbits
    turns = max(2, min(120, round(_lognormal(random, _TURNS))))
    steps: list[Step] = []
    new_mu, new_sigma = _NEW_TOKENS
    out_mu, out_sigma = _OUT_TOKENS
    magic, log, exp = _NV_MAGICCONST, _log, _exp
    context, fits = system_tokens, turns  # steps whose context fits the model
    # Two million turns an hour on 64 GPUs: `_lognormal` is written out for the
    # two draws of a turn, and rng.uniform(a, b) as a + (b - a) * rng.random().
    for t in range(turns):
        last = t == turns - 1
        if t == 0:
            new = 600
        else:
            while True:
                u1 = random()
                u2 = 1.0 - random()
                z = magic * (u1 - 0.5) / u2
                if z * z / 4.0 <= -log(u2):
                    break
            new = round(exp(new_mu + z * new_sigma))  # max(8, min(new, MAX_OBSERVATION_TOKENS))
            new = 8 if new < 8 else MAX_OBSERVATION_TOKENS if new > MAX_OBSERVATION_TOKENS else new
        while True:
            u1 = random()
            u2 = 1.0 - random()
            z = magic * (u1 - 0.5) / u2
            if z * z / 4.0 <= -log(u2):
                break
        out = round(exp(out_mu + z * out_sigma))  # max(1, min(1000, out))
        out = 1 if out < 1 else 1000 if out > 1000 else out
        u = random()
        if last:
            tool, tool_s = None, 0.0
        elif u < 0.03:
            tool, tool_s = _choice(bits, TEST_TOOLS), 10 + (60 - 10) * random()
        elif u < 0.50:
            tool, tool_s = _choice(bits, CODING_TOOLS), 0.4 + (0.6 - 0.4) * random()
        else:
            tool, tool_s = _choice(bits, CODING_TOOLS), 0.0 + (0.001 - 0.0) * random()
        steps.append(Step(1 << 30, new, out, tool, tool_s))
        context += new + out
        if context > MAX_CONTEXT_TOKENS and fits == turns and t > 0:
            fits = t  # the task ends with the step before: see _fit_context
    return Task(task_id, tenant, "swe-bench", arrival_s, system_tokens, _fit_context(steps, fits))


def _fit_context(steps: list[Step], fits: int) -> tuple[Step, ...]:
    """The steps up to the last whose context fits the model (the task ends there,
    its step `fits - 1` the last: no tool after it), counted while drawing every
    turn, so later tasks of the seed stay the same."""
    if fits == len(steps):
        return tuple(steps)
    end = steps[fits - 1]
    return (*steps[: fits - 1], Step(end.keep_tokens, end.new_tokens, end.output_tokens, None, 0.0))


def webarena_task(
    rng: random.Random, task_id: str, tenant: str, arrival_s: float, system_tokens: int
) -> Task:
    turns = rng.randint(10, 30)
    steps = []
    history = 0
    for t in range(turns):
        last = t == turns - 1
        observation = rng.randint(2000, 8000)
        out = max(5, round(_lognormal(rng.random, _WEB_OUT_TOKENS)))
        # Reused: the system prompt and the action history; the old page is dropped.
        steps.append(
            Step(
                keep_tokens=history,
                new_tokens=observation + 50,
                output_tokens=out,
                tool=None if last else rng.choice(BROWSER_TOOLS),
                tool_s=0.0 if last else rng.uniform(1, 5),
            )
        )
        history += 50 + out
    return Task(task_id, tenant, "webarena", arrival_s, system_tokens, tuple(steps))


GENERATORS: dict[str, tuple[Callable[[random.Random, str, str, float, int], Task], int]] = {
    "swe-bench": (swe_bench_task, 3000),
    "webarena": (webarena_task, 1500),
}


# A burst is one Slurm job starting a batch of agents (a job array, or an
# evaluation harness with N parallel workers): they start within a scheduling
# cycle of each other, this far apart on average.
BURST_GAP_S = 0.1


def generate(
    workload: str,
    *,
    rate_per_s: float,
    duration_s: float,
    seed: int,
    tenants: Sequence[tuple[str, float]] = (("default", 1.0),),
    burst: float = 1.0,
) -> list[Task]:
    """Task arrivals at a mean `rate_per_s` for `duration_s`; tenants drawn by weight.

    `burst` is the mean number of tasks one job starts at once: 1 gives Poisson
    arrivals; above 1, jobs arrive as a Poisson process at `rate_per_s / burst`,
    each of one tenant and of a geometric number of tasks (mean `burst`) that
    start `BURST_GAP_S` apart on average. The mean load is the same; its
    variance is not, which is what a shared cluster sees.
    """
    if workload not in GENERATORS:
        raise ValueError(
            f"unknown workload {workload!r}; choose one of {', '.join(sorted(GENERATORS))}"
        )
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    if not burst >= 1:
        raise ValueError("burst (mean tasks per job) must be at least 1")
    make, system_tokens = GENERATORS[workload]
    rng = random.Random(f"{workload}:{seed}")
    names = [t for t, _ in tenants]
    weights = [w for _, w in tenants]
    tasks: list[Task] = []
    t, i = 0.0, 0
    with collector_paused():  # millions of steps, no cycles (saga_hpc.nogc)
        while True:
            t += rng.expovariate(rate_per_s / burst)
            if t >= duration_s:
                return sorted(tasks, key=lambda task: task.arrival_s)
            tenant = rng.choices(names, weights)[0]
            start = t
            for k in range(_burst_size(rng, burst)):
                if k:
                    start += rng.expovariate(1 / BURST_GAP_S)
                if start >= duration_s:
                    break
                tasks.append(make(rng, f"{workload}-{seed}-{i}", tenant, start, system_tokens))
                i += 1


def _burst_size(rng: random.Random, mean: float) -> int:
    """Geometric on 1, 2, ... with the given mean (1 draws nothing: Poisson stays as it was)."""
    if mean == 1:
        return 1
    return 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - 1.0 / mean))
