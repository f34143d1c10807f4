"""The seeded agent trace, cut to what real CPU engines serve in minutes, and its token ids.

`saga-hpc bench --real` and its simulator replay (`--fit-profile`) run the very
same `Task` list: the workload generator's first `tasks` tasks, with token
counts and tool times scaled down, turns capped, and each task cut where its
context would outgrow the model. Prompts are token ids, not text, so every call
has exactly the prompt length the trace says and a returning call's prompt
starts with its previous context token for token (what prefix caching needs).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from saga_hpc.workload.generators import generate
from saga_hpc.workload.model import Step, Task

FIRST_TOKEN_ID = 3  # ids 0-2 are <s>, </s>, <pad> in the generated model


@dataclass(frozen=True)
class TraceScale:
    tasks: int
    """Tasks replayed: the generator's first `tasks`, in arrival order."""
    rate_per_s: float = 4.0
    """Task arrivals per second over the whole service (Poisson, as generated):
    a burst, so that more contexts are live than the workers' pools hold."""
    token_scale: float = 0.5
    """Prompt token counts (system prompt, appended tokens) are multiplied by this."""
    tool_scale: float = 0.5
    """Tool latencies are multiplied by this (a 30 s test run becomes 15 s)."""
    max_turns: int = 8
    """Calls per task at most."""
    max_output: int = 64
    """Output tokens per call at most (decode dominates CPU time otherwise)."""
    max_model_len: int = 4096
    """A task ends before a call whose prompt + output would not fit."""


def scaled_trace(
    workload: str, seed: int, tenants: tuple[tuple[str, float], ...], scale: TraceScale
) -> list[Task]:
    if scale.tasks < 1 or scale.rate_per_s <= 0:
        raise ValueError("tasks and rate must be positive")
    # Generate enough arrivals, then keep the first ones: the same seed gives the
    # same tasks whatever `tasks` is.
    horizon = 3 * scale.tasks / scale.rate_per_s + 60
    tasks = generate(
        workload, rate_per_s=scale.rate_per_s, duration_s=horizon, seed=seed, tenants=tenants
    )[: scale.tasks]
    return [_scale_task(t, scale) for t in tasks]


def _scale_task(task: Task, scale: TraceScale) -> Task:
    system = max(1, round(task.system_tokens * scale.token_scale))
    steps: list[Step] = []
    context = system
    for step in task.steps[: scale.max_turns]:
        new = max(1, round(step.new_tokens * scale.token_scale))
        out = min(step.output_tokens, scale.max_output)
        keep = (
            step.keep_tokens
            if step.keep_tokens >= 1 << 29
            else round(step.keep_tokens * scale.token_scale)
        )
        prompt = min(context, system + keep) + new
        if prompt + out > scale.max_model_len and steps:
            break
        steps.append(
            replace(
                step,
                keep_tokens=keep,
                new_tokens=new,
                output_tokens=out,
                tool_s=step.tool_s * scale.tool_scale,
            )
        )
        context = prompt + out
    last = replace(steps[-1], tool=None, tool_s=0.0)
    return replace(task, system_tokens=system, steps=(*steps[:-1], last))


class TraceTokens:
    """Deterministic token ids for every call of a trace.

    All tasks share one system prompt (as an agent framework's tasks do); within
    a task, call i's prompt is the kept part of call i-1's context (its prompt
    plus a stand-in for its output) followed by new tokens. The stand-in output
    is not what the engine generated, so the previous call's output blocks are
    never a cache hit: the same for every system."""

    def __init__(self, vocab_size: int, seed: int) -> None:
        self.vocab_size = vocab_size
        self.seed = seed

    def _ids(self, rng: random.Random, n: int) -> list[int]:
        return [rng.randrange(FIRST_TOKEN_ID, self.vocab_size) for _ in range(n)]

    def prompts(self, task: Task) -> list[list[int]]:
        system = self._ids(random.Random(f"system:{self.seed}"), task.system_tokens)
        rng = random.Random(f"{task.task_id}:{self.seed}")
        out: list[list[int]] = []
        context = system
        for step in task.steps:
            kept = min(len(context), task.system_tokens + step.keep_tokens)
            prompt = context[:kept] + self._ids(rng, step.new_tokens)
            out.append(prompt)
            context = prompt + self._ids(rng, step.output_tokens)
        return out


def trace_summary(tasks: list[Task]) -> dict[str, Any]:
    prompts = [p for t in tasks for p in t.prompt_tokens()]
    return {
        "tasks": len(tasks),
        "calls": len(prompts),
        "prompt_tokens_mean": sum(prompts) / len(prompts),
        "prompt_tokens_max": max(prompts),
        "tool_s_total": sum(s.tool_s for t in tasks for s in t.steps),
        "last_arrival_s": max(t.arrival_s for t in tasks),
    }
