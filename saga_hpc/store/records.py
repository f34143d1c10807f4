"""Plain values the store hands out and takes in (no ORM objects leave the store)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a Slurm user, billed to one of their accounts."""

    user: str
    account: str
    key_id: str


@dataclass(frozen=True)
class AuthResult:
    principal: Principal | None
    forbidden: bool = False  # key is genuine but its user may no longer use the account
    reason: str = ""


@dataclass(frozen=True)
class CallRecord:
    """One finished call as the head reports it; becomes an AEG node and a ledger row."""

    call_id: str
    workflow_id: str
    account: str
    user: str
    model: str
    worker: str
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    arrived_at: float
    dispatched_at: float
    first_token_at: float | None
    finished_at: float
    worker_time_s: float
    next_tool: str | None
    # Where the worker's time went inside the engine (vLLM's per-request stats);
    # None when the engine reported none.
    engine_queue_s: float | None = None
    prefill_s: float | None = None
    decode_s: float | None = None
    preemptions: int | None = None


@dataclass(frozen=True)
class WorkflowOpen:
    """A call names a workflow: create it for this account unless it exists."""

    workflow_id: str
    account: str
    user: str
    now: float


@dataclass(frozen=True)
class LedgerBatch:
    """Writes of many calls that commit together (the head's group commit)."""

    opens: list[WorkflowOpen] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    finishes: list[tuple[str, float]] = field(default_factory=list)  # workflow id, at


# A call's columns in the `calls` table, as the writer and the readers name them.
CALL_FIELDS = tuple(CallRecord.__dataclass_fields__)


@dataclass(frozen=True)
class StoredCall(CallRecord):
    """A recorded call with its position in the workflow (0 = first)."""

    seq: int = 0


@dataclass(frozen=True)
class ToolEdgeRow:
    from_call: str
    to_call: str
    tool: str
    duration_s: float


@dataclass(frozen=True)
class WorkflowRow:
    workflow_id: str
    account: str
    user: str
    started_at: float
    finished_at: float | None


@dataclass(frozen=True)
class WorkflowStory:
    workflow: WorkflowRow
    calls: list[StoredCall]
    edges: list[ToolEdgeRow]


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    user: str
    account: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    note: str | None


@dataclass
class UsageRow:
    """Usage of one account (or one user in it) over a period, from the ledger."""

    account: str
    user: str | None
    tasks: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    worker_seconds: float = 0.0
    tct_median_s: float | None = None
    tct_p99_s: float | None = None
    tcts_s: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("tcts_s")
        return d
