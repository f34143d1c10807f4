"""HeadWatch on real ZeroMQ sockets: a worker's DEALER, a head's ROUTER that
goes away (closed as a dead process's socket is), and one that comes back."""

from __future__ import annotations

import asyncio
import time

import pytest
import zmq
import zmq.asyncio

from saga_hpc.protocol.curve import worker_socket
from saga_hpc.worker import headwatch
from saga_hpc.worker.headwatch import HeadWatch

LOST_AFTER_S = 0.6


def _head(ctx: zmq.asyncio.Context, addr: str = "tcp://127.0.0.1:*") -> zmq.asyncio.Socket:
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(addr)
    return router


async def _watch(
    dealer: zmq.asyncio.Socket, lost: list[float]
) -> tuple[HeadWatch, asyncio.Task[None]]:
    watch = HeadWatch(dealer, LOST_AFTER_S, lost.append)
    return watch, asyncio.create_task(watch.run())


async def _connected(
    ctx: zmq.asyncio.Context,
) -> tuple[zmq.asyncio.Socket, zmq.asyncio.Socket, HeadWatch, asyncio.Task[None], list[float]]:
    head = _head(ctx)
    dealer = worker_socket(ctx, "w1", None)
    lost: list[float] = []
    watch, task = await _watch(dealer, lost)
    dealer.connect(head.getsockopt_string(zmq.LAST_ENDPOINT))
    await dealer.send(b"register")
    assert await head.recv_multipart() == [b"w1", b"register"]
    return head, dealer, watch, task, lost


async def _a_head_that_is_gone_is_lost_after_the_timeout() -> None:
    ctx = zmq.asyncio.Context()
    head, dealer, watch, task, lost = await _connected(ctx)
    await asyncio.sleep(LOST_AFTER_S * 1.5)
    assert lost == [] and not task.done()  # connected: no deadline runs
    t0 = time.monotonic()
    head.close()
    await asyncio.wait_for(task, 5)
    assert len(lost) == 1 and lost[0] >= LOST_AFTER_S
    assert LOST_AFTER_S <= time.monotonic() - t0 < LOST_AFTER_S + 1.0
    watch.close()
    dealer.close(linger=0)
    ctx.term()


async def _a_head_back_at_its_address_in_time_is_no_loss() -> None:
    ctx = zmq.asyncio.Context()
    head, dealer, watch, task, lost = await _connected(ctx)
    addr = head.getsockopt_string(zmq.LAST_ENDPOINT)
    head.close()
    await asyncio.sleep(LOST_AFTER_S / 3)
    head = _head(ctx, addr)  # ZeroMQ reconnects every 100 ms
    await dealer.send(b"again")
    assert (await asyncio.wait_for(head.recv_multipart(), 5))[1] == b"again"
    await asyncio.sleep(LOST_AFTER_S * 2)
    assert lost == [] and not task.done()
    task.cancel()
    watch.close()
    head.close()
    dealer.close(linger=0)
    ctx.term()


async def _a_head_never_reached_is_lost_too() -> None:
    ctx = zmq.asyncio.Context()
    probe = _head(ctx)
    addr = probe.getsockopt_string(zmq.LAST_ENDPOINT)
    probe.close()  # a port nobody listens on any more
    dealer = worker_socket(ctx, "w1", None)
    lost: list[float] = []
    watch, task = await _watch(dealer, lost)
    dealer.connect(addr)
    await asyncio.wait_for(task, 5)
    assert len(lost) == 1
    watch.close()
    dealer.close(linger=0)
    ctx.term()


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 30.0), ("2.5", 2.5), ("0", 30.0), ("x", 30.0)]
)
def test_the_timeout_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str | None, expected: float
) -> None:
    if raw is None:
        monkeypatch.delenv(headwatch.LOST_AFTER_ENV, raising=False)
    else:
        monkeypatch.setenv(headwatch.LOST_AFTER_ENV, raw)
    assert headwatch.lost_after_s() == expected


def test_a_head_that_is_gone_is_lost_after_the_timeout() -> None:
    asyncio.run(_a_head_that_is_gone_is_lost_after_the_timeout())


def test_a_head_back_at_its_address_in_time_is_no_loss() -> None:
    asyncio.run(_a_head_back_at_its_address_in_time_is_no_loss())


def test_a_head_never_reached_is_lost_too() -> None:
    asyncio.run(_a_head_never_reached_is_lost_too())
