"""An in-flight call as the head sees it: what to send, where it went, what came back."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from saga_hpc.core.types import CallSpec
from saga_hpc.protocol import Done, Failed, Submit, Tokens
from saga_hpc.store.store import Principal

CallEvent = Tokens | Done | Failed


@dataclass
class CallContext:
    spec: CallSpec
    principal: Principal
    submit: Submit  # priority is filled in when the core dispatches it
    next_tool: str | None
    workflow_done: bool
    received_at: float  # wall clock, request arrived at the head
    stream: bool = True  # tokens go to the client as they come (no silent replay then)
    events: asyncio.Queue[CallEvent] = field(default_factory=asyncio.Queue)
    worker_id: str | None = None
    queued_at: float | None = None  # core had no free slot: waiting at the head
    dispatched_at: float | None = None
    streamed_tokens: int = 0  # tokens already forwarded to the client
    attempts: int = 0

    @property
    def call_id(self) -> str:
        return self.spec.call_id

    def queue_wait_s(self) -> float:
        if self.queued_at is None or self.dispatched_at is None:
            return 0.0
        return self.dispatched_at - self.queued_at
