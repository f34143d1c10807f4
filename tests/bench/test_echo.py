"""The echo worker honours Submit.stream: a whole answer comes as one Done frame."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import zmq
import zmq.asyncio

from saga_hpc.bench.echo import EchoWorker
from saga_hpc.protocol import Done, Heartbeat, Message, Register, Submit, Tokens, decode, encode

SUBMIT = Submit(
    call_id="c1",
    workflow_id="wf",
    prompt_token_ids=list(range(70)),
    max_tokens=8,
    temperature=0.0,
    top_p=1.0,
    seed=None,
    stop=[],
    priority=0,
    cache_salt="acct-x",
    ignore_eos=True,
)


async def _frames_of_one_call(submit: Submit) -> list[Message]:
    """What an echo worker sends back for `submit` (heartbeats left out)."""
    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = asyncio.Event()
    worker = EchoWorker(f"tcp://127.0.0.1:{port}", "w1", stream_every=2, delay_s=0.001)
    running = asyncio.create_task(worker.run(stop))
    got: list[Message] = []
    try:
        identity, frame = await asyncio.wait_for(router.recv_multipart(), 5)
        assert isinstance(decode(frame), Register)
        await router.send_multipart([identity, encode(submit)])
        while not got or not isinstance(got[-1], Done):
            _, frame = await asyncio.wait_for(router.recv_multipart(), 5)
            msg = decode(frame)
            if not isinstance(msg, Heartbeat):
                got.append(msg)
    finally:
        stop.set()
        await running
        router.close(linger=0)
        ctx.term()
    return got


@pytest.mark.parametrize("stream", [True, False])
def test_tokens_frames_only_for_streamed_calls(stream: bool) -> None:
    frames = asyncio.run(_frames_of_one_call(dataclasses.replace(SUBMIT, stream=stream)))
    tokens = [f for f in frames if isinstance(f, Tokens)]
    done = frames[-1]
    assert isinstance(done, Done)
    assert done.text == "tok " * 8 and done.output_tokens == 8
    if stream:
        assert [t.output_tokens for t in tokens] == [2, 4, 6, 8]
        assert "".join(t.text for t in tokens) == done.text
    else:
        assert tokens == []


def test_repeated_prompt_is_cached_per_salt() -> None:
    worker = EchoWorker("tcp://127.0.0.1:1", "w1", block_size=32)
    assert worker._cached(SUBMIT) == 0
    assert worker._cached(SUBMIT) == 64  # two full blocks of 70 tokens
    assert worker._cached(dataclasses.replace(SUBMIT, cache_salt="acct-y")) == 0
    longer = dataclasses.replace(SUBMIT, prompt_token_ids=[*range(40), 999, *range(60)])
    assert worker._cached(longer) == 32  # the first block matches, the second differs
