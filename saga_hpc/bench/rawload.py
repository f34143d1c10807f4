"""A lean load driver: asyncio streams speaking HTTP/1.1 keep-alive by hand.

An HTTP client library costs more CPU per call than the head itself; on a
small machine the driver shares the cores with the head, so it must be cheap.
Each agent holds one connection and runs its workflows' calls one after the
other (an agent waits for its answer before its next call, then runs its tool
for `tool_s` on average, uniformly 0.5-1.5x so agents do not march in step). Every completed
response is recorded (call id, workflow, usage), so a test can compare what
clients received with what the ledger billed.

A call carries an `Idempotency-Key`; when the connection breaks (the head
died) or the head answers 503, the agent reconnects, re-reading the endpoint
file when it has one, and sends the same call again, for up to `retry_s`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class RawLoadSpec:
    base_url: str  # http://host:port
    keys: tuple[str, ...]  # round-robin over agents
    workflows: int = 500  # concurrent agents, one workflow each at a time
    calls: int = 10_000  # budget over all agents
    turns: int = 4  # calls per workflow
    max_tokens: int = 16
    prompt_words: int = 20  # words each turn adds to the history
    deadline_s: float = 120.0
    retry_s: float = 60.0  # how long one call keeps retrying a lost connection or a 503
    tool_s: float = 0.0  # mean pause between a workflow's calls (the agent runs its tool)
    tag: str = "raw"  # workflow ids are f"{tag}-{agent}-{round}"
    endpoint_file: str | None = None  # re-read on reconnect (a restarted head)


@dataclass(frozen=True)
class Completed:
    call_id: str
    workflow_id: str
    turn: int
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    latency_s: float


@dataclass
class RawLoadResult:
    completed: list[Completed] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    wall_s: float = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class _Broken(Exception):
    """The connection failed mid-call: reconnect and send the call again."""


class _Conn:
    def __init__(self, spec: RawLoadSpec) -> None:
        self.spec = spec
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.host = ""

    async def open(self) -> None:
        self.close()
        url = urlsplit(_base(self.spec))
        self.host = url.netloc
        try:
            self.reader, self.writer = await asyncio.open_connection(url.hostname, url.port)
        except OSError as exc:
            raise _Broken(type(exc).__name__) from exc

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self.writer is None or self.reader is None:
            await self.open()
        assert self.writer is not None and self.reader is not None
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        try:
            self.writer.write(head.encode() + body)
            status_line = await self.reader.readuntil(b"\r\n")
            raw_headers = await self.reader.readuntil(b"\r\n\r\n")
            length = _content_length(raw_headers)
            payload = await self.reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self.close()
            raise _Broken(type(exc).__name__) from exc
        if b"connection: close" in raw_headers.lower():
            self.close()
        return int(status_line.split(b" ", 2)[1]), payload


def _content_length(raw_headers: bytes) -> int:
    for line in raw_headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise _Broken("no Content-Length")


def _base(spec: RawLoadSpec) -> str:
    if spec.endpoint_file:
        try:
            url = str(json.loads(Path(spec.endpoint_file).read_text())["url"])
            return url.rstrip("/").removesuffix("/v1")
        except (OSError, ValueError, KeyError):
            pass  # mid-replace or not yet written: use the given one
    return spec.base_url


async def run_raw_load(spec: RawLoadSpec) -> RawLoadResult:
    result = RawLoadResult()
    budget = [spec.calls]
    deadline = time.monotonic() + spec.deadline_s
    t0 = time.monotonic()
    await asyncio.gather(
        *(_agent(spec, i, budget, deadline, result) for i in range(spec.workflows))
    )
    result.wall_s = time.monotonic() - t0
    return result


async def _agent(
    spec: RawLoadSpec, index: int, budget: list[int], deadline: float, result: RawLoadResult
) -> None:
    conn = _Conn(spec)
    key = spec.keys[index % len(spec.keys)]
    tools = random.Random(index)
    round_ = 0
    try:
        await asyncio.sleep(tools.uniform(0.0, spec.tool_s))  # agents start spread out
        while budget[0] > 0 and time.monotonic() < deadline:
            workflow = f"{spec.tag}-{index}-{round_}"
            # As agents send it: the whole conversation each turn, one message more
            # (the tool's output) after the model's last answer.
            messages = [{"role": "system", "content": "system prompt of the load agent " * 8}]
            for turn in range(spec.turns):
                if turn and spec.tool_s:
                    await asyncio.sleep(tools.uniform(0.5, 1.5) * spec.tool_s)
                if budget[0] <= 0 or time.monotonic() >= deadline:
                    return
                budget[0] -= 1
                observation = f"{workflow} turn {turn} " + "observation " * spec.prompt_words
                messages.append({"role": "user", "content": observation})
                headers = {
                    "Authorization": f"Bearer {key}",
                    "X-Saga-Workflow": workflow,
                    "Idempotency-Key": f"{workflow}-{turn}",
                }
                if turn == spec.turns - 1:
                    headers["X-Saga-Workflow-End"] = "true"
                else:
                    headers["X-Saga-Next-Tool"] = "bash"
                body = {
                    "model": "tiny",
                    "max_tokens": spec.max_tokens,
                    "ignore_eos": True,
                    "messages": messages,
                }
                done = await _call(conn, spec, headers, json.dumps(body).encode(), result)
                if done is None:
                    break  # this workflow cannot go on; start the next one
                call_id, usage, latency, answer = done
                messages.append({"role": "assistant", "content": answer})
                result.completed.append(
                    Completed(
                        call_id=call_id,
                        workflow_id=workflow,
                        turn=turn,
                        prompt_tokens=usage["prompt_tokens"],
                        cached_tokens=usage["prompt_tokens_details"]["cached_tokens"],
                        output_tokens=usage["completion_tokens"],
                        latency_s=latency,
                    )
                )
            round_ += 1
    finally:
        conn.close()


async def _call(
    conn: _Conn, spec: RawLoadSpec, headers: dict[str, str], body: bytes, result: RawLoadResult
) -> tuple[str, dict[str, Any], float, str] | None:
    give_up = time.monotonic() + spec.retry_s
    while True:
        t = time.monotonic()
        try:
            status, payload = await conn.post("/v1/chat/completions", headers, body)
        except _Broken as exc:
            status, payload = 0, str(exc).encode()
        if status == 200:
            doc = json.loads(payload)
            answer = str(doc["choices"][0]["message"]["content"])
            return doc["id"], doc["usage"], time.monotonic() - t, answer
        if status not in (0, 503, 409) or time.monotonic() > give_up:
            result.error(str(status) if status else payload.decode())
            return None
        result.retries += 1
        await asyncio.sleep(0.2)
