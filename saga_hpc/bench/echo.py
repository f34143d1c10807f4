"""An echo engine: a worker that speaks the real ZeroMQ protocol without a model.

For measuring and testing the head itself (auth, validation, streaming shape,
load, crashes) where vLLM would only add its own time: every call returns
`max_tokens` tokens of "tok " after `delay_s` per token, streamed as a `Tokens`
frame every `stream_every` tokens (it sleeps once per frame). Prefix caching
is emulated per cache salt at block granularity, so isolation logic can be
checked cheaply; the real-engine tests check the same with vLLM.

`python -m saga_hpc.bench.echo ENDPOINT --workers N` runs N of them in one
process, which exits when its parent does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from array import array

import uvloop
import zmq
import zmq.asyncio

from saga_hpc.protocol import (
    Bye,
    Cancel,
    Done,
    Heartbeat,
    Message,
    Register,
    Shutdown,
    Submit,
    Tokens,
    decode,
    encode,
)
from saga_hpc.protocol.curve import WorkerCredentials, worker_socket
from saga_hpc.protocol.rearm import EdgeRearm


class EchoWorker:
    def __init__(
        self,
        endpoint: str,
        worker_id: str,
        *,
        slots: int = 16,
        delay_s: float = 0.0,
        block_size: int = 32,
        stream_every: int = 1,
        kv_tokens: int = 65536,
        seen_blocks: set[tuple[str, int]] | None = None,
        credentials: WorkerCredentials | None = None,  # the head's gate: CURVE keys
    ) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.worker_id = worker_id
        self.slots = slots
        self.delay_s = delay_s
        self.block_size = block_size
        self.stream_every = stream_every
        self.kv_tokens = kv_tokens  # KV capacity it reports: the core plans with it
        # Pass one set to several workers to emulate a cache they all share.
        self.seen_blocks = seen_blocks if seen_blocks is not None else set()
        self.served = 0  # calls answered
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.silent = False  # stop heartbeating (simulates a hung worker)
        self.dead = False  # neither answer nor heartbeat (simulates SIGKILL)

    async def run(self, stop: asyncio.Event) -> None:
        ctx = zmq.asyncio.Context()
        sock = worker_socket(ctx, self.worker_id, self.credentials)
        sock.connect(self.endpoint)
        self.sock = sock
        await sock.send(
            encode(
                Register(
                    worker_id=self.worker_id,
                    rank=0,
                    host="fake",
                    pid=os.getpid(),
                    model="tiny",
                    slots=self.slots,
                    kv_capacity_tokens=self.kv_tokens,
                    block_size=self.block_size,
                    engine_start_s=0.0,
                )
            )
        )
        # Frames go in and out through a plain (shadow) socket when they can:
        # an awaited send or receive costs a future and a loop round trip per
        # frame, more than the echo's own work.
        self.plain: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
        self.rearm = EdgeRearm(sock)
        beat = asyncio.create_task(self._beat())
        try:
            leaving = False
            while not (leaving or stop.is_set()):
                if await sock.poll(100):
                    leaving = self._take_frames()
            await sock.send(encode(Bye(worker_id=self.worker_id, reason="shutdown")))
        finally:
            beat.cancel()
            for task in self.tasks.values():
                task.cancel()
            sock.close()
            ctx.term()

    def _take_frames(self) -> bool:
        """Act on every frame queued; True when the head said to shut down."""
        while True:
            try:
                frame = self.plain.recv(zmq.NOBLOCK)
            except zmq.Again:
                return False
            if not self.dead and self._handle(decode(frame)):
                return True

    def _handle(self, msg: Message) -> bool:
        """Act on a frame from the head; True when it says to shut down."""
        if isinstance(msg, Submit):
            self.tasks[msg.call_id] = asyncio.create_task(self._serve(msg))
        elif isinstance(msg, Cancel):
            task = self.tasks.pop(msg.call_id, None)
            if task is not None:
                task.cancel()
        return isinstance(msg, Shutdown)

    async def _send(self, msg: Message) -> None:
        """Send at once when the socket can (it nearly always can); wait only
        when the head is slow to take frames in (the high-water mark)."""
        frame = encode(msg)
        try:
            self.plain.send(frame, zmq.NOBLOCK)
            self.rearm.after_send()  # the send may have taken a receive's edge
        except zmq.Again:
            await self.sock.send(frame)

    def die(self) -> None:
        """Go silent at once, as a killed process would (the socket stays open)."""
        self.dead = self.silent = True
        for task in self.tasks.values():
            task.cancel()

    def _cached(self, msg: Submit) -> int:
        """Tokens of the longest prefix seen before under the same salt. Blocks are
        keyed by a chained hash (as vLLM's are), so memory stays per block, not
        per prefix length, over a long load run."""
        raw = array("I", msg.prompt_token_ids).tobytes()  # one C pass; 4 bytes a token
        step = 4 * self.block_size
        cached = 0
        key: object = msg.cache_salt
        for end in range(step, len(raw) + 1, step):
            key = hash((key, raw[end - step : end]))
            if (msg.cache_salt, key) in self.seen_blocks:
                cached = end // 4
            self.seen_blocks.add((msg.cache_salt, key))
        return cached

    async def _serve(self, msg: Submit) -> None:
        t0 = time.monotonic()
        cached = self._cached(msg)
        with contextlib.suppress(asyncio.CancelledError):
            if msg.stream:
                made = 0
                while made < msg.max_tokens:
                    # One sleep per frame, not per token: the same engine time, and
                    # the echo's own CPU (a timer per token) leaves the cores to the head.
                    step = min(self.stream_every, msg.max_tokens - made)
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s * step)
                    made += step
                    if step == self.stream_every:  # a full frame; the rest comes with Done
                        text = "tok " * step
                        await self._send(Tokens(call_id=msg.call_id, text=text, output_tokens=made))
            elif self.delay_s:  # the client wants the whole answer: no frame until Done
                await asyncio.sleep(self.delay_s * msg.max_tokens)
            await self._send(
                Done(
                    call_id=msg.call_id,
                    text="tok " * msg.max_tokens,
                    prompt_tokens=len(msg.prompt_token_ids),
                    cached_tokens=cached,
                    output_tokens=msg.max_tokens,
                    finish_reason="length",
                    engine_time_s=time.monotonic() - t0,
                    first_token_s=0.0,
                )
            )
            self.served += 1
        self.tasks.pop(msg.call_id, None)

    async def _beat(self) -> None:
        while True:
            if not self.silent:
                await self._send(
                    Heartbeat(
                        worker_id=self.worker_id,
                        running=len(self.tasks),
                        waiting=0,
                        kv_blocks_total=self.kv_tokens // self.block_size,
                        kv_blocks_used=0,
                        kv_blocks_cached=0,
                        prefix_query_tokens=0,
                        prefix_hit_tokens=0,
                    )
                )
            await asyncio.sleep(0.5)


async def _serve_until_orphaned(args: argparse.Namespace) -> None:
    # The keys come on stdin, not the command line, which other users can read.
    credentials = (
        WorkerCredentials.from_dict(json.loads(sys.stdin.readline()))
        if args.credentials_stdin
        else None
    )
    stop = asyncio.Event()
    workers = [
        EchoWorker(
            args.endpoint,
            f"w{i + 1}",
            slots=args.slots,
            delay_s=args.delay,
            stream_every=args.stream_every,
            kv_tokens=args.kv_tokens,
            credentials=credentials,
        )
        for i in range(args.workers)
    ]
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    parent = os.getppid()
    while os.getppid() == parent and not any(t.done() for t in tasks):
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m saga_hpc.bench.echo", description=__doc__)
    p.add_argument("endpoint", help="the head's ZeroMQ endpoint, e.g. tcp://127.0.0.1:5555")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--slots", type=int, default=256, help="concurrent calls per worker")
    p.add_argument("--delay", type=float, default=0.0, help="seconds per output token")
    p.add_argument("--stream-every", type=int, default=1, help="tokens per Tokens frame")
    p.add_argument("--kv-tokens", type=int, default=65536, help="KV capacity per worker")
    p.add_argument(
        "--credentials-stdin",
        action="store_true",
        help="read the head's worker keys (JSON, one line) from stdin",
    )
    args = p.parse_args()
    uvloop.run(_serve_until_orphaned(args))


if __name__ == "__main__":
    main()
