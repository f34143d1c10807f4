"""The OpenAI-compatible HTTP API of the head.

Routes: /v1/chat/completions, /v1/completions (streaming and not), /v1/models,
/health, /metrics. Every /v1 route needs `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from saga_hpc import __version__
from saga_hpc.api.auth import Authenticator
from saga_hpc.api.calls import CallRequest, CallRun, cache_salt, new_context, saga_headers
from saga_hpc.api.errors import ApiError, on_api_error, on_http_error, on_validation_error
from saga_hpc.api.limits import SizeLimits, arrived_at
from saga_hpc.api.schemas import ChatCompletionRequest, CompletionRequest
from saga_hpc.api.workflow import WorkflowGate, read_fields
from saga_hpc.head.prompts import PromptBuilder, PromptError, TooMuchNew, prefix_hashes
from saga_hpc.head.service import HeadService
from saga_hpc.protocol import Done
from saga_hpc.store.store import Store

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_HEADER_BYTES = 32 * 1024
# New prompt text the event loop encodes itself (~0.1-0.5 ms); more goes to a thread.
INLINE_NEW_CHARS = 2048


@dataclass
class ApiSettings:
    model_name: str
    block_size: int = 32
    default_max_tokens: int = 256
    auth_cache_s: float = 10.0


def create_app(
    head: HeadService, prompts: PromptBuilder, store: Store, settings: ApiSettings
) -> FastAPI:
    app = FastAPI(
        title="saga-hpc",
        version=__version__,
        description="OpenAI-compatible API of a saga-hpc head. Send your workflow id in "
        "`X-Saga-Workflow` and the next tool in `X-Saga-Next-Tool`.",
    )
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    auth = Authenticator(store, ttl_s=settings.auth_cache_s)
    gate = WorkflowGate(head.ledger)
    served = settings.model_name

    app.add_middleware(SizeLimits, max_header_bytes=MAX_HEADER_BYTES, max_body_bytes=MAX_BODY_BYTES)

    async def start_call(
        request: Request,
        authorization: str | None,
        kind: str,
        body: ChatCompletionRequest | CompletionRequest,
    ) -> Response:
        principal = await auth.principal(authorization)
        if body.model != served:
            raise ApiError(
                404,
                f"model '{body.model}' does not exist; this service serves '{served}'",
                param="model",
                code="model_not_found",
            )
        wf = read_fields({k.lower(): v for k, v in request.headers.items()}, body.metadata)
        try:
            try:
                # Here when little of the prompt is new (an agent's next turn):
                # the hop to a thread would cost more than the encoding.
                ids, max_tokens = _tokenize(body, INLINE_NEW_CHARS)
            except TooMuchNew:
                # In a thread: encoding releases the GIL, so the event loop
                # serves other calls meanwhile.
                ids, max_tokens = await asyncio.to_thread(_tokenize, body, None)
        except PromptError as exc:
            raise ApiError(400, str(exc), param="messages" if kind == "chat" else "prompt") from exc
        if not head.registry.alive():
            raise ApiError(
                503,
                "no inference worker is alive; retry shortly",
                code="retryable",
                headers={"Retry-After": "5"},
            )
        req = CallRequest(
            kind=kind,
            model=served,
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
        hashes = prefix_hashes(ids, settings.block_size, cache_salt(principal.account))
        ctx = new_context(req, wf, principal, hashes, arrived_at(request.scope))
        if ctx.call_id in head.calls:
            raise ApiError(
                409,
                "a call with this Idempotency-Key is still running; retry when it has finished",
                param="Idempotency-Key",
                code="retryable",
                headers={"Retry-After": "1"},
            )
        await _check_handover(ctx.spec.workflow_id)
        await gate.admit(ctx.spec.workflow_id, principal, time.time())
        head.submit(ctx)
        run = CallRun(head, ctx, req)
        if not req.stream:
            return JSONResponse(await run.whole(), headers=_with_worker(ctx))
        try:
            first = await run.first()
        except BaseException:
            run.cancel_if_unfinished()
            raise
        headers = _with_worker(ctx) | {"Cache-Control": "no-cache"}
        if isinstance(first, Done):
            headers["X-Saga-Cached-Tokens"] = str(first.cached_tokens)
        return StreamingResponse(run.chunks(first), media_type="text/event-stream", headers=headers)

    def _tokenize(
        body: ChatCompletionRequest | CompletionRequest, new_chars: int | None
    ) -> tuple[list[int], int]:
        """The prompt's token ids and the output budget (PromptError if unservable;
        TooMuchNew if more than `new_chars` characters need encoding)."""
        if isinstance(body, ChatCompletionRequest):
            messages = [{"role": m.role, "content": m.text()} for m in body.messages]
            ids = prompts.chat(messages, new_chars)
        elif new_chars is not None and isinstance(body.prompt, str):
            raise TooMuchNew  # plain prompts are not cached piecewise
        elif isinstance(body.prompt, str):
            ids = prompts.text(body.prompt)
        else:
            ids = list(body.prompt)
        prompts.check_ids(ids)
        budget = prompts.output_budget(len(ids), body.output_limit(), settings.default_max_tokens)
        return ids, budget

    async def _check_handover(workflow_id: str) -> None:
        handover = head.handover
        if handover.moved_to is not None:
            raise ApiError(
                503,
                f"the service moved to {handover.moved_to}; retry there",
                code="service_moved",
                headers={"X-Saga-Endpoint": handover.moved_to, "Retry-After": "0"},
            )
        if (
            handover.moving
            and not gate.known(workflow_id)
            and await asyncio.to_thread(store.get_workflow, workflow_id) is None
        ):
            raise ApiError(
                503,
                "the service is handing over to its next Slurm job; "
                "retry in a few seconds (re-read the endpoint file)",
                code="service_moving",
                headers={"Retry-After": "5"},
            )

    def _with_worker(ctx: Any) -> dict[str, str]:
        return saga_headers(ctx) | ({"X-Saga-Worker": ctx.worker_id} if ctx.worker_id else {})

    @app.post("/v1/chat/completions")
    async def chat_completions(
        body: ChatCompletionRequest,
        request: Request,
        authorization: str | None = Header(default=None),
    ) -> Response:
        return await start_call(request, authorization, "chat", body)

    @app.post("/v1/completions")
    async def completions(
        body: CompletionRequest, request: Request, authorization: str | None = Header(default=None)
    ) -> Response:
        return await start_call(request, authorization, "text", body)

    @app.get("/v1/models")
    async def models(authorization: str | None = Header(default=None)) -> dict[str, Any]:
        await auth.principal(authorization)
        return {
            "object": "list",
            "data": [
                {
                    "id": served,
                    "object": "model",
                    "created": 0,
                    "owned_by": "saga-hpc",
                    "max_model_len": prompts.max_model_len,
                }
            ],
        }

    @app.get("/health")
    async def health() -> JSONResponse:
        alive = len(head.registry.alive())
        body = {
            "status": "ok" if alive else "no workers",
            "workers_alive": alive,
            "queued": head.scheduler.queue_length(),
            "in_flight": len(head.calls),
        }
        return JSONResponse(body, status_code=200 if alive else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(head.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
