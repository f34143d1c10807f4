"""The schema: tenants and keys, workflows and their Agent Execution Graphs, the ledger.

Times are unix seconds (float) so the head, the simulator and reports share
one clock convention; token counts are integers.
"""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent: Mapped[str | None] = mapped_column(String(64))
    fairshare: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[float] = mapped_column(Float)


class User(Base):
    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)


class Association(Base):
    """A user may use an account (Slurm's association); fairshare is the user's share in it."""

    __tablename__ = "associations"
    user: Mapped[str] = mapped_column(
        ForeignKey("users.name", ondelete="CASCADE"), primary_key=True
    )
    account: Mapped[str] = mapped_column(
        ForeignKey("accounts.name", ondelete="CASCADE"), primary_key=True
    )
    fairshare: Mapped[int] = mapped_column(Integer, default=1)


class ApiKey(Base):
    __tablename__ = "api_keys"
    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name"))
    account: Mapped[str] = mapped_column(ForeignKey("accounts.name"))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float)
    note: Mapped[str | None] = mapped_column(String(200))


class Workflow(Base):
    __tablename__ = "workflows"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    account: Mapped[str] = mapped_column(String(64), index=True)
    user: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[float] = mapped_column(Float, index=True)
    finished_at: Mapped[float | None] = mapped_column(Float)


class Call(Base):
    """A node of a workflow's Agent Execution Graph."""

    __tablename__ = "calls"
    call_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id"))
    seq: Mapped[int] = mapped_column(Integer)
    account: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    worker: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    arrived_at: Mapped[float] = mapped_column(Float)
    dispatched_at: Mapped[float] = mapped_column(Float)
    first_token_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float] = mapped_column(Float)
    worker_time_s: Mapped[float] = mapped_column(Float)
    next_tool: Mapped[str | None] = mapped_column(String(64))
    # Inside the engine (migration 0002; None before it or without vLLM's stats).
    engine_queue_s: Mapped[float | None] = mapped_column(Float)
    prefill_s: Mapped[float | None] = mapped_column(Float)
    decode_s: Mapped[float | None] = mapped_column(Float)
    preemptions: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (Index("ix_calls_workflow_seq", "workflow_id", "seq"),)


class ToolEdge(Base):
    """The gap between two calls of a workflow: the tool the agent ran, and how long."""

    __tablename__ = "tool_edges"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[str] = mapped_column(ForeignKey("workflows.id"), index=True)
    from_call: Mapped[str] = mapped_column(ForeignKey("calls.call_id"))
    to_call: Mapped[str] = mapped_column(ForeignKey("calls.call_id"))
    tool: Mapped[str] = mapped_column(String(64))
    duration_s: Mapped[float] = mapped_column(Float)
    __table_args__ = (UniqueConstraint("to_call", name="uq_tool_edges_to_call"),)


class LedgerEntry(Base):
    """What an account is billed for one call; written in the call's transaction."""

    __tablename__ = "usage_ledger"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.call_id"), unique=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    account: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    worker_seconds: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)
    __table_args__ = (Index("ix_ledger_account_at", "account", "at"),)
