"""Calls waiting for a slot, grouped so an ordering policy can pick among groups.

A group is what the ordering policy is fair between: one group for `fcfs`, a
tenant for `vtc`/`afs`, a workflow for `plas`. Inside a group calls leave in
order of an inner key the policy gives (then arrival). Picking costs
O(groups with waiting calls + log n) and removal is lazy, so both drivers stay fast.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from saga_hpc.core.types import CallSpec


@dataclass(slots=True)
class Waiting:
    spec: CallSpec
    since: float
    seq: int  # global arrival order: ties go to the older call
    reason: str = ""  # why the router chose this queue


class GroupedQueue:
    def __init__(self) -> None:
        self._groups: dict[str, list[tuple[float, int, Waiting]]] = {}
        self._dropped: set[str] = set()
        self._size = 0
        # No waiting call has a shorter prompt (a bound, not kept exact on the way
        # out): lets a steal scan pass over a queue without ranking its groups.
        self.min_prompt_tokens = 0

    def __len__(self) -> int:
        return self._size

    def push(self, group: str, item: Waiting, inner: float = 0.0) -> None:
        heapq.heappush(self._groups.setdefault(group, []), (inner, item.seq, item))
        prompt = item.spec.prompt_tokens
        if not self._size or prompt < self.min_prompt_tokens:
            self.min_prompt_tokens = prompt
        self._size += 1

    def drop(self, call_id: str) -> None:
        """Forget a waiting call (cancelled); skipped when it reaches the front."""
        self._dropped.add(call_id)
        self._size -= 1

    def best(self, rank: Callable[[str, Waiting], tuple[float, int]]) -> tuple[str, Waiting] | None:
        """The group whose head ranks lowest, and that head; None when empty."""
        if self._dropped:
            self._skip_dropped()
        groups = self._groups
        if len(groups) == 1:  # nothing to rank (one group is all fcfs ever has)
            for group, q in groups.items():
                return group, q[0][2]
        best: tuple[tuple[float, int], str, Waiting] | None = None
        for group, q in groups.items():
            head = q[0][2]
            r = rank(group, head)
            if best is None or r < best[0]:
                best = (r, group, head)
        return None if best is None else (best[1], best[2])

    def pop(self, group: str) -> Waiting:
        item = heapq.heappop(self._groups[group])[2]
        if not self._groups[group]:
            del self._groups[group]
        self._size -= 1
        return item

    def items(self) -> Iterator[Waiting]:
        for q in self._groups.values():
            for _, _, w in q:
                if w.spec.call_id not in self._dropped:
                    yield w

    def _skip_dropped(self) -> None:
        """Take dropped calls off the fronts, so every group's head is a live call."""
        for group in list(self._groups):
            q = self._groups[group]
            while q and q[0][2].spec.call_id in self._dropped:
                self._dropped.discard(heapq.heappop(q)[2].spec.call_id)
            if not q:
                del self._groups[group]
