"""Work stealing for `affinity-steal` (SAGA), kept apart from the scheduler's
bookkeeping as dask keeps its stealing plugin apart.

An idle worker (a free slot, nothing queued for it) takes the head of another
worker's queue when the wait it saves there, `queued / concurrency x mean
call time`, exceeds recomputing the call's prompt on the thief,
`prompt tokens / prefill rate` (the explicit cost ratio). The gain does not
depend on the thief, so one scan over the backlogged queues decides for all
idle workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saga_hpc.core.queue import Waiting
from saga_hpc.core.routing import WorkerView
from saga_hpc.core.types import Decision

if TYPE_CHECKING:
    from saga_hpc.core.state import SchedulerState

# (time saved, victim, ordering group of the call, the waiting call)
Victim = tuple[float, WorkerView, str, Waiting]


def steal(sched: SchedulerState, stim: str) -> list[Decision]:
    """Dispatch waiting calls to idle workers while a move saves time; the
    thieves in registration order."""
    decisions: list[Decision] = []
    # The gain does not depend on the thief (an idle worker has no queue, so it
    # is never a victim): when no queue is worth stealing from, no idle worker
    # will steal; stop before even listing them, as most pumps do.
    best = best_victim(sched)
    if best is None:
        return decisions
    idle = [v for v in map(sched.workers.__getitem__, sched._free) if v.waiting == 0]
    for thief in sorted(idle, key=lambda v: v.order):
        while thief.free() > 0:
            if best is None:
                best = best_victim(sched)
                if best is None:
                    return decisions
            gain, victim, group, w = best
            best = None
            sched.queues[victim.worker_id].pop(group)
            sched._unwait(w.spec.call_id)
            reason = ""
            if sched.record_story:
                recompute = sched.cost.recompute_s(w.spec.prompt_tokens)
                reason = (
                    f"steal from {victim.worker_id}: wait {gain + recompute:.2f}s > "
                    f"recompute {recompute:.2f}s"
                )
            decisions += sched._dispatch(w.spec, w.seq, thief, reason, stim)
    return decisions


def best_victim(sched: SchedulerState) -> Victim | None:
    """The waiting call whose move saves the most time, over every queue (ties:
    the first worker to register)."""
    best: Victim | None = None
    for wid in sched._backlogged:
        victim = sched.workers[wid]
        queue = sched.queues[wid]
        # The head of the victim's queue waits for a slot there; moving it
        # costs recomputing its prefix here (its blocks stay with the victim).
        wait_s = len(queue) / victim.concurrency() * sched.mean_service_s
        if wait_s - sched.cost.recompute_s(queue.min_prompt_tokens) <= 0:
            continue  # no call there has a prompt short enough to gain: no need to rank
        picked = queue.best(sched.ordering.rank)
        if picked is None:
            continue
        gain = wait_s - sched.cost.recompute_s(picked[1].spec.prompt_tokens)
        if gain > 0 and (
            best is None or gain > best[0] or (gain == best[0] and victim.order < best[1].order)
        ):
            best = (gain, victim, picked[0], picked[1])
    return best
