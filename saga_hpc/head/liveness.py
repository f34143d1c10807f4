"""Workers' lives as the head sees them: a worker joins (Register), reports
(Heartbeat), leaves (Bye) or falls silent and is declared dead. The calls a
death cuts short run again elsewhere when their clients saw nothing of them,
or end with a retryable error; with no worker left, every call does."""

from __future__ import annotations

import logging
from collections.abc import Callable

from saga_hpc.core.scheduler import Scheduler
from saga_hpc.core.types import Decision, WorkerStats
from saga_hpc.head.calls import CallContext
from saga_hpc.head.metrics import HeadMetrics
from saga_hpc.head.workers import WorkerRegistry
from saga_hpc.protocol import Failed, Heartbeat, Register

log = logging.getLogger("saga_hpc.head")

NO_WORKER = "no worker is alive to run it (all died or left)"


class Liveness:
    """Keeps `registry` and the core's workers in step with the workers' lives,
    and settles `calls` (the head's calls in flight) when a worker dies or leaves.
    `apply` carries out the core's decisions (the head's); a call is dispatched
    at most `max_attempts` times before a death ends it."""

    def __init__(
        self,
        registry: WorkerRegistry,
        scheduler: Scheduler,
        calls: dict[str, CallContext],
        metrics: HeadMetrics,
        apply: Callable[[list[Decision]], None],
        max_attempts: int,
    ) -> None:
        self.registry = registry
        self.scheduler = scheduler
        self.calls = calls
        self.metrics = metrics
        self._apply = apply
        self.max_attempts = max_attempts

    def joined(self, msg: Register, identity: bytes, now: float) -> None:
        self.registry.register(msg, identity, now)
        cap = msg.kv_capacity_tokens
        self._apply(
            self.scheduler.add_worker(
                msg.worker_id, slots=msg.slots, kv_capacity_tokens=cap, now=now
            )
        )
        self.metrics.worker_started(msg)
        log.info(
            "worker %s on %s registered (engine start %.1f s)",
            msg.worker_id,
            msg.host,
            msg.engine_start_s,
        )

    def beat(self, msg: Heartbeat, now: float) -> None:
        self.registry.seen(msg.worker_id, now, msg)
        self._apply(self.scheduler.observe(_stats(msg), now))

    def left(self, worker_id: str, now: float) -> None:
        """The worker said goodbye (its calls are done or handed back)."""
        self._apply(self.scheduler.remove_worker(worker_id, now))
        gone = self.registry.remove(worker_id)
        if gone is not None and gone.alive:
            self.metrics.worker_left(worker_id)
        self._fail_if_no_worker(now)

    def expire(self, now: float) -> None:
        """Declare workers silent for longer than the timeout dead."""
        for dead in self.registry.expire(now):
            log.warning(
                "worker %s silent for %.1f s: marked dead", dead.worker_id, now - dead.last_seen
            )
            self.metrics.worker_died(dead.worker_id)
            self._requeue_from(dead.worker_id, now)

    def _requeue_from(self, worker_id: str, now: float) -> None:
        """A worker died: calls that streamed nothing yet run elsewhere; others fail retryably."""
        lost = [c for c in self.calls.values() if c.worker_id == worker_id]
        for ctx in lost:
            if (ctx.stream and ctx.streamed_tokens) or ctx.attempts >= self.max_attempts:
                # Tokens already reached a streaming client: replaying elsewhere
                # would duplicate them, so the client retries the whole call.
                self._interrupt(ctx, f"worker {worker_id} died mid-call", now)
            else:
                ctx.worker_id = None
                ctx.queued_at = now
                ctx.streamed_tokens = 0
                self.metrics.requeued.inc()
        self._apply(self.scheduler.remove_worker(worker_id, now))
        self._fail_if_no_worker(now)

    def _fail_if_no_worker(self, now: float) -> None:
        """The last worker is gone: the calls still waiting would wait for one that
        may never come (MPI cannot add ranks to a running job), so the clients
        retry instead (the API refuses new calls meanwhile)."""
        if self.registry.alive():
            return
        for ctx in list(self.calls.values()):
            self._interrupt(ctx, NO_WORKER, now)

    def _interrupt(self, ctx: CallContext, reason: str, now: float) -> None:
        """End a call its worker's death cut short with a retryable error."""
        del self.calls[ctx.call_id]
        self._apply(self.scheduler.fail(ctx.call_id, now))
        self.metrics.interrupted.inc()
        ctx.events.put_nowait(Failed(ctx.call_id, reason, True))


def _stats(hb: Heartbeat) -> WorkerStats:
    return WorkerStats(
        worker_id=hb.worker_id,
        kv_blocks_total=hb.kv_blocks_total,
        kv_blocks_used=hb.kv_blocks_used,
        kv_blocks_cached=hb.kv_blocks_cached,
        prefix_query_tokens=hb.prefix_query_tokens,
        prefix_hit_tokens=hb.prefix_hit_tokens,
        running=hb.running,
        waiting=hb.waiting,
        memory_blocked=hb.memory_blocked,
    )
