"""The discrete-event simulator: N GPUs, one KV pool each, the scheduling core.

Events are call arrivals (a task's first call, or its next call after a tool),
call completions and periodic ticks. The core (`make_scheduler`, the very
objects the head uses) decides where and when calls run and which contexts to
keep; the simulator carries that out on its GPU model (`sim/gpu.py`):

- a GPU runs up to `max_batch` calls; a dispatched call starts when its KV
  blocks fit (evicting cached contexts by the system's eviction policy),
  otherwise it waits on that GPU;
- prefill of the uncached part of the prompt is serialised per GPU (chunked
  prefill shares one compute budget), so recomputing a lost prefix delays
  the GPU's other arrivals too;
- decode runs `output_tokens` steps whose length depends on the batch size
  when the call starts.

Costs are the profile's (docs/simulator.md). Every run is deterministic for a
given task list.
"""

from __future__ import annotations

import heapq
import math
import zlib
from collections import deque
from collections.abc import Callable

from saga_hpc.core.cost import CostModel
from saga_hpc.core.kvpool import KVPool
from saga_hpc.core.systems import SYSTEMS, make_scheduler
from saga_hpc.core.types import (
    CallOutcome,
    CallSpec,
    Decision,
    Dispatch,
    Release,
    Retain,
)
from saga_hpc.nogc import collector_paused
from saga_hpc.sim.events import DueQueue
from saga_hpc.sim.gpu import Gpu, check_fits, report, start
from saga_hpc.sim.profile import GpuProfile
from saga_hpc.sim.records import FIELDS, CallRecord, CallRecords, SimResult
from saga_hpc.sim.task_run import TaskRun
from saga_hpc.workload.model import Task

__all__ = ["EVICTION", "CallRecord", "SimResult", "Simulation"]

EVICTION = {"lru": "lru", "ttl": "ttl", "aeg": "aeg", "belady": "belady"}


