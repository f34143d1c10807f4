"""The scheduling core's facade: events in, decisions out.

One `Scheduler` holds a system's three policies (routing, ordering,
retention) and the state they share (state.py: how a call is queued, picked
and dispatched). The head and the simulator call the same methods; neither
reads the other's clock: `now` comes in.

Each event costs O(workers + waiting groups + log n); nothing scans all
workflows or calls, so the simulator can push millions of events through it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from saga_hpc.core.cost import CostModel
from saga_hpc.core.ordering import ORDERINGS, Ordering
from saga_hpc.core.queue import GroupedQueue, Waiting
from saga_hpc.core.retention import RETENTIONS, Retention
from saga_hpc.core.routing import ROUTERS, CacheAware, Router, WorkerView
from saga_hpc.core.state import Flow, SchedulerState
from saga_hpc.core.types import (
    CallOutcome,
    CallSpec,
    Decision,
    Release,
    Retain,
    StoryEntry,
    SystemSpec,
    WorkerStats,
)


class Scheduler(SchedulerState):
    """Events in (`add_worker`, `submit`, `complete`, ...), decisions out.

    `system` names the three policies; `router`, `ordering` and `retention`
    objects, when given, replace the ones built from those names (tests,
    custom policies). `block_tokens` sizes prefix hashes for cache-aware
    routing; `ttl_s` is the `ttl` retention's pin; a workflow away longer than
    `abandon_after_s` is given up (its hints released).
    """

    def __init__(
        self,
        system: SystemSpec,
        *,
        router: Router | None = None,
        ordering: Ordering | None = None,
        retention: Retention | None = None,
        cost: CostModel | None = None,
        block_tokens: int = 16,
        ttl_s: float = 10.0,
        abandon_after_s: float = 900.0,
    ) -> None:
        if router is None:
            router = (
                CacheAware(block_tokens)
                if system.routing == "cache-aware"
                else ROUTERS[system.routing]()
            )
        super().__init__(
            router,
            ordering or ORDERINGS[system.ordering](),
            retention or RETENTIONS[system.retention](ttl_s=ttl_s, block_tokens=block_tokens),
            cost or CostModel(),
        )
        self.system = system
        self.system_name = system.name
        self.abandon_after_s = abandon_after_s
        self.stats: dict[str, WorkerStats] = {}
        # (abandon at, workflow, left_at), in order: every entry is `now` plus the same
        # delay, so a FIFO is already sorted (were the driver's clock to step back, an
        # entry would wait behind earlier ones, late by at most the step).
        self._away: deque[tuple[float, str, float]] = deque()
        self._seq = 0
        self._registered = 0

    # -------------------------------------------------------------- workers

    def add_worker(
        self, worker_id: str, *, slots: int, kv_capacity_tokens: int, now: float
    ) -> list[Decision]:
        self._registered += 1
        self.workers[worker_id] = WorkerView(
            worker_id, max(1, slots), kv_capacity_tokens, order=self._registered
        )
        self._views = list(self.workers.values())
        self.queues.setdefault(worker_id, GroupedQueue())
        self.router.add_worker(self.workers[worker_id])
        self._free.add(worker_id)
        self._dirty.add(worker_id)
        waiting, self.unrouted = self.unrouted, []
        for w in waiting:
            self._enqueue(w)
        return self._pump(now, f"worker-{worker_id}-joined")

    def remove_worker(self, worker_id: str, now: float) -> list[Decision]:
        """The worker died or left: its running and waiting calls go elsewhere."""
        view = self.workers.pop(worker_id, None)
        if view is None:
            return []
        self._views = list(self.workers.values())
        self._backlogged.discard(worker_id)
        self._free.discard(worker_id)
        self._dirty.discard(worker_id)
        self.router.forget_worker(worker_id)
        self.stats.pop(worker_id, None)
        orphans = [
            Waiting(spec, now, seq)
            for spec, _, seq in (self.running.pop(cid) for cid in view.running)
        ]
        queue = self.queues.pop(worker_id, GroupedQueue())
        orphans += list(queue.items())
        for w in sorted(orphans, key=lambda w: w.seq):
            if w.spec.call_id in self.waiting_on:
                self._unwait(w.spec.call_id)
            self._enqueue(w)
        return self._pump(now, f"worker-{worker_id}-left")

    def observe(self, stats: WorkerStats, now: float) -> list[Decision]:
        """A worker's KV report. While it says calls wait inside the engine for
        memory, new calls for it wait here instead: in the engine's queue they
        could no longer be reordered by the ordering policy or stolen."""
        self.stats[stats.worker_id] = stats
        view = self.workers.get(stats.worker_id)
        if view is None or view.blocked == stats.memory_blocked:
            return []
        view.blocked = stats.memory_blocked
        if view.blocked:
            self._free.discard(view.worker_id)
            return []
        if view.free() > 0:  # `_free` holds only workers with a free slot
            self._free.add(view.worker_id)
        self._dirty.add(view.worker_id)
        return self._pump(now, f"worker-{view.worker_id}-unblocked")

    # ---------------------------------------------------------------- calls

    def submit(self, spec: CallSpec, now: float) -> list[Decision]:
        stim = f"submit-{spec.call_id}" if self._record_story else ""
        flow = self.flows.get(spec.workflow_id)
        if flow is None:
            flow = self.flows[spec.workflow_id] = Flow(spec.tenant, spec.task_class, now)
        elif flow.away_tool is not None:
            self.retention.on_return(spec, flow.away_tool, now - flow.left_at, flow.calls)
            flow.away_tool = None
        self._seq += 1
        decisions = self._place(spec, now, self._seq, stim, flow)
        if self._record_story:
            self._tell(
                spec.workflow_id,
                now,
                stim,
                "submit",
                f"{spec.prompt_tokens} prompt tokens, {len(spec.prefix_hashes)} full blocks",
                decisions,
            )
        return decisions

    def complete(self, outcome: CallOutcome, now: float) -> list[Decision]:
        stim = f"done-{outcome.call_id}" if self._record_story else ""
        entry = self.running.pop(outcome.call_id, None)
        if entry is None:
            return []
        spec, worker_id, _ = entry
        self._free_slot(worker_id, outcome.call_id)
        service = self.cost.service(
            outcome.prompt_tokens, outcome.cached_tokens, outcome.output_tokens
        )
        self.mean_service_s += 0.05 * (service - self.mean_service_s)
        self.ordering.charge(spec, service)
        decisions: list[Decision] = []
        flow = self.flows.get(spec.workflow_id)
        if flow is not None:
            flow.calls += 1
            decisions += self.retention.on_leave(worker_id, spec, outcome, now, stim, flow.calls)
            if outcome.workflow_done:
                self._forget(spec.workflow_id)
            else:
                flow.away_tool = outcome.next_tool or "unknown"
                flow.left_at = now
                self._away.append((now + self.abandon_after_s, spec.workflow_id, now))
                for d in decisions:
                    if isinstance(d, Retain):
                        flow.retained_on, flow.retain_until = d.worker_id, d.until
        pumped = self._pump(now, stim)
        if pumped:
            decisions += pumped
        if self._record_story:
            self._tell(
                spec.workflow_id,
                now,
                stim,
                "done",
                f"on {worker_id}: {outcome.cached_tokens}/{outcome.prompt_tokens} cached, "
                f"{outcome.output_tokens} out, next tool {outcome.next_tool}",
                decisions,
            )
        return decisions

    def fail(self, call_id: str, now: float) -> list[Decision]:
        """The call is gone (cancelled, or failed for good): free its slot or queue place."""
        stim = f"fail-{call_id}"
        entry = self.running.pop(call_id, None)
        if entry is not None:
            self._free_slot(entry[1], call_id)
        if call_id in self.waiting_on:
            target = self._unwait(call_id)
            self.queues[target].drop(call_id)
        self.unrouted = [w for w in self.unrouted if w.spec.call_id != call_id]
        return self._pump(now, stim)

    def end_workflow(self, workflow_id: str, now: float) -> list[Decision]:
        flow = self.flows.get(workflow_id)
        if flow is None:
            return []
        decisions: list[Decision] = []
        if flow.retained_on is not None and flow.retained_on in self.workers:
            decisions.append(
                Release(flow.retained_on, workflow_id, f"end-{workflow_id}", "workflow ended")
            )
        self._forget(workflow_id)
        return decisions

    def tick(self, now: float) -> list[Decision]:
        """Give up on workflows that never came back (their hints lapsed long ago:
        a Retain carries its own `until`, after which the pool treats the blocks
        as ordinary LRU candidates, so lapsing needs no decision)."""
        decisions: list[Decision] = []
        while self._away and self._away[0][0] <= now:
            _, wf, left_at = self._away.popleft()
            flow = self.flows.get(wf)
            if flow is not None and flow.away_tool is not None and flow.left_at == left_at:
                self.retention.on_abandon(flow.task_class, flow.away_tool, flow.calls)
                decisions += self.end_workflow(wf, now)
        return decisions + self._pump(now, "tick")

    def update_shares(self, shares: Mapping[str, float], now: float) -> list[Decision]:
        self.ordering.update_shares(shares)
        return []

    # ---------------------------------------------------------------- views

    def story(self, workflow_id: str) -> list[StoryEntry]:
        flow = self.flows.get(workflow_id)
        return list(flow.story) if flow is not None else []

    def queue_length(self) -> int:
        return sum(len(q) for q in self.queues.values()) + len(self.unrouted)

    def running_on(self, worker_id: str) -> set[str]:
        view = self.workers.get(worker_id)
        return set(view.running) if view is not None else set()

    # ------------------------------------------------------------- internals

    def _forget(self, workflow_id: str) -> None:
        self.flows.pop(workflow_id, None)
        self.ordering.forget(workflow_id)

    def _tell(
        self,
        workflow_id: str,
        now: float,
        stim: str,
        event: str,
        detail: str,
        decisions: list[Decision],
    ) -> None:
        flow = self.flows.get(workflow_id)
        if flow is not None:
            mine = tuple(d for d in decisions if d.workflow_id == workflow_id)
            flow.story.append(StoryEntry(now, stim, event, detail, mine))
