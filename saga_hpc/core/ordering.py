"""Which waiting call runs next when a slot frees.

- `fcfs`: oldest call first (vLLM's default).
- `vtc`: Virtual Token Counter (Sheng et al., OSDI'24): serve the tenant with the
  least service received; a tenant that was idle re-enters at the smallest
  active counter, so it cannot bank credit while away.
- `plas`: Autellix-style least attained service per program: the workflow that
  has received the least service so far goes first (short programs finish early).
- `afs`: Agent Fair Share: VTC weighted by each tenant's Slurm fair-share weight
  (counter = service / weight), and, inside a tenant, the oldest workflow's
  calls first: what a tenant feels is task completion time, and finishing
  started tasks before interleaving new ones shortens it. Bound (docs/scheduling.md):
  while tenants a and b are both
  backlogged, |S_a/w_a - S_b/w_b| <= C_max * (1/w_a + 1/w_b), with C_max the
  largest service of one call.
"""

from __future__ import annotations

from collections.abc import Mapping

from mypy_extensions import mypyc_attr

from saga_hpc.core.queue import Waiting
from saga_hpc.core.types import CallSpec

_MAX_PRIORITY = 2**31 - 1  # vLLM's priority is an int32


# Compiled (saga_hpc/compiled.py), a class takes Python subclasses only if it says so.
@mypyc_attr(allow_interpreted_subclasses=True)
class Ordering:
    """Base: FCFS. Subclasses choose the group of a call and the rank of a group's head."""

    name = "fcfs"

    def group(self, spec: CallSpec) -> str:
        return ""

    def inner(self, spec: CallSpec, workflow_started: float) -> float:
        """Order inside a group (lower first; ties by arrival)."""
        return 0.0

    def rank(self, group: str, head: Waiting) -> tuple[float, int]:
        return (0.0, head.seq)

    def on_enqueue(self, spec: CallSpec, backlogged: Mapping[str, int]) -> None:
        """`backlogged`: waiting calls per group just before this one joined."""

    def charge(self, spec: CallSpec, service: float) -> None:
        """A call of `spec` consumed `service` (slot-seconds)."""

    def forget(self, workflow_id: str) -> None:
        """The workflow ended: drop per-workflow state."""

    def update_shares(self, shares: Mapping[str, float]) -> None:
        """Slurm fair-share weights per tenant (normalised or raw; only ratios matter)."""

    def priority(self, spec: CallSpec, head: Waiting | None = None) -> int:
        """vLLM request priority (lower first) for the engine's own queue."""
        return 0


class Vtc(Ordering):
    name = "vtc"

    def __init__(self) -> None:
        self.counters: dict[str, float] = {}

    def group(self, spec: CallSpec) -> str:
        return spec.tenant

    def weight(self, tenant: str) -> float:
        return 1.0

    def rank(self, group: str, head: Waiting) -> tuple[float, int]:
        return (self.counters.get(group, 0.0), head.seq)

    def on_enqueue(self, spec: CallSpec, backlogged: Mapping[str, int]) -> None:
        if not backlogged:  # nobody waits: no counter to lift to (most calls, at submit)
            return
        tenant = spec.tenant
        if backlogged.get(tenant, 0) == 0:
            # Counter lift: re-enter at the least counter among backlogged tenants.
            active = [
                self.counters.get(t, 0.0) for t, n in backlogged.items() if n > 0 and t != tenant
            ]
            if active:
                self.counters[tenant] = max(self.counters.get(tenant, 0.0), min(active))

    def charge(self, spec: CallSpec, service: float) -> None:
        self.counters[spec.tenant] = self.counters.get(spec.tenant, 0.0) + service / self.weight(
            spec.tenant
        )

    def priority(self, spec: CallSpec, head: Waiting | None = None) -> int:
        p = int(self.counters.get(spec.tenant, 0.0) * 100)
        return p if p < _MAX_PRIORITY else _MAX_PRIORITY


class Plas(Ordering):
    name = "plas"

    def __init__(self) -> None:
        self.attained: dict[str, float] = {}

    def group(self, spec: CallSpec) -> str:
        return spec.workflow_id

    def rank(self, group: str, head: Waiting) -> tuple[float, int]:
        return (self.attained.get(group, 0.0), head.seq)

    def charge(self, spec: CallSpec, service: float) -> None:
        self.attained[spec.workflow_id] = self.attained.get(spec.workflow_id, 0.0) + service

    def forget(self, workflow_id: str) -> None:
        self.attained.pop(workflow_id, None)

    def priority(self, spec: CallSpec, head: Waiting | None = None) -> int:
        return min(int(self.attained.get(spec.workflow_id, 0.0) * 100), 2**31 - 1)


class Afs(Vtc):
    name = "afs"

    def __init__(self) -> None:
        super().__init__()
        self.weights: dict[str, float] = {}

    def inner(self, spec: CallSpec, workflow_started: float) -> float:
        return workflow_started

    def weight(self, tenant: str) -> float:
        # Tenants Slurm does not know yet get the smallest known weight, not zero.
        w = self.weights.get(tenant)
        if w is None or w <= 0:
            return min(self.weights.values(), default=1.0) or 1.0
        return w

    def update_shares(self, shares: Mapping[str, float]) -> None:
        self.weights = {t: float(w) for t, w in shares.items()}


ORDERINGS: dict[str, type[Ordering]] = {"fcfs": Ordering, "vtc": Vtc, "plas": Plas, "afs": Afs}
