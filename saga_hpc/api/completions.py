"""What a completion call does once its body is valid, whichever front received it.

The FastAPI routes (api/app.py) and the lean front (api/lean.py) both hand a
validated request to `Completions.start`, which authenticates, tokenizes, admits
the workflow, submits the call and waits for its answer (or, when streaming,
its first event); each front only writes the `Answer` out in its own way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from saga_hpc.api.auth import Authenticator
from saga_hpc.api.calls import CallRequest, CallRun, cache_salt, new_context, saga_headers
from saga_hpc.api.errors import ApiError
from saga_hpc.api.schemas import ChatCompletionRequest, CompletionRequest
from saga_hpc.api.workflow import WorkflowGate, read_fields
from saga_hpc.head.calls import CallContext
from saga_hpc.head.conversations import Conversations
from saga_hpc.head.prompts import (
    Ids,
    PromptBuilder,
    PromptError,
    TooMuchNew,
    as_ids,
    prefix_hashes,
)
from saga_hpc.head.service import HeadService
from saga_hpc.protocol import Done
from saga_hpc.store.store import Store

# New prompt text the event loop encodes itself (~0.1-0.5 ms); more goes to a thread.
INLINE_NEW_CHARS = 2048

Body = ChatCompletionRequest | CompletionRequest


@dataclass
class Answer:
    """A call's response: a whole JSON object, or server-sent events (`chunks`)."""

    headers: dict[str, str]
    whole: dict[str, Any] | None = None
    chunks: AsyncIterator[str] | None = None


