"""The scheduler's state, and how a call moves through it: routed to a worker's
queue, picked for a free slot in the ordering policy's order, dispatched.

`Scheduler` (scheduler.py) turns events into these moves; work stealing
(stealing.py) moves a waiting call from one worker's queue to an idle worker.
The state is shared by the three policies (routing, ordering, retention):
workers and their slots, calls waiting for a slot (one queue per target
worker), calls running, and per-workflow state (last worker, when it left on
which tool).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from saga_hpc.core.cost import CostModel
from saga_hpc.core.ordering import Ordering
from saga_hpc.core.queue import GroupedQueue, Waiting
from saga_hpc.core.retention import Retention
from saga_hpc.core.routing import Router, WorkerView
from saga_hpc.core.stealing import steal
from saga_hpc.core.types import CallSpec, Decision, Dispatch, Release, StoryEntry

STORY_LIMIT = 256  # entries kept per workflow


@dataclass(slots=True)
class Flow:
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


class SchedulerState:
    """The state the policies share, and the moves of a call through it."""

    def __init__(
        self, router: Router, ordering: Ordering, retention: Retention, cost: CostModel
    ) -> None:
        self.router = router
        self.ordering = ordering
        self.retention = retention
        self.cost = cost
        self.workers: dict[str, WorkerView] = {}
        self._views: list[WorkerView] = []  # workers.values() for the router, kept, not rebuilt
        self.queues: dict[str, GroupedQueue] = {}
        self.unrouted: list[Waiting] = []  # arrived while no worker was alive
        self.waiting_on: dict[str, tuple[str, str]] = {}  # call id -> (target worker, group)
        self.backlog: dict[str, int] = {}  # ordering group -> waiting calls, over all queues
        self._backlogged: set[str] = set()  # workers with calls waiting for them
        self._free: set[str] = set()  # workers with a free slot
        self._dirty: set[str] = set()  # workers that freed a slot or got a call since _pump
        # call id -> (spec, worker, arrival seq): a re-queued call keeps its place in line
        self.running: dict[str, tuple[CallSpec, str, int]] = {}
        self.flows: dict[str, Flow] = {}
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

    # ------------------------------------------------------- a call's moves

    def _place(self, spec: CallSpec, now: float, seq: int, stim: str, flow: Flow) -> list[Decision]:
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

    def _route(self, spec: CallSpec, flow: Flow | None) -> tuple[str, str]:
        previous = flow.last_worker if flow is not None else None
        return self.router.route(spec, previous if previous in self.workers else None, self._views)

    def _enqueue(self, w: Waiting) -> None:
        if not self.workers:
            self.unrouted.append(w)
            return
        flow = self.flows.get(w.spec.workflow_id)
        target, w.reason = self._route(w.spec, flow)
        self._queue(w, target, flow)

    def _queue(self, w: Waiting, target: str, flow: Flow | None) -> None:
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
        flow: Flow | None = None,
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
