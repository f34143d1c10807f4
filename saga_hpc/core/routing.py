"""Which worker a call should run on.

- `round-robin`: next worker in turn.
- `least-loaded`: fewest running + waiting calls per slot.
- `affinity`: a workflow stays on the worker that ran its previous call (vLLM
  production-stack session routing), so its prefix is in that worker's cache.
- `cache-aware`: SGLang router: the worker with the longest cached prefix of the
  prompt, unless the load is imbalanced (as sgl-router measures it: pending
  calls per worker, max - min > 64 and max > 1.5 x min), then the one with
  the fewest pending calls.
- `affinity-steal`: SAGA: affinity, and a worker with a free slot and nothing
  of its own to run steals a waiting call when the wait it saves exceeds the
  cost of recomputing the call's prefix there (the scheduler does the steal).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from mypy_extensions import mypyc_attr

from saga_hpc.core.types import CallSpec


@dataclass(slots=True)
class WorkerView:
    worker_id: str
    slots: int
    kv_capacity_tokens: int
    running: set[str] = field(default_factory=set)
    waiting: int = 0  # calls queued at the head for this worker
    order: int = 0  # registration order: deterministic tie-break
    blocked: bool = False  # out of KV memory: no free slot whatever `slots` says

    def concurrency(self) -> int:
        """Calls it serves at once now: its slots, or what fit in memory when blocked."""
        return max(1, len(self.running)) if self.blocked else self.slots

    def load(self) -> float:
        return (len(self.running) + self.waiting) / self.slots

    def free(self) -> int:
        return 0 if self.blocked else self.slots - len(self.running)


# Compiled (saga_hpc/compiled.py), a class takes Python subclasses only if it says so.
@mypyc_attr(allow_interpreted_subclasses=True)
class Router:
    name = "least-loaded"
    steals = False

    def route(
        self, spec: CallSpec, previous: str | None, workers: list[WorkerView]
    ) -> tuple[str, str]:
        """Returns (worker, reason); `previous` is the workflow's last worker, if alive."""
        # min(workers, key=(load, order)) written out: every new workflow scans all
        # workers, and a key function per worker costs more than the comparison.
        best = workers[0]
        low = best.load()
        for w in workers:
            load = w.load()
            if load < low or (load == low and w.order < best.order):
                best, low = w, load
        return best.worker_id, "least loaded"

    def on_dispatch(self, spec: CallSpec, worker_id: str) -> None:
        """The call runs on `worker_id` (its prefix will be cached there)."""

    def add_worker(self, view: WorkerView) -> None:
        """A worker joined."""

    def forget_worker(self, worker_id: str) -> None:
        """The worker left."""


class RoundRobin(Router):
    name = "round-robin"

    def __init__(self) -> None:
        self.turn = 0

    def route(
        self, spec: CallSpec, previous: str | None, workers: list[WorkerView]
    ) -> tuple[str, str]:
        ordered = sorted(workers, key=lambda w: w.order)
        w = ordered[self.turn % len(ordered)]
        self.turn += 1
        return w.worker_id, "round robin"


class Affinity(Router):
    name = "affinity"

    def route(
        self, spec: CallSpec, previous: str | None, workers: list[WorkerView]
    ) -> tuple[str, str]:
        if previous is not None:  # the scheduler passes it only while the worker is alive
            return previous, "affinity"
        worker, _ = super().route(spec, previous, workers)
        return worker, "new workflow: least loaded"


class AffinitySteal(Affinity):
    name = "affinity-steal"
    steals = True


class CacheAware(Router):
    """The router's own model of each worker's cache, as SGLang's router keeps an
    approximate radix tree: the hashes it sent there, LRU, bounded by the worker's
    KV capacity. `holders` indexes it by hash, so matching costs O(prefix + workers).

    Load is sgl-router's: a worker's pending calls (running, and queued for it),
    not per slot. Imbalanced means `max - min > balance_abs` and
    `max > balance_rel * min`, sgl-router's launcher defaults (64 and 1.5,
    `--balance-abs-threshold`, `--balance-rel-threshold`); then the worker with
    the fewest pending calls. Otherwise the longest cached prefix; among the
    workers holding it, the one with the fewest pending calls (sgl-router takes
    the first worker its tree node lists: not load-aware; docs/scheduling.md)."""

    name = "cache-aware"

    def __init__(
        self, block_tokens: int = 16, balance_abs: int = 64, balance_rel: float = 1.5
    ) -> None:
        self.block_tokens = block_tokens
        self.balance_abs = balance_abs
        self.balance_rel = balance_rel
        self.cached: dict[str, OrderedDict[int, None]] = {}
        self.capacity: dict[str, int] = {}  # blocks
        self.holders: dict[int, set[str]] = {}

    def add_worker(self, view: WorkerView) -> None:
        self.capacity[view.worker_id] = max(1, view.kv_capacity_tokens // self.block_tokens)

    def route(
        self, spec: CallSpec, previous: str | None, workers: list[WorkerView]
    ) -> tuple[str, str]:
        # (pending calls, registration order): the least is the fewest pending, ties first.
        loads = {w.worker_id: (len(w.running) + w.waiting, w.order) for w in workers}
        low, high = min(loads.values())[0], max(loads.values())[0]
        if high - low > self.balance_abs and high > self.balance_rel * low:
            return min(loads, key=loads.__getitem__), "load imbalance: fewest pending"
        candidates: set[str] | None = None  # workers holding the longest prefix so far
        matched = 0
        for h in spec.prefix_hashes:
            holders = self.holders.get(h)
            if not holders:
                break
            narrowed = holders & (candidates if candidates is not None else loads.keys())
            if not narrowed:
                break
            candidates, matched = narrowed, matched + 1
        best = min(candidates if candidates is not None else loads, key=loads.__getitem__)
        return best, f"longest cached prefix: {matched} blocks"

    def on_dispatch(self, spec: CallSpec, worker_id: str) -> None:
        cached = self.cached.setdefault(worker_id, OrderedDict())
        # Tail first, so the prefix's head is the most recent: eviction takes leaves.
        for h in reversed(spec.prefix_hashes):
            if h in cached:
                cached.move_to_end(h)
            else:
                cached[h] = None
                self.holders.setdefault(h, set()).add(worker_id)
        limit = self.capacity.get(worker_id, 1 << 30)
        while len(cached) > limit:
            self._unhold(cached.popitem(last=False)[0], worker_id)

    def forget_worker(self, worker_id: str) -> None:
        for h in self.cached.pop(worker_id, {}):
            self._unhold(h, worker_id)
        self.capacity.pop(worker_id, None)

    def _unhold(self, h: int, worker_id: str) -> None:
        holders = self.holders[h]
        holders.discard(worker_id)
        if not holders:
            del self.holders[h]


ROUTERS: dict[str, type[Router]] = {
    "round-robin": RoundRobin,
    "least-loaded": Router,
    "affinity": Affinity,
    "cache-aware": CacheAware,
    "affinity-steal": AffinitySteal,
}
