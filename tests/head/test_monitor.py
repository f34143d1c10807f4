"""A worker's heartbeats that wait in the head's socket while the head's loop is
late still count: the head does not declare a live worker dead for its own delay."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import zmq
import zmq.asyncio

from saga_hpc.core.systems import make_scheduler
from saga_hpc.head.service import HeadService, HeadSettings
from saga_hpc.protocol import Heartbeat, Register, Tokens, encode
from saga_hpc.store.store import Store
from tests.support.store import migrated_store

TIMEOUT_S = 1.0


def beat_from_thread(endpoint: str, stop: threading.Event) -> None:
    """A worker whose heartbeats come on time, whatever the head's loop does."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt_string(zmq.IDENTITY, "w1")
    sock.connect(endpoint)
    sock.send(encode(Register("w1", 1, "n1", 1, "tiny", 8, 10_000, 32, 1.0)))
    while not stop.wait(0.1):
        sock.send(encode(Heartbeat("w1", 0, 0, 100, 0, 0, 0, 0)))
    sock.close(linger=0)
    ctx.term()


async def scenario(store: Store) -> tuple[bool, bool]:
    head = HeadService(
        HeadSettings(heartbeat_s=0.2, worker_timeout_s=TIMEOUT_S),
        store,
        make_scheduler("vllm"),
        "tiny",
    )
    endpoint = head.bind("tcp://127.0.0.1:*")
    head.start()
    stop = threading.Event()
    worker = threading.Thread(target=beat_from_thread, args=(endpoint, stop))
    worker.start()
    try:
        await asyncio.wait_for(head.workers_ready.wait(), 10)
        await asyncio.sleep(0.3)
        time.sleep(TIMEOUT_S + 0.5)  # the head's loop is late; beats queue in its socket
        head._check_workers()  # as the monitor would, before the loop took them in
        alive_after_stall = bool(head.registry.alive())
        stop.set()
        worker.join(5)
        await asyncio.sleep(TIMEOUT_S + 0.5)  # now it is silent: declared dead
        alive_after_silence = bool(head.registry.alive())
    finally:
        stop.set()
        await head.stop(grace_s=0.1)
    return alive_after_stall, alive_after_silence


def test_heartbeats_queued_while_the_head_was_late_count(tmp_path: Path) -> None:
    store = migrated_store(f"sqlite:///{tmp_path / 'saga.db'}")
    alive_after_stall, alive_after_silence = asyncio.run(scenario(store))
    assert alive_after_stall
    assert not alive_after_silence


def test_a_worker_whose_tokens_arrive_is_alive_without_heartbeats(tmp_path: Path) -> None:
    """Its heartbeats late (a starved thread), its call's tokens still coming:
    alive; silent on both counts for the timeout: dead."""
    store = migrated_store(f"sqlite:///{tmp_path / 'saga.db'}")
    head = HeadService(
        HeadSettings(heartbeat_s=0.2, worker_timeout_s=TIMEOUT_S),
        store,
        make_scheduler("vllm"),
        "tiny",
    )
    head.liveness.joined(Register("w1", 1, "n1", 1, "tiny", 8, 10_000, 32, 1.0), b"w1", 100.0)
    # Only what the frame handlers read of an in-flight call.
    head.calls["c1"] = SimpleNamespace(worker_id="w1", stream=False, streamed_tokens=0)  # type: ignore[assignment]
    head._on_message(b"w1", Tokens("c1", "hi", 1))  # at time.time(), long after 100.0
    head.liveness.expire(time.time() + TIMEOUT_S / 2)
    assert [w.worker_id for w in head.registry.alive()] == ["w1"]
    del head.calls["c1"]  # its call over, nothing more comes from it
    head.liveness.expire(time.time() + TIMEOUT_S + 0.5)
    assert head.registry.alive() == []
    head.router.close(linger=0)  # never started: its socket would hold the exit
    head.ctx.term()
    store.close()
