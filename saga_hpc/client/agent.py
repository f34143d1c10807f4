"""A scripted agent: replays a task's turns against the service with the
`openai` client, as a real agent would (LLM call, tool, LLM call, ...).

Each call carries the workflow id and the tool the agent runs next, so the
head sees the tool-call boundaries. The tool itself is a sleep of the task's
tool latency; its output is appended to the conversation like a real tool's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from openai import AsyncOpenAI


@dataclass(frozen=True)
class Turn:
    max_tokens: int
    tool: str | None  # tool run after this call; None on the last turn
    tool_seconds: float
    tool_output: str


@dataclass(frozen=True)
class AgentTask:
    workflow_id: str
    account: str
    system_prompt: str
    instruction: str
    turns: tuple[Turn, ...]


@dataclass
class CallResult:
    workflow_id: str
    account: str
    turn: int
    turns: int
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    seconds: float
    worker: str | None


@dataclass
class TaskResult:
    task: AgentTask
    started: float
    finished: float = 0.0
    calls: list[CallResult] = field(default_factory=list)
    error: str | None = None

    @property
    def tct_s(self) -> float:
        return self.finished - self.started


async def run_task(
    client: AsyncOpenAI,
    model: str,
    task: AgentTask,
    on_call: Callable[[CallResult], None] | None = None,
    seed: int = 0,
) -> TaskResult:
    messages: list[dict[str, str]] = [
        {"role": "system", "content": task.system_prompt},
        {"role": "user", "content": task.instruction},
    ]
    result = TaskResult(task=task, started=time.time())
    for i, turn in enumerate(task.turns):
        last = i == len(task.turns) - 1
        headers = {"X-Saga-Workflow": task.workflow_id}
        if last:
            headers["X-Saga-Workflow-End"] = "true"
        elif turn.tool:
            headers["X-Saga-Next-Tool"] = turn.tool
        t0 = time.monotonic()
        raw = await client.chat.completions.with_raw_response.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=turn.max_tokens,
            temperature=0.0,
            seed=seed,
            extra_headers=headers,
            extra_body={"ignore_eos": True},
        )
        resp = raw.parse()
        usage = resp.usage
        cached = 0
        if usage is not None and usage.prompt_tokens_details is not None:
            cached = usage.prompt_tokens_details.cached_tokens or 0
        call = CallResult(
            workflow_id=task.workflow_id,
            account=task.account,
            turn=i + 1,
            turns=len(task.turns),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            cached_tokens=cached,
            output_tokens=usage.completion_tokens if usage else 0,
            seconds=time.monotonic() - t0,
            worker=raw.headers.get("x-saga-worker"),
        )
        result.calls.append(call)
        if on_call is not None:
            on_call(call)
        messages.append({"role": "assistant", "content": resp.choices[0].message.content or ""})
        if not last:
            await asyncio.sleep(turn.tool_seconds)  # the tool runs
            messages.append(
                {"role": "user", "content": f"[{turn.tool} output]\n{turn.tool_output}"}
            )
    result.finished = time.time()
    return result
