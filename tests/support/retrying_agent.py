"""An agent as the service documents them (docs/reliability.md): tasks of
streamed and whole calls through the OpenAI client, each call retried with its
Idempotency-Key when it ends in a retryable error; and a `Tracker` of what the
clients saw. Used by the worker-kill test."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import openai

# Output tokens (ignore_eos: exactly these). A worker is killed as it starts a
# stream: a long one is still running when the kill lands (~0.6 s on the tiny
# model; both kills of a run missed every stream in 1 of 11 runs; 700 and 1,000
# tokens did not help and made the head, streaming for 9 agents, run late).
STREAM_TOKENS, WHOLE_TOKENS = 400, 48
TURNS = 4  # calls per agent task (workflow); an agent runs tasks one after another
MAX_CALLS = 60  # per agent: the load is bounded even if the kills never happen
ATTEMPTS = 6  # a client gives up on a call after this many retryable errors


@dataclass
class Outcome:
    call_id: str
    worker: str
    stream: bool
    prompt_tokens: int
    output_tokens: int
    attempts: int


@dataclass
class Tracker:
    """What the clients saw, as they saw it."""

    streaming: dict[str, list[Any]] = field(default_factory=dict)  # key -> [worker, chunks]
    retried: list[tuple[str, int | None, str]] = field(default_factory=list)
    done: dict[str, Outcome] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)  # every call an agent started
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # agents end their task
    # key -> (worker, ended in a retryable error) of each stream attempt
    streams: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)


def output_tokens(stream: bool) -> int:
    return STREAM_TOKENS if stream else WHOLE_TOKENS


def retryable(exc: openai.APIError) -> bool:
    return exc.code == "retryable"


async def stream_call(
    client: openai.AsyncOpenAI, tr: Tracker, key: str, **kw: Any
) -> tuple[str, str, str, Any]:
    raw = await client.chat.completions.with_raw_response.create(
        stream=True, stream_options={"include_usage": True}, **kw
    )
    worker = raw.headers["x-saga-worker"]
    tr.streaming[key] = [worker, 0]
    parts, usage = [], None
    try:
        async for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
                tr.streaming[key][1] += 1
            usage = chunk.usage or usage
    except openai.APIError:
        tr.streams.setdefault(key, []).append((worker, True))
        raise
    finally:
        del tr.streaming[key]
    tr.streams.setdefault(key, []).append((worker, False))
    return raw.headers["x-saga-call-id"], worker, "".join(parts), usage


async def whole_call(client: openai.AsyncOpenAI, **kw: Any) -> tuple[str, str, str, Any]:
    raw = await client.chat.completions.with_raw_response.create(**kw)
    resp = raw.parse()
    text = resp.choices[0].message.content or ""
    return raw.headers["x-saga-call-id"], raw.headers["x-saga-worker"], text, resp.usage


async def agent(url: str, secret: str, account: str, i: int, tr: Tracker) -> None:
    """Runs tasks of TURNS calls until told to stop; turns alternate between
    streamed and whole calls. Each call is retried (same Idempotency-Key) on a
    retryable error; anything else fails the test."""
    client = openai.AsyncOpenAI(base_url=url, api_key=secret, max_retries=0, timeout=120)
    for n in range(MAX_CALLS):
        t = n % TURNS
        if t == 0:
            wf = f"kill-{account}-{i}-{n // TURNS}"
            messages = [
                {"role": "system", "content": "agent " * 150},
                {"role": "user", "content": f"task {wf}"},
            ]
        last = t == TURNS - 1 or tr.stop.is_set() or n == MAX_CALLS - 1
        key, stream = f"{wf}-t{t}", (i + n) % 2 == 0
        tr.issued.append(key)
        headers = {"X-Saga-Workflow": wf, "Idempotency-Key": key}
        headers |= {"X-Saga-Workflow-End": "true"} if last else {"X-Saga-Next-Tool": "bash"}
        kw: dict[str, Any] = {
            "model": "tiny",
            "messages": messages,
            "max_tokens": STREAM_TOKENS if stream else WHOLE_TOKENS,
            "temperature": 0,
            "extra_headers": headers,
            "extra_body": {"ignore_eos": True},
        }
        attempts = 0
        while True:
            attempts += 1
            try:
                if stream:
                    call_id, worker, text, usage = await stream_call(client, tr, key, **kw)
                else:
                    call_id, worker, text, usage = await whole_call(client, **kw)
                break
            except openai.APIError as exc:
                if not retryable(exc):
                    raise
                status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
                tr.retried.append((key, status, exc.message))
                assert attempts < ATTEMPTS, f"{key}: still failing after {ATTEMPTS} attempts"
                await asyncio.sleep(1.0)  # the Retry-After the service sends
        assert usage is not None
        tr.done[key] = Outcome(
            call_id, worker, stream, usage.prompt_tokens, usage.completion_tokens, attempts
        )
        if tr.stop.is_set():
            break
        messages += [
            {"role": "assistant", "content": text},
            {"role": "user", "content": "tool output " * 20},
        ]
        await asyncio.sleep(0.3)  # the tool
    await client.close()
