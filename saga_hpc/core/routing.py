"""Which worker a call should run on.

- `round-robin`: next worker in turn.
- `least-loaded`: fewest running + waiting calls per slot.
- `affinity`: a workflow stays on the worker that ran its previous call (vLLM
  production-stack session routing), so its prefix is in that worker's cache.
- `cache-aware`: SGLang router: the worker with the longest cached prefix of the
  prompt, unless the load gap between workers exceeds a threshold, then the
  least loaded.
- `affinity-steal`: SAGA: affinity, and a worker with a free slot and nothing
  of its own to run steals a waiting call when the wait it saves exceeds the
  cost of recomputing the call's prefix there (the scheduler does the steal).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from saga_hpc.core.types import CallSpec


@dataclass(slots=True)
class WorkerView:
    worker_id: str
    slots: int
    kv_capacity_tokens: int
    running: set[str] = field(default_factory=set)
    waiting: int = 0  # calls queued at the head for this worker
    order: int = 0  # registration order: deterministic tie-break

    def load(self) -> float:
        return (len(self.running) + self.waiting) / self.slots

    def free(self) -> int:
        return self.slots - len(self.running)


class Router:
    name = "least-loaded"
    steals = False

    def route(
        self, spec: CallSpec, previous: str | None, workers: list[WorkerView]
    ) -> tuple[str, str]:
        """Returns (worker, reason); `previous` is the workflow's last worker, if alive."""
        w = min(workers, key=lambda w: (w.load(), w.order))
        return w.worker_id, "least loaded"

    def on_dispatch(self, spec: CallSpec, worker_id: str) -> None:
        """The call runs on `worker_id` (its prefix will be cached there)."""

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
        if previous is not None and any(w.worker_id == previous for w in workers):
            return previous, "affinity"
        worker, _ = super().route(spec, previous, workers)
        return worker, "new workflow: least loaded"


class AffinitySteal(Affinity):
    name = "affinity-steal"
    steals = True


class CacheAware(Router):
    name = "cache-aware"

    def __init__(self, block_tokens: int = 16, imbalance: float = 1.0) -> None:
        self.block_tokens = block_tokens
        self.imbalance = imbalance  # load gap (calls per slot) above which load wins
        self.cached: dict[str, OrderedDict[int, None]] = {}
        self.capacity: dict[str, int] = {}

    def route(
        self, spec: CallSpec, previous: str | None, workers: list[WorkerView]
    ) -> tuple[str, str]:
        loads = [w.load() for w in workers]
        if max(loads) - min(loads) > self.imbalance:
            worker, _ = super().route(spec, previous, workers)
            return worker, "load imbalance: least loaded"
        best, best_len = None, -1
        for w in sorted(workers, key=lambda w: (w.load(), w.order)):
            n = self._match(w.worker_id, spec.prefix_hashes)
            if n > best_len:
                best, best_len = w, n
        assert best is not None
        return best.worker_id, f"longest cached prefix: {best_len} blocks"

    def _match(self, worker_id: str, hashes: tuple[int, ...]) -> int:
        cached = self.cached.get(worker_id)
        if not cached:
            return 0
        n = 0
        for h in hashes:
            if h not in cached:
                break
            n += 1
        return n

    def on_dispatch(self, spec: CallSpec, worker_id: str) -> None:
        cached = self.cached.setdefault(worker_id, OrderedDict())
        for h in spec.prefix_hashes:
            cached[h] = None
            cached.move_to_end(h)
        limit = self.capacity.get(worker_id, 1 << 30)
        while len(cached) > limit:
            cached.popitem(last=False)

    def forget_worker(self, worker_id: str) -> None:
        self.cached.pop(worker_id, None)


ROUTERS: dict[str, type[Router]] = {
    "round-robin": RoundRobin,
    "least-loaded": Router,
    "affinity": Affinity,
    "cache-aware": CacheAware,
    "affinity-steal": AffinitySteal,
}