def header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Request headers by lower-case name; the first of repeated ones counts
    (as Starlette's `headers.get`, which FastAPI's `Header()` reads)."""
    headers: dict[str, str] = {}
    for name, value in raw:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


class Completions:
    def __init__(
        self,
        head: HeadService,
        prompts: PromptBuilder,
        store: Store,
        auth: Authenticator,
        gate: WorkflowGate,
        served: str,
        block_size: int,
        default_max_tokens: int,
    ) -> None:
        self.head = head
        self.prompts = prompts
        self.store = store
        self.auth = auth
        self.gate = gate
        self.served = served
        self.block_size = block_size
        self.default_max_tokens = default_max_tokens
        self.conversations = Conversations.for_pieces(prompts, block_size)

    async def start(
        self, kind: str, body: Body, headers: dict[str, str], arrived_at: float
    ) -> Answer:
        """Run the call (ApiError if it cannot be served). `headers` from `header_map`;
        `arrived_at`: when the request reached the head (for the head-added time)."""
        return await self.answer(await self.submit(kind, body, headers, arrived_at))

    async def submit(
        self, kind: str, body: Body, headers: dict[str, str], arrived_at: float
    ) -> CallRun:
        """Check, tokenize and submit the call. A caller that can drops the body
        before awaiting `answer`: the body's objects then die young instead of
        riding through the garbage collector's generations for the call's life."""
        head = self.head
        principal = await self.auth.principal(headers.get("authorization"))
        if body.model != self.served:
            raise ApiError(
                404,
                f"model '{body.model}' does not exist; this service serves '{self.served}'",
                param="model",
                code="model_not_found",
            )
        wf = read_fields(headers, body.metadata)
        salt = cache_salt(principal.account)
        # The account's workflow: its last prompt is where this one starts.
        key = None if wf.workflow_id is None else (principal.account, wf.workflow_id)
        try:
            try:
                # Here when little of the prompt is new (an agent's next turn):
                # the hop to a thread would cost more than the encoding.
                ids, hashes, max_tokens = self._tokenize(body, salt, key, INLINE_NEW_CHARS)
            except TooMuchNew:
                # In a thread: encoding releases the GIL, so the event loop
                # serves other calls meanwhile.
                ids, hashes, max_tokens = await asyncio.to_thread(
                    self._tokenize, body, salt, key, None
                )
        except PromptError as exc:
            raise ApiError(400, str(exc), param="messages" if kind == "chat" else "prompt") from exc
        if wf.done and key is not None and self.conversations is not None:
            self.conversations.forget(key)  # its last call: no prompt will follow
        if not head.registry.alive():
            raise ApiError(
                503,
                "no inference worker is alive; retry shortly",
                code="retryable",
                headers={"Retry-After": "5"},
            )
        req = CallRequest(
            kind=kind,
            model=self.served,
            prompt_ids=ids,
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=body.stops(),
            ignore_eos=body.ignore_eos,
            stream=body.stream,
            include_usage=bool(body.stream_options and body.stream_options.include_usage),
        )
        ctx = new_context(req, wf, principal, hashes, arrived_at)
        if ctx.call_id in head.calls:
            raise ApiError(
                409,
                "a call with this Idempotency-Key is still running; retry when it has finished",
                param="Idempotency-Key",
                code="retryable",
                headers={"Retry-After": "1"},
            )
        await self._check_handover(ctx.spec.workflow_id)
        await self.gate.admit(ctx.spec.workflow_id, principal, time.time())
        head.submit(ctx)
        return CallRun(head, ctx, req)

    async def answer(self, run: CallRun) -> Answer:
        """The submitted call's answer, or (streaming) its first event and the rest to come."""
        ctx = run.ctx
        if not run.req.stream:
            whole = await run.whole()
            return Answer(_with_worker(ctx), whole=whole)
        try:
            first = await run.first()
        except BaseException:
            run.cancel_if_unfinished()
            raise
        headers_out = _with_worker(ctx) | {"Cache-Control": "no-cache"}
        if isinstance(first, Done):
            headers_out["X-Saga-Cached-Tokens"] = str(first.cached_tokens)
        return Answer(headers_out, chunks=run.chunks(first))

    def _tokenize(
        self, body: Body, salt: str, key: tuple[str, str] | None, new_chars: int | None
    ) -> tuple[Ids, tuple[int, ...], int]:
        """The prompt's token ids, their block hashes and the output budget
        (PromptError if unservable; TooMuchNew if more than `new_chars`
        characters need encoding)."""
        prompts = self.prompts
        hashes: tuple[int, ...] | None = None
        if isinstance(body, ChatCompletionRequest):
            messages = [{"role": m.role, "content": m.text()} for m in body.messages]
            if self.conversations is not None:
                ids, hashes = self.conversations.chat(messages, salt, key, new_chars)
            else:
                ids = prompts.chat(messages, new_chars)
        elif isinstance(body.prompt, str):
            if new_chars is not None:
                raise TooMuchNew  # plain prompts are not cached piecewise
            ids = prompts.text(body.prompt)
        else:
            prompts.check_ids(body.prompt)  # a client's ids; the tokenizer's are in its vocabulary
            ids = as_ids(body.prompt)
        if not ids:
            raise PromptError("'prompt' must not be empty")
        budget = prompts.output_budget(len(ids), body.output_limit(), self.default_max_tokens)
        if hashes is None:
            hashes = prefix_hashes(ids, self.block_size, salt)
        return ids, hashes, budget

    async def _check_handover(self, workflow_id: str) -> None:
        handover = self.head.handover
        if handover.moved_to is not None:
            raise ApiError(
                503,
                f"the service moved to {handover.moved_to}; retry there",
                code="service_moved",
                headers={"X-Saga-Endpoint": handover.moved_to, "Retry-After": "0"},
            )
        if (
            handover.moving
            and not self.gate.known(workflow_id)
            and await asyncio.to_thread(self.store.get_workflow, workflow_id) is None
        ):
            raise ApiError(
                503,
                "the service is handing over to its next Slurm job; "
                "retry in a few seconds (re-read the endpoint file)",
                code="service_moving",
                headers={"Retry-After": "5"},
            )


def _with_worker(ctx: CallContext) -> dict[str, str]:
    return saga_headers(ctx) | ({"X-Saga-Worker": ctx.worker_id} if ctx.worker_id else {})
