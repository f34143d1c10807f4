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


class _SilentLink:
    """A TCP relay to the head that can fall silent without closing anything:
    the network between a worker and a head whose node was lost."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("tcp://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.silent = False
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"tcp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.silent:
            await self._swallow(reader)
            return
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if self.silent:
                await self._swallow(reader)
                return
            writer.write(data)
            await writer.drain()

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass


async def _a_head_that_falls_silent_is_lost() -> None:
    ctx = zmq.asyncio.Context()
    head = _head(ctx)
    link = _SilentLink(head.getsockopt_string(zmq.LAST_ENDPOINT))
    addr = await link.start()
    dealer = worker_socket(ctx, "w1", None)
    lost: list[float] = []
    watch = HeadWatch(dealer, LOST_AFTER_S, lost.append, ping_s=0.1)
    task = asyncio.create_task(watch.run())
    dealer.connect(addr)
    await dealer.send(b"register")
    assert await asyncio.wait_for(head.recv_multipart(), 5) == [b"w1", b"register"]
    await asyncio.sleep(1.0)  # pings answered through the link: no loss
    assert lost == [] and not task.done()
    link.silent = True  # nothing closes: only the unanswered pings tell
    await asyncio.wait_for(task, 5)
    assert len(lost) == 1
    watch.close()
    dealer.close(linger=0)
    head.close()
    assert link.server is not None
    link.server.close()
    ctx.term()


def test_a_head_that_falls_silent_is_lost() -> None:
    asyncio.run(_a_head_that_falls_silent_is_lost())


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
