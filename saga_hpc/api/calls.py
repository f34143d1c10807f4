"""One API call: build it, hand it to the head, and shape what comes back as
OpenAI chat/completion objects (whole, or as server-sent-event chunks)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from saga_hpc.api.errors import ApiError, error_body
from saga_hpc.api.workflow import WorkflowFields
from saga_hpc.core.types import CallSpec
from saga_hpc.head.calls import CallContext, CallEvent
from saga_hpc.head.prompts import Ids
from saga_hpc.head.service import HeadService
from saga_hpc.protocol import Done, Failed, Submit, Tokens
from saga_hpc.store.store import Principal


@functools.lru_cache(maxsize=4096)
def cache_salt(account: str) -> str:
    """vLLM shares KV blocks only between requests with the same salt: one per account."""
    return "acct-" + hashlib.sha256(account.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class CallRequest:
    kind: str  # "chat" or "text"
    model: str
    prompt_ids: Ids
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    ignore_eos: bool
    stream: bool
    include_usage: bool


def new_context(
    req: CallRequest,
    wf: WorkflowFields,
    principal: Principal,
    prefix_hashes: tuple[int, ...],
    received_at: float,
) -> CallContext:
    """`received_at`: when the request reached the head, so the head's added time
    counts parsing, validation, auth and tokenizing too."""
    now = time.time()
    call_id = f"{'chatcmpl' if req.kind == 'chat' else 'cmpl'}-{_call_suffix(wf, principal)}"
    workflow_id = wf.workflow_id or f"call-{call_id}"
    spec = CallSpec(
        call_id=call_id,
        workflow_id=workflow_id,
        tenant=principal.account,
        prompt_tokens=len(req.prompt_ids),
        max_output_tokens=req.max_tokens,
        arrived_at=now,
        task_class=wf.task_class,
        prefix_hashes=prefix_hashes,
    )
    submit = Submit(
        call_id=call_id,
        workflow_id=workflow_id,
        prompt_token_ids=req.prompt_ids,
        max_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        seed=req.seed,
        stop=req.stop,
        priority=0,
        cache_salt=cache_salt(principal.account),
        ignore_eos=req.ignore_eos,
        stream=req.stream,
    )
    return CallContext(
        spec=spec,
        principal=principal,
        submit=submit,
        next_tool=wf.next_tool,
        workflow_done=wf.done or wf.workflow_id is None,
        received_at=min(received_at, now),
        stream=req.stream,
    )


def _call_suffix(wf: WorkflowFields, principal: Principal) -> str:
    """Random, or derived from the client's Idempotency-Key within its account
    (so one tenant's keys never collide with another's)."""
    if wf.idempotency_key is None:
        return uuid.uuid4().hex
    named = f"{principal.account}\0{wf.idempotency_key}".encode()
    return hashlib.sha256(named).hexdigest()[:32]


def _failure(msg: Failed) -> ApiError:
    if msg.retryable:
        return ApiError(
            503,
            f"call failed, retry it: {msg.message}",
            code="retryable",
            headers={"Retry-After": "1"},
        )
    return ApiError(502, f"call failed: {msg.message}")


def _usage(done: Done) -> dict[str, Any]:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.output_tokens,
        "total_tokens": done.prompt_tokens + done.output_tokens,
        "prompt_tokens_details": {"cached_tokens": done.cached_tokens},
    }


_JOB = os.environ.get("SLURM_JOB_ID")


def saga_headers(ctx: CallContext) -> dict[str, str]:
    headers = {"X-Saga-Call-Id": ctx.call_id, "X-Saga-Workflow": ctx.spec.workflow_id}
    if _JOB:
        headers["X-Saga-Service-Job"] = _JOB  # which Slurm job served it (handover)
    return headers


class CallRun:
    """Drives one submitted call's events into a response."""

    def __init__(self, head: HeadService, ctx: CallContext, req: CallRequest) -> None:
        self.head = head
        self.ctx = ctx
        self.req = req
        self.created = int(ctx.received_at)
        self.finished = False

    async def next_event(self) -> CallEvent:
        event = await self.ctx.events.get()
        if isinstance(event, Done | Failed):
            self.finished = True
        return event

    def cancel_if_unfinished(self) -> None:
        if not self.finished:
            self.head.cancel(self.ctx)

    async def whole(self) -> dict[str, Any]:
        try:
            while True:
                event = await self.next_event()
                if isinstance(event, Failed):
                    raise _failure(event)
                if isinstance(event, Done):
                    return self._whole_body(event)
        finally:
            self.cancel_if_unfinished()

    def _whole_body(self, done: Done) -> dict[str, Any]:
        if self.req.kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": done.text},
                "finish_reason": done.finish_reason,
                "logprobs": None,
            }
            obj = "chat.completion"
        else:
            choice = {
                "index": 0,
                "text": done.text,
                "finish_reason": done.finish_reason,
                "logprobs": None,
            }
            obj = "text_completion"
        return {
            "id": self.ctx.call_id,
            "object": obj,
            "created": self.created,
            "model": self.req.model,
            "choices": [choice],
            "usage": _usage(done),
        }

    async def first(self) -> CallEvent:
        """Wait for the first event so an early failure is still an HTTP error status."""
        event = await self.next_event()
        if isinstance(event, Failed):
            raise _failure(event)
        return event

    async def chunks(self, first: CallEvent) -> AsyncIterator[str]:
        try:
            if self.req.kind == "chat":
                yield self._sse(self._chunk({"role": "assistant", "content": ""}, None))
            event = first
            while True:
                if isinstance(event, Tokens):
                    yield self._sse(self._chunk(self._delta(event.text), None))
                elif isinstance(event, Done):
                    yield self._sse(self._chunk(self._delta(""), done=event))
                    if self.req.include_usage:
                        yield self._sse(self._usage_chunk(event))
                    break
                else:  # the status line went out already: the code says whether to retry
                    err = _failure(event)
                    yield self._sse(error_body(err.status, err.message, code=err.code))
                    break
                event = await self.next_event()
            yield "data: [DONE]\n\n"
        finally:
            self.cancel_if_unfinished()

    def _delta(self, text: str) -> dict[str, Any]:
        return {"content": text} if self.req.kind == "chat" else {"text": text}

    def _chunk(
        self, delta: dict[str, Any], reason: str | None = None, *, done: Done | None = None
    ) -> dict[str, Any]:
        finish = done.finish_reason if done is not None else reason
        if self.req.kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "delta": delta,
                "finish_reason": finish,
                "logprobs": None,
            }
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": delta["text"], "finish_reason": finish, "logprobs": None}
            obj = "text_completion"
        return {
            "id": self.ctx.call_id,
            "object": obj,
            "created": self.created,
            "model": self.req.model,
            "choices": [choice],
        }

    def _usage_chunk(self, done: Done) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.req.kind == "chat" else "text_completion"
        return {
            "id": self.ctx.call_id,
            "object": obj,
            "created": self.created,
            "model": self.req.model,
            "choices": [],
            "usage": _usage(done),
        }

    @staticmethod
    def _sse(obj: dict[str, Any]) -> str:
        return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"
