"""Refuse oversize requests before any work: headers (431) and declared bodies (413).

It is the first code a request meets, so it also stamps the arrival time: the
head's added latency (`saga_head_overhead_seconds`) is measured from there.

A plain ASGI middleware: Starlette's `BaseHTTPMiddleware` runs every request
through an extra task group, which costs more than the head's own work per call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

Scope = dict[str, Any]
Receive = Any
Send = Any

_ARRIVED = "saga.arrived_at"


def arrived_at(scope: Mapping[str, Any]) -> float:
    """Wall-clock time the request reached the head (now, if it was not stamped)."""
    return float(scope.get(_ARRIVED) or time.time())


class SizeLimits:
    def __init__(self, app: Any, max_header_bytes: int, max_body_bytes: int) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[_ARRIVED] = time.time()
            headers: list[tuple[bytes, bytes]] = scope["headers"]
            if sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes:
                msg = f"request headers larger than {self.max_header_bytes} bytes"
                await _refuse(send, 431, msg)
                return
            for name, value in headers:
                if name == b"content-length" and (
                    not value.isdigit() or int(value) > self.max_body_bytes
                ):
                    await _refuse(
                        send, 413, f"request body larger than {self.max_body_bytes} bytes"
                    )
                    return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, message: str) -> None:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
