"""The vocabulary of the scheduling core: events in, decisions out.

The core does no I/O and reads no clock: every method takes `now` (seconds, any
epoch) from its driver. Two drivers exist: the head (real HTTP calls, ZeroMQ
replies, wall clock) and the simulator (simulated events and clock). Both
call `saga_hpc.core.scheduler.Scheduler` with these types and carry out the
decisions it returns. A decision carries the `stimulus_id` of the event that
caused it, so `Scheduler.story(workflow_id)` can replay why a workflow ran
where it did and what was kept for it (dask-distributed's idea).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import TypeVar

WorkerId = str
CallId = str
WorkflowId = str
Tenant = str  # a Slurm account


_T = TypeVar("_T")


def fast_init(cls: type[_T]) -> type[_T]:
    """Give a frozen slots dataclass an `__init__` that fills each slot through its
    descriptor. The one `dataclass` writes calls `object.__setattr__` per field to
    get past the frozen guard, and takes twice as long; the simulator builds
    millions of these values. Same signature and defaults; still frozen, equal
    and hashable as before."""
    args, setters, body = [], [], []
    defaults: dict[str, object] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.default_factory is not MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: fast_init takes no default_factory")
        if f.default is MISSING:
            args.append(f.name)
        else:
            defaults[f"_default_{f.name}"] = f.default
            args.append(f"{f.name}=_default_{f.name}")
        setters.append(f"_set_{f.name}")
        body.append(f"        _set_{f.name}(self, {f.name})")
    # The setters are the closure of __init__: cell lookups, not global ones.
    source = (
        f"def make({', '.join(setters)}):\n"
        f"    def __init__(self, {', '.join(args)}):\n" + "\n".join(body) + "\n"
        "    return __init__\n"
    )
    namespace = dict(defaults)
    exec(source, namespace)  # as dataclasses builds its own __init__
    slot_setters = [cls.__dict__[f.name].__set__ for f in fields(cls)]  # type: ignore[arg-type]
    init = namespace["make"](*slot_setters)  # type: ignore[operator]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


# ---------------------------------------------------------------- events in


@fast_init
@dataclass(frozen=True, slots=True)
class CallSpec:
    """One LLM call of a workflow, as it arrives."""

    call_id: CallId
    workflow_id: WorkflowId
    tenant: Tenant
    prompt_tokens: int
    max_output_tokens: int
    arrived_at: float
    task_class: str = "default"
    # Chained hash of every full KV block of the prompt, first block first; lets
    # cache-aware routing and retention match prefixes. Empty when unknown.
    prefix_hashes: tuple[int, ...] = ()


@fast_init
@dataclass(frozen=True, slots=True)
class CallOutcome:
    """A call finished on a worker (successfully; failures are `Scheduler.fail`)."""

    call_id: CallId
    worker_id: WorkerId
    finished_at: float
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    # The tool the agent runs before its next call (declared by the client);
    # None when the client did not say. This is the AEG's edge label.
    next_tool: str | None = None
    # True when the client said this was the workflow's last call.
    workflow_done: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class WorkerStats:
    """Periodic KV-pool report of one worker (vLLM block pool or simulated GPU)."""

    worker_id: WorkerId
    kv_blocks_total: int
    kv_blocks_used: int  # referenced by running requests
    kv_blocks_cached: int  # evictable but still holding a reusable prefix
    prefix_query_tokens: int  # cumulative
    prefix_hit_tokens: int  # cumulative
    running: int
    waiting: int
    # Calls wait inside the engine for KV memory: the head holds further calls for
    # this worker in its own queue, where they can still be reordered or stolen.
    memory_blocked: bool = False


# ------------------------------------------------------------ decisions out


@fast_init
@dataclass(frozen=True, slots=True)
class Dispatch:
    """Send a call to a worker now. Lower `priority` runs first (vLLM's convention)."""

    call_id: CallId
    workflow_id: WorkflowId
    worker_id: WorkerId
    priority: int
    stimulus_id: str
    reason: str  # e.g. "affinity", "steal from w2: wait 3.1s > recompute 0.4s"


@fast_init
@dataclass(frozen=True, slots=True)
class Retain:
    """Keep the KV blocks of a workflow that is away on a tool call.

    `reuse_score` is the retention policy's expected reuse per block (higher =
    keep longer); `until` is when the hint lapses if the workflow has not come
    back (then its blocks are ordinary LRU candidates again). `steps`, times
    before `until` in increasing order, each with the score from then on: the
    pool applies each as it applies the lapse (the AEG's score conditioned on
    how long the workflow has been away).
    """

    worker_id: WorkerId
    workflow_id: WorkflowId
    until: float
    reuse_score: float
    stimulus_id: str
    reason: str = ""  # e.g. "aeg: P(return after pytest, call 12) 0.97, E[gap] 14.2s"
    steps: tuple[tuple[float, float], ...] = ()  # (from time, score), before `until`


def score_in_force(score: float, steps: Sequence[Sequence[float]], now: float) -> float:
    """A Retain's score at `now`: that of its last step due by `now`, `score`
    before the first. The one rule for every pool that ranks by it (the vLLM
    worker's holds get the steps as JSON lists, hence Sequence)."""
    for step in steps:
        if step[0] > now:
            break
        score = step[1]
    return score


@fast_init
@dataclass(frozen=True, slots=True)
class Release:
    """The workflow will not come back (it ended, or moved): evict its blocks first."""

    worker_id: WorkerId
    workflow_id: WorkflowId
    stimulus_id: str
    reason: str = ""  # "workflow done", "moved to w3", "ended"


Decision = Dispatch | Retain | Release


@dataclass(frozen=True, slots=True)
class StoryEntry:
    """One line of a workflow's story: what happened, why, and what the core decided."""

    at: float
    stimulus_id: str
    event: str
    detail: str
    decisions: tuple[Decision, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class SystemSpec:
    """A named bundle of policies, each by its registry name (see `core.systems`)."""

    name: str
    retention: str  # lru | ttl | aeg | belady
    routing: str  # round-robin | least-loaded | affinity | cache-aware | affinity-steal
    ordering: str  # fcfs | vtc | plas | afs
