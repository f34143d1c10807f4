"""The OpenAI-compatible HTTP API of the head.

Routes: /v1/chat/completions, /v1/completions (streaming and not), /v1/models,
/health, /metrics. Every /v1 route needs `Authorization: Bearer <key>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from saga_hpc import __version__
from saga_hpc.api.auth import Authenticator
from saga_hpc.api.completions import Body, Completions, header_map
from saga_hpc.api.errors import ApiError, on_api_error, on_http_error, on_validation_error
from saga_hpc.api.lean import LeanCompletions
from saga_hpc.api.limits import SizeLimits, arrived_at
from saga_hpc.api.schemas import ChatCompletionRequest, CompletionRequest
from saga_hpc.api.workflow import WorkflowGate
from saga_hpc.head.prompts import PromptBuilder
from saga_hpc.head.service import HeadService
from saga_hpc.store.store import Store

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_HEADER_BYTES = 32 * 1024


@dataclass
class ApiSettings:
    model_name: str
    block_size: int = 32
    default_max_tokens: int = 256
    auth_cache_s: float = 10.0


def create_app(
    head: HeadService, prompts: PromptBuilder, store: Store, settings: ApiSettings
) -> SizeLimits:
    """The ASGI app: size limits, then the lean front for valid completion calls,
    then FastAPI for everything else."""
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
    calls = Completions(
        head,
        prompts,
        store,
        auth,
        gate,
        served,
        settings.block_size,
        settings.default_max_tokens,
    )

    # Valid calls to these two routes are served by the lean front (api/lean.py);
    # these handlers define the routes' schema and answer the requests it passes
    # on (its 4xx messages come from here).
    async def start_call(request: Request, kind: str, body: Body) -> Response:
        headers = header_map(request.scope["headers"])
        answer = await calls.start(kind, body, headers, arrived_at(request.scope))
        if answer.chunks is None:
            return JSONResponse(answer.whole, headers=answer.headers)
        return StreamingResponse(
            answer.chunks, media_type="text/event-stream", headers=answer.headers
        )

    # `authorization` is declared for the OpenAPI schema; start_call reads it
    # from the headers, as the lean front does.
    @app.post("/v1/chat/completions")
    async def chat_completions(
        body: ChatCompletionRequest,
        request: Request,
        authorization: str | None = Header(default=None),
    ) -> Response:
        return await start_call(request, "chat", body)

    @app.post("/v1/completions")
    async def completions(
        body: CompletionRequest, request: Request, authorization: str | None = Header(default=None)
    ) -> Response:
        return await start_call(request, "text", body)

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

    lean = LeanCompletions(app, calls, max_body_bytes=MAX_BODY_BYTES)
    return SizeLimits(lean, max_header_bytes=MAX_HEADER_BYTES, max_body_bytes=MAX_BODY_BYTES)
