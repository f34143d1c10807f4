"""The trace `bench --real` replays: scaled, cut to the model, token ids with exact prefixes."""

from __future__ import annotations

import itertools

from saga_hpc.bench.real_trace import FIRST_TOKEN_ID, TraceScale, TraceTokens, scaled_trace
from saga_hpc.workload.generators import generate

TENANTS = (("physics", 3.0), ("chem", 1.0))


def test_more_tasks_extend_the_same_trace() -> None:
    few = scaled_trace("swe-bench", 3, TENANTS, TraceScale(tasks=4))
    more = scaled_trace("swe-bench", 3, TENANTS, TraceScale(tasks=9))
    assert len(few) == 4 and len(more) == 9
    assert more[:4] == few


def test_scaling_cuts_tokens_tools_turns_and_keeps_every_call_inside_the_model() -> None:
    scale = TraceScale(tasks=10, token_scale=0.5, tool_scale=0.1, max_turns=6, max_model_len=2500)
    tasks = scaled_trace("swe-bench", 0, TENANTS, scale)
    horizon = 3 * 10 / scale.rate_per_s + 60
    raw = generate(
        "swe-bench", rate_per_s=scale.rate_per_s, duration_s=horizon, seed=0, tenants=TENANTS
    )
    for task, orig in zip(tasks, raw, strict=False):
        assert task.task_id == orig.task_id and task.arrival_s == orig.arrival_s
        assert task.system_tokens == orig.system_tokens // 2
        assert 1 <= len(task.steps) <= 6
        for step, o in zip(task.steps[:-1], orig.steps, strict=False):
            assert step.tool_s == o.tool_s * 0.1
            assert step.new_tokens == max(1, round(o.new_tokens * 0.5))
        assert task.steps[-1].tool is None and task.steps[-1].tool_s == 0.0
        for prompt, step in zip(task.prompt_tokens(), task.steps, strict=True):
            assert prompt + step.output_tokens <= 2500


def test_each_call_starts_with_its_previous_context_and_all_tasks_share_the_system_prompt() -> None:
    tasks = scaled_trace("swe-bench", 1, TENANTS, TraceScale(tasks=3))
    tokens = TraceTokens(vocab_size=368, seed=1)
    per_task = [tokens.prompts(t) for t in tasks]
    for task, prompts in zip(tasks, per_task, strict=True):
        assert [len(p) for p in prompts] == task.prompt_tokens()
        assert all(FIRST_TOKEN_ID <= i < 368 for p in prompts for i in p)
        for before, after in itertools.pairwise(prompts):
            assert after[: len(before)] == before  # append-only coding agent
    system = tasks[0].system_tokens
    assert per_task[0][0][:system] == per_task[1][0][:system] == per_task[2][0][:system]
    assert per_task[0][0][system:] != per_task[1][0][system:]
    assert tokens.prompts(tasks[0]) == per_task[0]  # deterministic


def test_browser_tasks_drop_the_old_page_from_the_prefix() -> None:
    (task,) = scaled_trace("webarena", 0, TENANTS, TraceScale(tasks=1, max_model_len=8192))
    prompts = TraceTokens(368, 0).prompts(task)
    assert len(prompts) >= 2
    first, second = prompts[0], prompts[1]
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    assert task.system_tokens <= shared < len(first)
