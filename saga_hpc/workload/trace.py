"""JSONL traces: one task (workflow) per line; schema in docs/workloads.md.

{"task_id": "t1", "tenant": "physics", "task_class": "swe-bench", "arrival_s": 0.0,
 "system_tokens": 3000,
 "steps": [{"keep_tokens": 0, "new_tokens": 600, "output_tokens": 20,
            "tool": "bash", "tool_s": 0.5},
           ...]}
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from saga_hpc.workload.model import Step, Task


class TraceError(ValueError):
    """A trace line that does not follow the schema; the message names the line."""


def write_trace(tasks: Iterable[Task], path: Path) -> int:
    n = 0
    with path.open("w") as f:
        for task in tasks:
            f.write(json.dumps(asdict(task), separators=(",", ":")) + "\n")
            n += 1
    return n


def read_trace(path: Path) -> list[Task]:
    tasks = []
    with path.open() as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                tasks.append(_task(line, n))
    return sorted(tasks, key=lambda t: t.arrival_s)


def _task(line: str, n: int) -> Task:
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise TraceError(f"line {n}: not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise TraceError(f"line {n}: expected an object")
    try:
        steps = tuple(_step(s, n, i) for i, s in enumerate(doc["steps"]))
        task = Task(
            task_id=_typed(doc, "task_id", str, n),
            tenant=_typed(doc, "tenant", str, n),
            task_class=str(doc.get("task_class", "default")),
            arrival_s=float(_typed(doc, "arrival_s", (int, float), n)),
            system_tokens=int(doc.get("system_tokens", 0)),
            steps=steps,
        )
    except KeyError as exc:
        raise TraceError(f"line {n}: missing field {exc}") from exc
    if not steps:
        raise TraceError(f"line {n}: a task needs at least one step")
    if task.arrival_s < 0 or task.system_tokens < 0:
        raise TraceError(f"line {n}: arrival_s and system_tokens must not be negative")
    return task


def _step(s: Any, n: int, i: int) -> Step:
    if not isinstance(s, dict):
        raise TraceError(f"line {n}: step {i} is not an object")
    step = Step(
        keep_tokens=int(_typed(s, "keep_tokens", int, n)),
        new_tokens=int(_typed(s, "new_tokens", int, n)),
        output_tokens=int(_typed(s, "output_tokens", int, n)),
        tool=s.get("tool"),
        tool_s=float(_typed(s, "tool_s", (int, float), n)),
    )
    if min(step.keep_tokens, step.new_tokens, step.output_tokens) < 0 or step.tool_s < 0:
        raise TraceError(f"line {n}: step {i} has a negative size or time")
    if step.tool is not None and not isinstance(step.tool, str):
        raise TraceError(f"line {n}: step {i}: tool must be a string or null")
    return step


def _typed(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], n: int) -> Any:
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TraceError(f"line {n}: {key} has the wrong type ({type(value).__name__})")
    return value
