"""Messages between the head (rank 0) and workers (ranks 1..N-1).

Worker -> head: Register, Heartbeat, Tokens, Done, Failed, Bye.
Head -> worker: Welcome, Submit, Cancel, Hints, Shutdown.

Every message is a frozen dataclass; `codec.encode` adds the type tag and the
protocol version, `codec.decode` checks both and every field's type, so a
malformed frame is rejected at the socket, never half-processed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Register:
    """A worker's engine is up and ready for calls."""

    worker_id: str
    rank: int
    host: str
    pid: int
    model: str
    slots: int  # concurrent calls the engine batches (max_num_seqs)
    kv_capacity_tokens: int
    block_size: int
    engine_start_s: float


@dataclass(frozen=True, slots=True)
class Welcome:
    """The head accepted a registration; heartbeats are expected every `heartbeat_s`."""

    worker_id: str
    heartbeat_s: float


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Liveness plus the KV-pool and queue state the router feeds on."""

    worker_id: str
    running: int
    waiting: int
    kv_blocks_total: int
    kv_blocks_used: int
    kv_blocks_cached: int
    prefix_query_tokens: int
    prefix_hit_tokens: int
    kv_blocks_held: int = 0  # pinned for workflows away on a tool call (retention hints)
    kv_evictions: int = 0  # cached blocks reused for other content, cumulative
    # Requests wait inside the engine because its KV pool cannot take them: the
    # head then keeps further calls for this worker in its own queue.
    memory_blocked: bool = False


@dataclass(frozen=True, slots=True)
class Submit:
    """Run one call. The head tokenizes (it needs prompt lengths and block hashes
    to schedule), so the worker receives token ids, not text (packed on the
    wire, 4 bytes each: codec.py; a list once decoded, the head's own are an
    `array("I")`)."""

    call_id: str
    workflow_id: str
    prompt_token_ids: Sequence[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    priority: int
    # Per-tenant salt: vLLM never shares cached blocks across different salts.
    cache_salt: str
    ignore_eos: bool = False
    # False: the client waits for the whole answer, so the worker sends no Tokens
    # frames, only Done (the head would drop them: four frames in five at the
    # bench's load). The default keeps a Submit without the field streaming.
    stream: bool = True


@dataclass(frozen=True, slots=True)
class Tokens:
    """Newly generated text of a call whose Submit had `stream`; `output_tokens`
    is cumulative."""

    call_id: str
    text: str
    output_tokens: int


@dataclass(frozen=True, slots=True)
class Done:
    """A call finished. Times are the worker's, measured around the engine only."""

    call_id: str
    text: str  # the whole output, so non-streaming callers need no reassembly
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    finish_reason: str
    engine_time_s: float
    first_token_s: float | None  # from engine submit to first token
    # Inside the engine (vLLM's own per-request timestamps; None when it has none):
    # waiting for its first schedule, scheduled to first token, first to last token.
    engine_queue_s: float | None = None
    prefill_s: float | None = None
    decode_s: float | None = None
    preemptions: int = 0  # times vLLM took its KV blocks back to make room, then resumed it


@dataclass(frozen=True, slots=True)
class Failed:
    """A call could not run; `retryable` says whether another worker may try."""

    call_id: str
    message: str
    retryable: bool


@dataclass(frozen=True, slots=True)
class Cancel:
    """The client went away: abort the call and free its slot."""

    call_id: str


@dataclass(frozen=True, slots=True)
class Hints:
    """Retention hints from the core: keep these workflows' blocks until a time, or
    release them first. `until` is in the head's clock (seconds since epoch), as
    are the times of `steps`: (time, score from then on), increasing, before
    `until` (the AEG's score as the workflow stays away; `Retain.steps`)."""

    # (workflow, until, score, steps)
    retain: list[tuple[str, float, float, list[tuple[float, float]]]] = field(default_factory=list)
    release: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Finish in-flight calls (or abort them after `grace_s`) and exit."""

    grace_s: float


@dataclass(frozen=True, slots=True)
class Bye:
    """The worker is leaving (after Shutdown or a signal)."""

    worker_id: str
    reason: str


Message = (
    Register
    | Welcome
    | Heartbeat
    | Submit
    | Tokens
    | Done
    | Failed
    | Cancel
    | Hints
    | Shutdown
    | Bye
)

MESSAGE_TYPES: dict[str, type[Any]] = {
    cls.__name__.lower(): cls
    for cls in (
        Register,
        Welcome,
        Heartbeat,
        Submit,
        Tokens,
        Done,
        Failed,
        Cancel,
        Hints,
        Shutdown,
        Bye,
    )
}
