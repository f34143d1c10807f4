"""Only the service's own workers join its head: a process with other keys, or
none, that connects to the head's port and registers is never registered nor
handed a call. Real ZeroMQ sockets on 127.0.0.1 and the real HeadService."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import zmq

from saga_hpc.core.systems import make_scheduler
from saga_hpc.head.service import HeadService, HeadSettings
from saga_hpc.protocol import Register, encode
from saga_hpc.protocol.curve import ChannelKeys, WorkerCredentials, WorkerGate, worker_socket
from saga_hpc.store.store import Store
from tests.support.store import migrated_store


def register(worker_id: str) -> bytes:
    return encode(Register(worker_id, 1, "n1", 1, "tiny", 8, 10_000, 32, 1.0))


def dealer(
    ctx: zmq.Context[Any], endpoint: str, worker_id: str, creds: WorkerCredentials | None
) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = worker_socket(ctx, worker_id, creds)
    sock.connect(endpoint)
    return sock


async def scenario(store: Store) -> tuple[set[str], set[str]]:
    keys = ChannelKeys.generate()
    head = HeadService(HeadSettings(), store, make_scheduler("vllm"), "tiny")
    endpoint = head.bind("tcp://127.0.0.1:*", WorkerGate(keys))
    head.start()
    ctx: zmq.Context[Any] = zmq.Context()  # plain sockets: a send never waits
    own = dealer(ctx, endpoint, "w1", keys.workers)
    other_pub, other_sec = zmq.curve_keypair()
    # Knows the head's public key (it is no secret) but not the workers' pair.
    impostor = dealer(
        ctx,
        endpoint,
        "impostor",
        WorkerCredentials(keys.server_public, other_pub.decode(), other_sec.decode()),
    )
    plain = dealer(ctx, endpoint, "plain", None)
    own.send(register("w1"))
    await asyncio.wait_for(head.workers_ready.wait(), 5)
    # The others' frames wait in their own sockets for a handshake that fails
    # (or cannot even be queued once it has failed).
    for sock, name in ((impostor, "impostor"), (plain, "plain")):
        with contextlib.suppress(zmq.Again):
            sock.send(register(name), zmq.NOBLOCK)
    await asyncio.sleep(1.0)
    alive = {w.worker_id for w in head.registry.alive()}
    # A head without the gate takes the same plain Register at once.
    open_head = HeadService(HeadSettings(), store, make_scheduler("vllm"), "tiny")
    open_endpoint = open_head.bind("tcp://127.0.0.1:*")
    open_head.start()
    plain_to_open = dealer(ctx, open_endpoint, "plain", None)
    plain_to_open.send(register("plain"))
    await asyncio.wait_for(open_head.workers_ready.wait(), 5)
    open_alive = {w.worker_id for w in open_head.registry.alive()}
    for sock in (own, impostor, plain, plain_to_open):
        sock.close()
    ctx.term()
    await head.stop(grace_s=0.1)
    await open_head.stop(grace_s=0.1)
    return alive, open_alive


def test_only_the_services_own_workers_can_register(tmp_path: Path) -> None:
    store = migrated_store(f"sqlite:///{tmp_path / 'saga.db'}")
    alive, open_alive = asyncio.run(scenario(store))
    assert alive == {"w1"}
    assert open_alive == {"plain"}  # the check is the gate, not the test's sockets


def test_credentials_travel_as_plain_strings() -> None:
    keys = ChannelKeys.generate()
    doc = keys.workers.to_dict()
    assert WorkerCredentials.from_dict(doc) == keys.workers
    assert all(isinstance(v, str) and len(v) == 40 for v in doc.values())  # Z85 of 32 bytes
    assert keys.server_secret not in doc.values()