class Simulation:
    def __init__(
        self,
        tasks: list[Task],
        system: str,
        gpus: int,
        profile: GpuProfile,
        *,
        retention: str | None = None,
        routing: str | None = None,
        ordering: str | None = None,
        shares: dict[str, float] | None = None,
        tick_s: float = 1.0,
        sample_s: float = 10.0,
    ) -> None:
        if system not in SYSTEMS:
            raise ValueError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")
        self.tasks = sorted(tasks, key=lambda t: t.arrival_s)
        self.profile = profile
        self.n_gpus = gpus
        self.block = profile.block_tokens
        retention_name = retention or SYSTEMS[system].retention
        cost = CostModel(
            prefill_tokens_per_s=profile.prefill_tokens_per_s,
            decode_tokens_per_s=1.0 / profile.step_s(profile.max_batch // 2),
            call_overhead_s=profile.decode_step_s_batch1,
        )
        self.sched = make_scheduler(
            system,
            cost=cost,
            block_tokens=self.block,
            retention=retention,
            routing=routing,
            ordering=ordering,
        )
        self.sched.record_story = False
        # Each task's prompt sizes, computed once here, used by its calls, dropped when it ends.
        with collector_paused():
            self._prompt_sizes = check_fits(tasks, profile)
        self.system = "+".join([system, *(p for p in (retention, routing, ordering) if p)])
        next_use: Callable[[str, float], float] | None = (
            self._next_use if retention_name == "belady" else None
        )
        self.pools = [
            KVPool(profile.kv_blocks, EVICTION[retention_name], next_use) for _ in range(gpus)
        ]
        self.gpus = [Gpu(i) for i in range(gpus)]
        self.worker_ids = [f"g{i}" for i in range(gpus)]
        self._gpu_of_worker = {w: i for i, w in enumerate(self.worker_ids)}
        for w in self.worker_ids:
            self.sched.add_worker(
                w, slots=profile.max_batch, kv_capacity_tokens=profile.kv_tokens, now=0.0
            )
        # Per-call constants computed once: decode step time per batch size, the
        # shared prompt's pool key and prefix hash per tenant and task class.
        self.step_s = [profile.step_s(b) for b in range(profile.max_batch + 2)]
        self.prefill_rate = profile.prefill_tokens_per_s
        self._overhead = profile.call_overhead_s
        self._shared: dict[tuple[str, str], tuple[str, int]] = {}
        weights = shares or {}
        if weights:
            self.sched.update_shares(weights, 0.0)
        self.tick_s, self.sample_s = tick_s, sample_s
        self.queue = DueQueue()  # sim/events.py
        self._runs: dict[str, TaskRun] = {}  # tasks arrived and not finished, by task id
        self.records = CallRecords()
        # each field's column's append, in CallRecord's order (one per call that ends)
        self._columns = tuple(self.records.columns[name].append for name in FIELDS)
        self.tct: dict[str, float] = {}
        self.kv_samples: list[tuple[float, float, float]] = []
        self.misses = 0
        self.recomputed = 0
        self.events = 0

    # ----------------------------------------------------------------- driver

    def run(self) -> SimResult:
        # Millions of long-lived objects that form no cycles (calls, records, heap
        # slots): the cyclic collector is off while the run lasts (saga_hpc.nogc).
        with collector_paused():
            return self._run()

    def _run(self) -> SimResult:
        import time as _time

        t0 = _time.perf_counter()
        # First calls come from the sorted task list, merged with the heap, rather
        # than all pushed up front: a heap of what is in flight, not of the whole
        # trace. A first call goes before a heap event at the same time, as it
        # would with the smaller sequence number of an up-front push.
        tasks, n_tasks, next_task = self.tasks, len(self.tasks), 0
        queue = self.queue
        times, due, also_due = queue.times, queue.due, queue.also_due
        pop, replace = heapq.heappop, heapq.heapreplace
        gpus = self.gpus
        queue.push(0.0, None)
        now = 0.0
        remaining = n_tasks
        next_sample = 0.0
        arrive, finish = self._arrive, self._finish
        stalls = self.profile.prefill_stalls_decode
        n_events = 0
        next_at = tasks[0].arrival_s if tasks else math.inf  # the next first call's arrival
        obj: TaskRun | None
        while times and remaining:
            n_events += 1
            if next_at <= times[0]:
                task = tasks[next_task]
                next_task += 1
                next_at = tasks[next_task].arrival_s if next_task < n_tasks else math.inf
                now = task.arrival_s
                obj = self._begin(task)
            else:
                now = times[0]
                obj = due.pop(now)
                # The event leaves the queue: the next one due at the same time, if
                # any, takes its place.
                if also_due and now in also_due:
                    later = also_due[now]
                    due[now] = later.popleft()
                    if not later:
                        del also_due[now]
                if stalls and obj is not None and obj.finishing:
                    # Does the call end later, by the prefill done on its GPU since its
                    # first token (and, if it is held up, the prefill still ahead)?
                    # sim/gpu.py explains the model; written out here, once per event.
                    gpu = gpus[obj.gpu]
                    queued = gpu.prefill_queued_s
                    ahead = gpu.prefill_free_at - now
                    if ahead < 0.0:
                        ahead = 0.0
                    stall = queued - ahead - obj.prefill_seen
                    if stall > 1e-9:
                        # Prompts were computed on its GPU meanwhile: it comes due again
                        # later. One sift of the heap (pop and push at once), not two.
                        stall += ahead
                        obj.prefill_seen = queued
                        obj.service_s += stall
                        at = now + stall
                        if due.setdefault(at, obj) is not obj:  # something is due then
                            also_due.setdefault(at, deque()).append(obj)
                        replace(times, at)
                        continue
                pop(times)
            if obj is not None:
                if obj.finishing:
                    remaining -= finish(obj, now)
                else:
                    arrive(obj, now)
            else:
                self.apply(self.sched.tick(now), now)
                if now >= next_sample:
                    self._sample(now)
                    next_sample = now + self.sample_s
                queue.push(now + self.tick_s, None)
        self.events += n_events
        return SimResult(
            self.system,
            self.n_gpus,
            self.records,
            self.tct,
            {t.task_id: t.tenant for t in self.tasks},
            self.kv_samples,
            self.misses,
            self.recomputed,
            self.events,
            _time.perf_counter() - t0,
            now,
        )

    # ------------------------------------------------------------------ calls

    def _begin(self, task: Task) -> TaskRun:
        """A task's first call arrives: its per-task state, computed once."""
        # Two coarse "blocks" stand for the prompt's prefix: the shared system prompt
        # and the workflow's own context (per-block hashes would cost O(context) per call).
        shared_key, shared_hash = self._shared_prefix(task)
        run = self._runs[task.task_id] = TaskRun(
            task,
            self._prompt_sizes.pop(task.task_id, []) or task.prompt_tokens(),
            (shared_hash, zlib.crc32(task.task_id.encode())),
            shared_key,
            task.system_tokens // self.block,
        )
        # Its first call (index 0, nothing of its own context to reuse); `_finish`
        # makes each next one.
        run.call_id = f"{task.task_id}#0"
        run.prompt = prompt = run.prompts[0]
        run.out = out = task.steps[0].output_tokens
        run.arrived = task.arrival_s
        run.own_blocks = -(-(prompt - task.system_tokens + out) // self.block)  # ceil
        return run

    def _arrive(self, run: TaskRun, now: float) -> None:
        task = run.task
        spec = CallSpec(
            run.call_id,
            task.task_id,
            task.tenant,
            run.prompt,
            run.out,
            now,
            task.task_class,
            # Its own context begins with its first prompt (the task statement after the
            # system prompt): routing that matches prefixes sends its next call there.
            run.hashes,
        )
        left = run.left_gpu
        if left >= 0:
            # Its context waits for it (the engine or the head holds the call):
            # evicted last, as vLLM keeps a waiting request's prefix in its queue.
            self.pools[left].want(task.task_id, now)
            run.wanted_on = left
        self.apply(self.sched.submit(spec, now), now)

    def apply(self, decisions: list[Decision], now: float) -> None:
        gpu_of_worker, queue = self._gpu_of_worker, self.queue
        for d in decisions:
            if isinstance(d, Dispatch):
                run = self._runs[d.workflow_id]  # its one call in flight is the one dispatched
                run.gpu = g = gpu_of_worker[d.worker_id]
                gpu = self.gpus[g]
                wanted_on, run.wanted_on = run.wanted_on, -1
                if wanted_on >= 0 and wanted_on != g:
                    # moved (stolen): the old copy is no longer awaited
                    self.pools[wanted_on].unwant(d.workflow_id, now)
                if not gpu.pending:
                    finish_at = start(self, run, now)
                    if finish_at is not None:
                        run.finishing = True
                        queue.push(finish_at, run)
                        continue
                # It waits on this GPU (FIFO) until a call there ends.
                gpu.pending.append(run)
                self.pools[g].want(d.workflow_id, now)
                if not gpu.blocked:
                    report(self, gpu, True, now)
            elif isinstance(d, Retain):
                pool = self.pools[gpu_of_worker[d.worker_id]]
                pool.retain(d.workflow_id, d.until, d.reuse_score, now, d.steps)
            elif isinstance(d, Release):
                self.pools[gpu_of_worker[d.worker_id]].release(d.workflow_id, now)

    def _finish(self, run: TaskRun, now: float) -> int:
        g = run.gpu
        task = run.task
        task_id = task.task_id
        gpu = self.gpus[g]
        gpu.running -= 1
        pool = self.pools[g]
        index, steps = run.index, task.steps
        last = index == len(steps) - 1
        step = steps[index]
        # The agent learns of the answer `call_overhead_s` later (HTTP, head).
        back = now + self._overhead + step.tool_s
        # The oracle must know the context's next use before the pool ranks it.
        if last:
            del self._runs[task_id]
        else:
            run.next_arrival = back
        cached = pool.finish(task_id, now, run.shared_key)
        prompt, hit, out = run.prompt, run.hit, run.out
        task_ids, tenants, arrived, ttft, tpot, finished, prompts, hits, outs, services = (
            self._columns
        )
        task_ids(task_id)
        tenants(task.tenant)
        arrived(run.arrived)
        ttft(run.first_token - run.arrived)
        tpot(self.step_s[gpu.running + 1])
        finished(now)
        prompts(prompt)
        hits(hit)
        outs(out)
        services(run.service_s)
        outcome = CallOutcome(
            run.call_id,
            self.worker_ids[g],
            now,
            prompt,
            hit,
            out,
            None if last else (step.tool or "tool"),
            last,
        )
        if not last:
            run.left_gpu, run.left_blocks = g, cached
            run.next_call(back, self.block)
            run.finishing = False
            self.queue.push(back, run)
        else:
            self.tct[task_id] = now + self._overhead - task.arrival_s
            for other in run.gpus:
                self.pools[other].retire(task_id)
        self.apply(self.sched.complete(outcome, now), now)
        pending = gpu.pending
        while pending:
            waiting = pending[0]
            finish_at = start(self, waiting, now)
            if finish_at is None:
                break
            waiting.finishing = True
            self.queue.push(finish_at, waiting)
            pending.popleft()
        if gpu.blocked and not pending:
            report(self, gpu, False, now)
        return 1 if last else 0

    # ---------------------------------------------------------------- helpers

    def _shared_prefix(self, task: Task) -> tuple[str, int]:
        """The pool key of the shared system prompt of a task's tenant and class
        (tenants never share cached blocks: the service salts each account's
        prefixes, `cache_salt`, so each tenant's copy is its own entry), and its
        prefix hash for routing, salted by tenant like the head's."""
        who = (task.tenant, task.task_class)
        shared = self._shared.get(who)
        if shared is None:
            name = f"{task.tenant}:{task.task_class}"
            shared = self._shared[who] = (f"sys:{name}", zlib.crc32(name.encode()))
        return shared

    def _next_use(self, key: str, now: float) -> float:
        """Belady's oracle: when this context is needed next (inf: never)."""
        if key.startswith("sys:"):
            return now
        run = self._runs.get(key)
        if run is None:
            return math.inf
        return now if run.next_arrival is None else run.next_arrival

    def _sample(self, now: float) -> None:
        cap = sum(p.capacity for p in self.pools)
        used = sum(p.used for p in self.pools)
        # Useful: blocks of contexts that can still be reused (live workflows, shared prompts).
        useful = sum(p.useful for p in self.pools)
        self.kv_samples.append((now, used / cap, useful / cap))
