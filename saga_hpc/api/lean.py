"""The two completion routes without FastAPI's request machinery.

POST /v1/chat/completions and /v1/completions are the head's hot path: every
agent call goes through them. FastAPI's routing, dependency solving, exception
middlewares, request and response classes cost the head about as much CPU as
the call's own work (docs/reliability.md, "Load"). This ASGI front serves those
two routes itself whenever the body is JSON that the route's pydantic model
accepts; everything else goes on to the FastAPI app untouched, with the body
already read: the other routes, and every request this front does not accept
(not JSON, bad JSON, a field that fails validation). So the pydantic models
stay the one definition of a valid request, FastAPI's handlers the one source
of 4xx messages, and the OpenAPI schema still describes both routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from pydantic import ValidationError

from saga_hpc.api.completions import Answer, Body, Completions, header_map
from saga_hpc.api.errors import ApiError, error_body
from saga_hpc.api.limits import arrived_at
from saga_hpc.api.schemas import ChatCompletionRequest, CompletionRequest

Scope = dict[str, Any]
Receive = Any
Send = Any

Model = type[ChatCompletionRequest] | type[CompletionRequest]
ROUTES: dict[str, tuple[str, Model]] = {
    "/v1/chat/completions": ("chat", ChatCompletionRequest),
    "/v1/completions": ("text", CompletionRequest),
}


class LeanCompletions:
    def __init__(self, app: Any, calls: Completions, max_body_bytes: int) -> None:
        self.app = app  # FastAPI: every other request
        self.calls = calls
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive, self.max_body_bytes)
        if body is None:  # the client left before sending it all
            return
        if len(body) > self.max_body_bytes:
            msg = f"request body larger than {self.max_body_bytes} bytes"
            await _send_json(send, 413, error_body(413, msg), None)
            return
        kind, model = route
        headers = header_map(scope["headers"])
        request = _validated(model, body, headers.get("content-type"))
        if request is None:  # FastAPI answers it (a 4xx naming the problem)
            await self.app(scope, _replay(body, receive), send)
            return
        try:
            run = await self.calls.submit(kind, request, headers, arrived_at(scope))
            del request, headers, body  # see Completions.submit
            answer = await self.calls.answer(run)
        except ApiError as err:
            body_out = error_body(err.status, err.message, err.param, err.code)
            await _send_json(send, err.status, body_out, err.headers)
            return
        if answer.chunks is None:
            await _send_json(send, 200, answer.whole, answer.headers)
        else:
            await _stream(answer, receive, send)


def _validated(model: Model, body: bytes, content_type: str | None) -> Body | None:
    """The request, if FastAPI would read this body as JSON and accept it; else None."""
    if content_type is None or not _is_json(content_type):
        return None
    try:
        return model.model_validate_json(body)
    except ValidationError:
        return None


def _is_json(content_type: str) -> bool:
    """application/json or application/*+json, as FastAPI decides whether to parse."""
    media = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body (stops reading past `limit`); None if the client disconnected."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body  # the usual case: one message
    chunks = [body]
    size = len(body)
    while message.get("more_body", False) and size <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body already read, then whatever comes next."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: dict[str, Any] = await receive()
        return message

    return replay


def _encode_headers(headers: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]


async def _send_json(
    send: Send, status: int, obj: dict[str, Any] | None, headers: dict[str, str] | None
) -> None:
    # As Starlette's JSONResponse renders it.
    payload = json.dumps(
        obj, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *_encode_headers(headers),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


async def _stream(answer: Answer, receive: Receive, send: Send) -> None:
    """Server-sent events; a client that disconnects cancels the call (its
    worker stops generating), as Starlette's StreamingResponse does."""
    assert answer.chunks is not None
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        # Answers http.disconnect when the client leaves, or once the response
        # is complete (then this task is cancelled first).
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.ensure_future(watch())
    raw = [(b"content-type", b"text/event-stream; charset=utf-8"), *_encode_headers(answer.headers)]
    try:
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        async for chunk in answer.chunks:
            await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
        watcher.cancel()
        await send({"type": "http.response.body", "body": b""})
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()  # our own cancel: the client left, nothing more to do
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await answer.chunks.aclose()  # type: ignore[attr-defined]
