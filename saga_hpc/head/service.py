"""The head's event loop glue: ZeroMQ messages and HTTP calls in, core decisions out.

All state changes happen on the one asyncio loop (no locks); store writes run in
threads and are awaited before a call's completion is released to its client,
so the ledger row exists before the response ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio

from saga_hpc.core.scheduler import Scheduler
from saga_hpc.core.types import CallOutcome, Decision, Dispatch, Release, Retain
from saga_hpc.head.calls import CallContext
from saga_hpc.head.handover import Handover
from saga_hpc.head.ledger import LedgerWriter
from saga_hpc.head.liveness import Liveness
from saga_hpc.head.metrics import HeadMetrics
from saga_hpc.head.workers import WorkerRegistry
from saga_hpc.protocol import (
    Bye,
    Cancel,
    Done,
    Failed,
    Heartbeat,
    Hints,
    ProtocolError,
    Register,
    Shutdown,
    Tokens,
    Welcome,
    decode,
    encode,
)
from saga_hpc.protocol.curve import WorkerGate
from saga_hpc.protocol.messages import Message
from saga_hpc.protocol.rearm import EdgeRearm
from saga_hpc.store.store import CallRecord, Store

log = logging.getLogger("saga_hpc.head")


@dataclass(frozen=True)
class HeadSettings:
    heartbeat_s: float = 1.0
    """How often workers report."""
    worker_timeout_s: float = 5.0
    """Silence after which a worker is declared dead and its calls re-queued."""
    max_attempts: int = 3
    """Dispatches of one call before it fails (worker deaths)."""


class HeadService:
    def __init__(
        self, settings: HeadSettings, store: Store, scheduler: Scheduler, model: str
    ) -> None:
        self.settings = settings
        self.store = store
        self.scheduler = scheduler
        self.model = model
        self.registry = WorkerRegistry(settings.worker_timeout_s)
        self.calls: dict[str, CallContext] = {}
        self.metrics = HeadMetrics()
        self.metrics.track_calls(self.calls_per_worker)
        self.ctx = zmq.asyncio.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 1000)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # The same socket without asyncio's futures, for frames that go at once.
        self._plain: zmq.Socket[bytes] = zmq.Socket.shadow(self.router.underlying)
        self._sends_waiting = 0  # sends through the asyncio socket not yet done
        self._rearm = EdgeRearm(self.router)  # after each send through _plain
        self.workers_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._byes: asyncio.Queue[str] = asyncio.Queue()
        self._background: set[asyncio.Task[None]] = set()
        self.handover = Handover()
        self.ledger = LedgerWriter(store)
        self._gate: WorkerGate | None = None
        self.liveness = Liveness(
            self.registry, scheduler, self.calls, self.metrics, self._apply, settings.max_attempts
        )

    # ------------------------------------------------------------ lifecycle

    def bind(self, address: str, gate: WorkerGate | None = None) -> str:
        """Bind the ROUTER (port 0 = any free port) and return the concrete endpoint.

        With a `gate`, only the service's own workers can connect (CURVE; the
        service always passes one, tests of the head alone may not)."""
        if gate is not None:
            gate.secure(self.router)
            self._gate = gate
        self.router.bind(address)
        return str(self.router.getsockopt_string(zmq.LAST_ENDPOINT))

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._monitor())]
        self.ledger.start()

    async def stop(self, grace_s: float = 20.0) -> None:
        """Tell live workers to finish and wait for their goodbyes."""
        live = {w.worker_id for w in self.registry.alive()}
        for w in self.registry.alive():
            await self._send(w.identity, Shutdown(grace_s=grace_s / 2))
        deadline = time.monotonic() + grace_s
        while live and time.monotonic() < deadline:
            try:
                live.discard(await asyncio.wait_for(self._byes.get(), deadline - time.monotonic()))
            except TimeoutError:
                break
        for task in self._tasks:
            task.cancel()
        await self.ledger.close()
        self.router.close()
        if self._gate is not None:
            self._gate.close()  # its ZAP socket lives in this context
        self.ctx.term()

    def calls_per_worker(self) -> dict[str, tuple[int, int]]:
        """Per live worker: calls it runs (dispatched, not finished), and how many
        of them stream tokens to their client already."""
        calls = {w.worker_id: 0 for w in self.registry.alive()}
        streams = dict(calls)
        for ctx in self.calls.values():
            if ctx.worker_id in calls:
                calls[ctx.worker_id] += 1
                streams[ctx.worker_id] += bool(ctx.stream and ctx.streamed_tokens)
        return {w: (calls[w], streams[w]) for w in calls}

    # ---------------------------------------------------------------- calls

    def submit(self, ctx: CallContext) -> None:
        now = time.time()
        self.calls[ctx.call_id] = ctx
        decisions = self.scheduler.submit(ctx.spec, now)
        if not any(isinstance(d, Dispatch) and d.call_id == ctx.call_id for d in decisions):
            ctx.queued_at = now
        self._apply(decisions)

    def cancel(self, ctx: CallContext) -> None:
        """The client went away before the call finished."""
        if self.calls.pop(ctx.call_id, None) is None:
            return
        worker = self.registry.get(ctx.worker_id) if ctx.worker_id else None
        if worker is not None and worker.alive:
            self._post(worker.identity, Cancel(call_id=ctx.call_id))
        self._apply(self.scheduler.fail(ctx.call_id, time.time()))

    async def _finish(self, ctx: CallContext, done: Done) -> None:
        now = time.time()
        record = CallRecord(
            call_id=ctx.call_id,
            workflow_id=ctx.spec.workflow_id,
            account=ctx.principal.account,
            user=ctx.principal.user,
            model=self.model,
            worker=ctx.worker_id or "",
            prompt_tokens=done.prompt_tokens,
            cached_tokens=done.cached_tokens,
            output_tokens=done.output_tokens,
            arrived_at=ctx.received_at,
            dispatched_at=ctx.dispatched_at or now,
            first_token_at=(ctx.dispatched_at + done.first_token_s)
            if ctx.dispatched_at and done.first_token_s is not None
            else None,
            finished_at=now,
            worker_time_s=done.engine_time_s,
            next_tool=ctx.next_tool,
            engine_queue_s=done.engine_queue_s,
            prefill_s=done.prefill_s,
            decode_s=done.decode_s,
            preemptions=done.preemptions if done.prefill_s is not None else None,
        )
        try:
            if not await self.ledger.record_call(record, finishes_workflow=ctx.workflow_done):
                done = await self._as_billed(done)
        except Exception as exc:  # the client must learn the call was not billed
            log.exception("ledger write failed for %s", ctx.call_id)
            self._apply(self.scheduler.fail(ctx.call_id, now))
            ctx.events.put_nowait(Failed(ctx.call_id, f"accounting store unavailable: {exc}", True))
            return
        outcome = CallOutcome(
            call_id=ctx.call_id,
            worker_id=ctx.worker_id or "",
            finished_at=now,
            prompt_tokens=done.prompt_tokens,
            cached_tokens=done.cached_tokens,
            output_tokens=done.output_tokens,
            next_tool=ctx.next_tool,
            workflow_done=ctx.workflow_done,
        )
        self._apply(self.scheduler.complete(outcome, now))
        # Up to now, not to the Done's arrival: the answer waited for the call's
        # ledger commit, and that wait is the head's as much as the client's.
        answered = time.time()
        overhead = (answered - ctx.received_at) - done.engine_time_s - ctx.queue_wait_s()
        self.metrics.observe_call(ctx, done, overhead)
        ctx.events.put_nowait(done)

    async def _as_billed(self, done: Done) -> Done:
        """A retried call (same Idempotency-Key) that an earlier head billed already:
        it was run again but not billed again; answer with the usage that was billed."""
        billed = await asyncio.to_thread(self.store.billed_tokens, done.call_id)
        if billed is None:
            return done
        prompt, cached, output = billed
        return dataclasses.replace(
            done, prompt_tokens=prompt, cached_tokens=cached, output_tokens=output
        )

    # ------------------------------------------------------------ decisions

    def _apply(self, decisions: list[Decision]) -> None:
        hints: dict[str, Hints] = defaultdict(Hints)
        now = time.time()
        for d in decisions:
            match d:
                case Dispatch():
                    self._dispatch(d, now)
                case Retain():
                    retain = (d.workflow_id, d.until, d.reuse_score, list(d.steps))
                    hints[d.worker_id].retain.append(retain)
                case Release():
                    hints[d.worker_id].release.append(d.workflow_id)
        for worker_id, msg in hints.items():
            worker = self.registry.get(worker_id)
            if worker is not None and worker.alive:
                self._post(worker.identity, msg)

    def _dispatch(self, d: Dispatch, now: float) -> None:
        ctx = self.calls.get(d.call_id)
        worker = self.registry.get(d.worker_id)
        if ctx is None or worker is None or not worker.alive:
            log.error(
                "core dispatched %s to %s, which the head cannot serve", d.call_id, d.worker_id
            )
            return
        ctx.attempts += 1
        ctx.worker_id = d.worker_id
        ctx.dispatched_at = now
        self._post(worker.identity, dataclasses.replace(ctx.submit, priority=d.priority))

    # -------------------------------------------------------------- workers

    async def _receive(self) -> None:
        # Workers send a frame per few tokens of every call: after each wake-up,
        # take every frame already queued through a plain (shadow) socket, since
        # an awaited receive costs a future and a loop round trip per frame.
        while True:
            self._on_frame(*await self.router.recv_multipart())
            self._take_queued(1000)  # then let HTTP have the loop again

    def _take_queued(self, limit: int) -> None:
        """Act on up to `limit` frames already queued in the socket."""
        for _ in range(limit):
            try:
                identity, frame = self._plain.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._on_frame(identity, frame)

    def _on_frame(self, identity: bytes, frame: bytes) -> None:
        try:
            msg = decode(frame)
        except ProtocolError as exc:
            log.error("dropped bad frame from %r: %s", identity, exc)
            return
        self._on_message(identity, msg)

    def _on_message(self, identity: bytes, msg: Message) -> None:
        now = time.time()
        match msg:
            case Register():
                self._post(identity, Welcome(msg.worker_id, self.settings.heartbeat_s))
                self.liveness.joined(msg, identity, now)
                self.workers_ready.set()
            case Heartbeat():
                self.liveness.beat(msg, now)
            case Tokens():
                ctx = self.calls.get(msg.call_id)
                if ctx is not None:
                    # A worker whose tokens arrive is alive, even if its heartbeats
                    # do not (once seen late by 5 s while it streamed: declared dead).
                    self.registry.seen(ctx.worker_id, now)
                    ctx.streamed_tokens = msg.output_tokens
                    if ctx.stream:  # a whole answer waits for Done only: no wake-up per frame
                        ctx.events.put_nowait(msg)
            case Done():
                ctx = self.calls.pop(msg.call_id, None)
                if ctx is not None:
                    self.registry.seen(ctx.worker_id, now)
                    self._spawn(self._finish(ctx, msg))
            case Failed():
                self._on_failed(msg, now)
            case Bye():
                self.liveness.left(msg.worker_id, now)
                self._byes.put_nowait(msg.worker_id)
            case _:
                log.error("unexpected %s from a worker", type(msg).__name__)

    def _on_failed(self, msg: Failed, now: float) -> None:
        ctx = self.calls.pop(msg.call_id, None)
        if ctx is None:
            return
        self._apply(self.scheduler.fail(msg.call_id, now))
        ctx.events.put_nowait(msg)

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s / 2)
            self._check_workers()

    def _check_workers(self) -> None:
        """Declare silent workers dead, after taking in every frame queued.

        When this loop runs late (a burst of calls, a collection), frames wait
        in the socket, a live worker's heartbeats among them, and `_receive`
        may take them in only after this check: a worker would be declared
        dead (and stay out) for the head's own delay."""
        self._take_queued(100_000)
        now = time.time()
        self.liveness.expire(now)
        self._apply(self.scheduler.tick(now))

    async def _send(self, identity: bytes, msg: Message) -> None:
        try:
            await self.router.send_multipart([identity, encode(msg)])
        except zmq.ZMQError as exc:  # worker gone (ROUTER_MANDATORY): the monitor handles it
            log.warning("send %s failed: %s", type(msg).__name__, exc)

    def _post(self, identity: bytes, msg: Message) -> None:
        """Send without a future per message: through the plain socket when it
        can take the frame at once (it nearly always can); otherwise (a worker
        at its high-water mark) through the asyncio socket, which waits. While
        any such send waits, later ones queue behind it, so frames keep their order."""
        frame = [identity, encode(msg)]
        if not self._sends_waiting:
            try:
                self._plain.send_multipart(frame, zmq.NOBLOCK)
                self._rearm.after_send()  # the send may have taken a receive's edge
                return
            except zmq.Again:
                pass
            except zmq.ZMQError as exc:  # worker gone (ROUTER_MANDATORY): the monitor handles it
                log.warning("send %s failed: %s", type(msg).__name__, exc)
                return
        self._sends_waiting += 1
        try:
            sent = asyncio.ensure_future(self.router.send_multipart(frame))
        except zmq.ZMQError as exc:
            self._sends_waiting -= 1
            log.warning("send %s failed: %s", type(msg).__name__, exc)
            return
        sent.add_done_callback(self._sent)

    def _sent(self, sent: asyncio.Future[Any]) -> None:
        self._sends_waiting -= 1
        _log_send_failure(sent)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # The loop keeps only weak references to tasks: hold them until done.
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())


def _log_send_failure(sent: asyncio.Future[Any]) -> None:
    # A worker gone (ROUTER_MANDATORY): the heartbeat monitor handles it.
    if not sent.cancelled() and sent.exception() is not None:
        log.warning("send failed: %s", sent.exception())
