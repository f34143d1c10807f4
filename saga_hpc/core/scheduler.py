"""The scheduling core's facade: events in, decisions out.

One `Scheduler` holds a system's three policies (routing, ordering,
retention) and the state they share: workers and their slots, calls waiting
for a slot (one queue per target worker), calls running, and per-workflow
state (last worker, when it left on which tool). The head and the simulator
call the same methods; neither reads the other's clock: `now` comes in.

Each event costs O(workers + waiting groups + log n); nothing scans all
workflows or calls, so the simulator can push millions of events through it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from saga_hpc.core.cost import CostModel
from saga_hpc.core.ordering import ORDERINGS, Ordering
from saga_hpc.core.queue import GroupedQueue, Waiting
from saga_hpc.core.retention import RETENTIONS, Retention
from saga_hpc.core.routing import ROUTERS, CacheAware, Router, WorkerView
from saga_hpc.core.stealing import steal
from saga_hpc.core.types import (
    CallOutcome,
    CallSpec,
    Decision,
    Dispatch,
    Release,
    Retain,
    StoryEntry,
    SystemSpec,
    WorkerStats,
)

STORY_LIMIT = 256  # entries kept per workflow


@dataclass(slots=True)
class _Flow:
    """What the core remembers of a live workflow."""

    tenant: str
    task_class: str
    started: float
    last_worker: str | None = None
    calls: int = 0  # calls completed: the position of the last one in the workflow
    away_tool: str | None = None  # tool it left on, None while a call is in flight
    left_at: float = 0.0
    retained_on: str | None = None
    retain_until: float = 0.0
    story: deque[StoryEntry] = field(default_factory=lambda: deque(maxlen=STORY_LIMIT))


class Scheduler:
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
        self.system = system
        self.system_name = system.name
        if router is None:
            router = (
                CacheAware(block_tokens)
                if system.routing == "cache-aware"
                else ROUTERS[system.routing]()
            )
        self.router = router
        self.ordering = ordering or ORDERINGS[system.ordering]()
        self.retention = retention or RETENTIONS[system.retention](
            ttl_s=ttl_s, block_tokens=block_tokens
        )
        self.cost = cost or CostModel()
        self.abandon_after_s = abandon_after_s
        self.workers: dict[str, WorkerView] = {}
        self._views: list[WorkerView] = []  # workers.values() for the router, kept, not rebuilt
        self.stats: dict[str, WorkerStats] = {}
        self.queues: dict[str, GroupedQueue] = {}
        self.unrouted: list[Waiting] = []  # arrived while no worker was alive
        self.waiting_on: dict[str, tuple[str, str]] = {}  # call id -> (target worker, group)
        self.backlog: dict[str, int] = {}  # ordering group -> waiting calls, over all queues
        self._backlogged: set[str] = set()  # workers with calls waiting for them
        self._free: set[str] = set()  # workers with a free slot
        self._dirty: set[str] = set()  # workers that freed a slot or got a call since _pump
        # call id -> (spec, worker, arrival seq): a re-queued call keeps its place in line
        self.running: dict[str, tuple[CallSpec, str, int]] = {}
        self.flows: dict[str, _Flow] = {}
        # (abandon at, workflow, left_at), in order: every entry is `now` plus the same
        # delay, so a FIFO is already sorted (were the driver's clock to step back, an
        # entry would wait behind earlier ones, late by at most the step).
        self._away: deque[tuple[float, str, float]] = deque()
        self._seq = 0
        self._registered = 0
        self.mean_service_s = 1.0  # EWMA of observed call service, for steal decisions
        self.record_story = True

    @property
    def record_story(self) -> bool:
        """Keep each workflow's story, and explain decisions (stimulus ids, reasons).
        The simulator turns it off: millions of events and no reader, and building
        the text would cost more than the decisions themselves."""
        return self._record_story

    @record_story.setter
    def record_story(self, on: bool) -> None:
        self._record_story = on
        self.retention.explain = on

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
            flow = self.flows[spec.workflow_id] = _Flow(spec.tenant, spec.task_class, now)
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

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _place(
        self, spec: CallSpec, now: float, seq: int, stim: str, flow: _Flow
    ) -> list[Decision]:
        """Route a new call (of `flow`, `seq`-th to arrive) and dispatch it, or queue
        it until a slot frees."""
        if not self.workers:
            self.unrouted.append(Waiting(spec, now, seq))
            return self._pump(now, stim)
        target, reason = self._route(spec, flow)
        view = self.workers[target]
        if self._dirty or view.waiting or view.free() <= 0:
            self._queue(Waiting(spec, now, seq, reason), target, flow)
            return self._pump(now, stim)
        # No other worker is ready and this one has a free slot and an empty queue:
        # the pump would pick this call first. Skip the queue's round trip (the
        # ordering still sees the call join), then steal as the pump would.
        self.ordering.on_enqueue(spec, self.backlog)
        decisions = self._dispatch(spec, seq, view, reason, stim, flow)
        if self.router.steals and self._backlogged:
            decisions += steal(self, stim)
        return decisions

    def _route(self, spec: CallSpec, flow: _Flow | None) -> tuple[str, str]:
        previous = flow.last_worker if flow is not None else None
        return self.router.route(spec, previous if previous in self.workers else None, self._views)

    def _enqueue(self, w: Waiting) -> None:
        if not self.workers:
            self.unrouted.append(w)
            return
        flow = self.flows.get(w.spec.workflow_id)
        target, w.reason = self._route(w.spec, flow)
        self._queue(w, target, flow)

    def _queue(self, w: Waiting, target: str, flow: _Flow | None) -> None:
        group = self.ordering.group(w.spec)
        self.ordering.on_enqueue(w.spec, self.backlog)
        started = flow.started if flow is not None else w.since
        self.queues[target].push(group, w, self.ordering.inner(w.spec, started))
        self.waiting_on[w.spec.call_id] = (target, group)
        self.backlog[group] = self.backlog.get(group, 0) + 1
        self.workers[target].waiting += 1
        self._backlogged.add(target)
        self._dirty.add(target)

    def _unwait(self, call_id: str) -> str:
        """Bookkeeping of a call leaving a queue; returns the queue's worker."""
        target, group = self.waiting_on.pop(call_id)
        left = self.backlog[group] - 1
        if left:
            self.backlog[group] = left
        else:
            del self.backlog[group]
        if target in self.workers:
            view = self.workers[target]
            view.waiting -= 1
            if view.waiting == 0:
                self._backlogged.discard(target)
        return target

    def _pump(self, now: float, stim: str) -> list[Decision]:
        """Fill free slots: each worker from its own queue, then (if the router
        steals) idle workers from others' queues when that saves time."""
        decisions: list[Decision] = []
        # After a pump no worker has both a free slot and a call waiting for it,
        # so only workers that freed a slot or got a call since can dispatch now.
        ready = self._dirty & self._backlogged if self._dirty and self._backlogged else ()
        self._dirty.clear()
        # Most pumps follow one event on one worker: nothing to order then.
        for wid in ready if len(ready) < 2 else sorted(ready, key=self._order_of):
            view = self.workers[wid]
            queue = self.queues[wid]
            while view.free() > 0:
                picked = queue.best(self.ordering.rank)
                if picked is None:
                    break
                queue.pop(picked[0])
                self._unwait(picked[1].spec.call_id)
                w = picked[1]
                decisions += self._dispatch(w.spec, w.seq, view, w.reason, stim)
        if self.router.steals and self._backlogged:
            decisions += steal(self, stim)
        return decisions

    def _order_of(self, worker_id: str) -> int:
        return self.workers[worker_id].order

    def _dispatch(
        self,
        spec: CallSpec,
        seq: int,
        view: WorkerView,
        reason: str,
        stim: str,
        flow: _Flow | None = None,
    ) -> list[Decision]:
        """Run the call (`seq`-th to arrive) on `view`'s worker; `flow`: its workflow
        when the caller has it at hand (else looked up)."""
        worker_id = view.worker_id
        view.running.add(spec.call_id)
        if view.free() == 0:
            self._free.discard(worker_id)
        self.running[spec.call_id] = (spec, worker_id, seq)
        if flow is None:
            flow = self.flows.get(spec.workflow_id)
        self.router.on_dispatch(spec, worker_id)
        dispatch = Dispatch(
            spec.call_id,
            spec.workflow_id,
            worker_id,
            self.ordering.priority(spec),
            stim,
            reason,
        )
        if flow is None:
            return [dispatch]
        flow.last_worker = worker_id
        retained_on, flow.retained_on = flow.retained_on, None
        if retained_on is None or retained_on == worker_id or retained_on not in self.workers:
            return [dispatch]
        why = f"moved to {worker_id}" if self._record_story else ""
        return [Release(retained_on, spec.workflow_id, stim, why), dispatch]

    def _free_slot(self, worker_id: str, call_id: str) -> None:
        view = self.workers.get(worker_id)
        if view is not None:
            view.running.discard(call_id)
            self._free.add(worker_id)
            self._dirty.add(worker_id)

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
