"""What a workload is: tasks (agent workflows), each a list of steps.

A step is one LLM call followed by a tool (except the last). Prompt sizes are
given as what the call *adds* to a context shared with earlier steps, so
prefix reuse is explicit: `keep_tokens` of the previous context survive into
this call (all of it for append-only coding agents; browser agents replace the
old page observation), then `new_tokens` are appended.
"""

from __future__ import annotations

from dataclasses import dataclass

from saga_hpc.core.types import fast_init


@fast_init  # a trace holds millions of steps
@dataclass(frozen=True, slots=True)
class Step:
    keep_tokens: int  # tokens of the previous call's context (prompt + output) reused as prefix
    new_tokens: int  # tokens appended (tool output, new observation, instruction)
    output_tokens: int
    tool: str | None  # tool run after this call; None on the last step
    tool_s: float  # tool latency in seconds (0 on the last step)


@fast_init
@dataclass(frozen=True, slots=True)
class Task:
    task_id: str
    tenant: str
    task_class: str
    arrival_s: float
    system_tokens: int  # shared system prompt (same for every task of a workload)
    steps: tuple[Step, ...]

    def prompt_tokens(self) -> list[int]:
        """Prompt length of each call."""
        # Once per task of a trace (millions of steps an hour): min() written out.
        system = self.system_tokens
        out: list[int] = []
        append, context = out.append, system
        for step in self.steps:
            reused = system + step.keep_tokens
            prompt = (context if context <= reused else reused) + step.new_tokens
            append(prompt)
            context = prompt + step.output_tokens
        return out
