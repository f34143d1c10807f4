"""Named systems: bundles of one retention, one routing and one ordering policy.

| system | retention | routing | ordering | models |
| --- | --- | --- | --- | --- |
| vllm | lru | affinity | fcfs | vLLM, prefix caching, session router (paper's baseline) |
| saga | aeg | affinity-steal | afs | SAGA |
| sglang | lru | cache-aware | fcfs | SGLang with its cache-aware router |
| continuum | ttl | affinity | fcfs | Continuum (TTL pinning on tool calls) |
| autellix | lru | affinity | plas | Autellix (program-level least attained service) |
"""

from __future__ import annotations

from dataclasses import replace

from saga_hpc.core.cost import CostModel
from saga_hpc.core.ordering import ORDERINGS
from saga_hpc.core.retention import RETENTIONS
from saga_hpc.core.routing import ROUTERS
from saga_hpc.core.scheduler import Scheduler
from saga_hpc.core.types import SystemSpec

__all__ = ["SYSTEMS", "SystemSpec", "make_scheduler"]


SYSTEMS: dict[str, SystemSpec] = {
    s.name: s
    for s in (
        SystemSpec("vllm", "lru", "affinity", "fcfs"),
        SystemSpec("saga", "aeg", "affinity-steal", "afs"),
        SystemSpec("sglang", "lru", "cache-aware", "fcfs"),
        SystemSpec("continuum", "ttl", "affinity", "fcfs"),
        SystemSpec("autellix", "lru", "affinity", "plas"),
    )
}


def make_scheduler(
    system: str | SystemSpec,
    *,
    cost: CostModel | None = None,
    block_tokens: int = 16,
    ttl_s: float = 10.0,
    retention: str | None = None,
    routing: str | None = None,
    ordering: str | None = None,
) -> Scheduler:
    """A scheduler for a named system; `retention=`, `routing=`, `ordering=` override one policy."""
    spec = SYSTEMS[system] if isinstance(system, str) else system
    retention = retention or spec.retention
    routing = routing or spec.routing
    ordering = ordering or spec.ordering
    for kind, name, table in (
        ("retention", retention, RETENTIONS),
        ("routing", routing, ROUTERS),
        ("ordering", ordering, ORDERINGS),
    ):
        if name not in table:
            raise ValueError(
                f"unknown {kind} policy {name!r}; choose one of {', '.join(sorted(table))}"
            )
    return Scheduler(
        replace(spec, retention=retention, routing=routing, ordering=ordering),
        cost=cost,
        block_tokens=block_tokens,
        ttl_s=ttl_s,
    )
