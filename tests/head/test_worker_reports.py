"""The head feeds a worker's memory verdict to the core: calls for a worker whose
engine waits for KV memory stay at the head until it reports room again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import zmq
import zmq.asyncio

from saga_hpc.core.systems import make_scheduler
from saga_hpc.core.types import CallSpec
from saga_hpc.head.calls import CallContext
from saga_hpc.head.service import HeadService, HeadSettings
from saga_hpc.protocol import Heartbeat, Register, Submit, decode, encode
from saga_hpc.store.records import Principal
from saga_hpc.store.store import Store
from tests.support.store import migrated_store


def beat(blocked: bool) -> Heartbeat:
    return Heartbeat("w1", 1, 2 if blocked else 0, 100, 100, 0, 0, 0, memory_blocked=blocked)


def call(call_id: str) -> CallContext:
    spec = CallSpec(call_id, "wf-a", "physics", 3, 8, 0.0, "default", ())
    submit = Submit(call_id, "wf-a", [1, 2, 3], 8, 0.0, 1.0, None, [], 0, "physics")
    return CallContext(spec, Principal("alice", "physics", "k1"), submit, None, True, 0.0)


async def received(sock: zmq.asyncio.Socket, wait_s: float) -> list[str]:
    """Call ids of the Submits that reach the worker within `wait_s`."""
    got: list[str] = []
    while await sock.poll(wait_s * 1000):
        msg = decode(await sock.recv())
        if isinstance(msg, Submit):
            got.append(msg.call_id)
    return got


async def scenario(store: Store) -> tuple[list[str], list[str]]:
    head = HeadService(HeadSettings(), store, make_scheduler("vllm"), "tiny")
    endpoint = head.bind("tcp://127.0.0.1:*")
    head.start()
    worker = head.ctx.socket(zmq.DEALER)
    worker.setsockopt_string(zmq.IDENTITY, "w1")
    worker.connect(endpoint)
    await worker.send(encode(Register("w1", 1, "n1", 1, "tiny", 8, 10_000, 32, 1.0)))
    await head.workers_ready.wait()
    await worker.send(encode(beat(blocked=True)))
    await asyncio.sleep(0.2)
    head.submit(call("c1"))  # a free slot, but the engine has no memory for it
    while_blocked = await received(worker, 0.3)
    await worker.send(encode(beat(blocked=False)))
    after = await received(worker, 0.5)
    worker.close(linger=0)
    await head.stop(grace_s=0.1)
    return while_blocked, after


def test_calls_wait_at_the_head_while_the_worker_reports_memory_blocked(tmp_path: Path) -> None:
    store = migrated_store(f"sqlite:///{tmp_path / 'saga.db'}")
    while_blocked, after = asyncio.run(scenario(store))
    assert while_blocked == []
    assert after == ["c1"]
