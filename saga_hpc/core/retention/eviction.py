"""Eviction orders of the block pool (`core.blockpool.BlockPool`), one key function each.

As in SGLang's radix cache, a policy is a key: among evictable blocks the
pool evicts the one with the smallest key, and only leaves of a prefix chain
(a block whose children are gone), so a kept block is always reachable.

- `lru`: least recently used first, deeper block first on a tie (vLLM frees
  a request's blocks in reverse order, so a chain's tail goes before its head).
- `ttl`: as `lru`, but blocks of a workflow with a live Retain hint only after
  every other block (Continuum's pin on a tool call).
- `aeg`: blocks of released workflows first, then unhinted ones by LRU, then
  hinted ones by lowest expected reuse per block (the Retain score of SAGA's
  AEG predictor, as its steps have it at `now`).
- `belady`: the block whose next use is furthest in the future first, from an
  oracle over the trace (the offline optimum; simulator only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mypy_extensions import mypyc_attr

from saga_hpc.core.types import score_in_force

Key = tuple[float, float, float]
NextUse = Callable[[int, float], float]
"""`next_use(block_hash, now)`: when the block is next read (inf if never)."""


@dataclass(frozen=True, slots=True)
class Hint:
    """What the pool knows of a workflow from Retain/Release decisions."""

    until: float = 0.0
    score: float = 0.0
    released: bool = False
    steps: tuple[tuple[float, float], ...] = ()  # (from time, score), before `until`

    def score_at(self, now: float) -> float:
        return score_in_force(self.score, self.steps, now)


# Compiled (saga_hpc/compiled.py), a class takes Python subclasses only if it says so.
@mypyc_attr(allow_interpreted_subclasses=True)
class EvictionPolicy:
    """Base: `lru`."""

    name = "lru"
    volatile = False
    """True when a block's key can change with no pool event (re-checked when popped);
    hints lapsing are pool events (the pool re-ranks at expiry)."""

    def key(
        self, block_hash: int, depth: int, last_use: float, hint: Hint | None, now: float
    ) -> Key:
        """Sort key of an evictable block: smallest evicted first."""
        return (0.0, last_use, -depth)


class TtlEviction(EvictionPolicy):
    name = "ttl"

    def key(
        self, block_hash: int, depth: int, last_use: float, hint: Hint | None, now: float
    ) -> Key:
        pinned = hint is not None and hint.until > now
        return (1.0 if pinned else 0.0, last_use, -depth)


class AegEviction(EvictionPolicy):
    name = "aeg"

    def key(
        self, block_hash: int, depth: int, last_use: float, hint: Hint | None, now: float
    ) -> Key:
        if hint is None or (hint.until <= now and not hint.released):
            return (1.0, last_use, -depth)
        if hint.released:
            return (0.0, last_use, -depth)
        return (2.0, hint.score_at(now), last_use)


class BeladyEviction(EvictionPolicy):
    name = "belady"
    volatile = True

    def __init__(self, next_use: NextUse) -> None:
        self.next_use = next_use

    def key(
        self, block_hash: int, depth: int, last_use: float, hint: Hint | None, now: float
    ) -> Key:
        return (-self.next_use(block_hash, now), -depth, last_use)


EVICTIONS: tuple[str, ...] = ("lru", "ttl", "aeg", "belady")


def make_eviction(name: str, next_use: NextUse | None = None) -> EvictionPolicy:
    """The eviction policy registered as `name`; `belady` needs the `next_use` oracle."""
    if name == "belady":
        if next_use is None:
            raise ValueError("belady needs a next_use oracle")
        return BeladyEviction(next_use)
    table: dict[str, type[EvictionPolicy]] = {
        "lru": EvictionPolicy,
        "ttl": TtlEviction,
        "aeg": AegEviction,
    }
    if name not in table:
        raise ValueError(f"unknown eviction policy {name!r}; choose one of {', '.join(EVICTIONS)}")
    return table[name]()
