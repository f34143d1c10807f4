"""A simulated task's state while it runs, as the engine and the GPU model share it."""

from __future__ import annotations

from dataclasses import dataclass, field

from saga_hpc.workload.model import Task

# A call's id is its task's and its index, "task#3": the suffixes made once (an
# int formatted per call costs more than the concatenation).
_CALL_SUFFIX = tuple(f"#{i}" for i in range(1024))


@dataclass(slots=True)
class TaskRun:
    """A task from its first call's arrival to its last call's end, and its
    current call: one object per task, not one per call nor a dict per field.
    A task has one call at a time (the next arrives after the previous one's
    tool), so the call's fields are rewritten as each next call is made."""

    task: Task
    prompts: list[int]  # prompt size of each call
    hashes: tuple[int, int]  # prefix hashes: shared system prompt, own context
    shared_key: str  # the pool key of its tenant and class's shared system prompt
    system_blocks: int  # blocks of the shared system prompt
    left_gpu: int = -1  # GPU it left its context on at its last tool call (-1: none)
    left_blocks: int = 0  # blocks it left cached there
    wanted_on: int = -1  # GPU whose pool keeps its context for its waiting call
    next_arrival: float | None = None  # when its next call arrives (belady's oracle)
    gpus: set[int] = field(default_factory=set)  # GPUs whose pools may hold its context
    # The current call:
    index: int = 0  # its position in the task's steps
    call_id: str = ""
    prompt: int = 0
    out: int = 0
    arrived: float = 0.0
    keep_blocks: int = 0  # own-context blocks reusable from the previous call
    own_blocks: int = 0  # blocks of its own context with its output (prompt + out - system)
    gpu: int = -1
    finishing: bool = False  # what it is due for in the event queue: its call's end, or arrival
    hit: int = 0
    first_token: float = 0.0
    service_s: float = 0.0
    prefill_seen: float = 0.0  # its GPU's prefill seconds counted into its decode so far

    def next_call(self, at: float, block: int) -> None:
        """The current call ended: the task's next one, arriving `at`, is current
        now (what of its own context it may reuse, the blocks it needs)."""
        task = self.task
        system = task.system_tokens
        context = self.prompt + self.out - system  # the ended call's own context
        self.index = index = self.index + 1
        step = task.steps[index]
        keep = step.keep_tokens  # own-context tokens reused: min(keep_tokens, context)
        if context < keep:
            keep = context
        task_id = task.task_id
        self.call_id = task_id + _CALL_SUFFIX[index] if index < 1024 else f"{task_id}#{index}"
        self.prompt = prompt = self.prompts[index]
        self.out = out = step.output_tokens
        self.arrived = at
        self.keep_blocks = keep // block
        self.own_blocks = -(-(prompt - system + out) // block)  # ceil
