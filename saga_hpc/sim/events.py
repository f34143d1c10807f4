"""The simulator's event queue: what is due when.

Due times sit on a heap of plain floats (a float sifts faster than a (time,
sequence, ...) tuple, whose comparison first asks whether the times are
equal), what is due at each time in `due`. Events due at the same time leave
in the order they were pushed, as a sequence number would order them: the
first in `due`, later ones queued in `also_due` (rare). A float is hashed on
every lookup: one per push and one per pop (`setdefault`, `pop`).

A run is due once at a time: its next call's arrival, or its call's end
(`TaskRun.finishing`); None is a tick. The engine's loop pops inline, once
per event, and re-queues a stalled call inline too (one heap sift for the pop
and the push).
"""

from __future__ import annotations

import heapq
from collections import deque

from saga_hpc.sim.task_run import TaskRun


class DueQueue:
    __slots__ = ("also_due", "due", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.due: dict[float, TaskRun | None] = {}
        self.also_due: dict[float, deque[TaskRun | None]] = {}

    def push(self, at: float, obj: TaskRun | None) -> None:
        """`obj` (a run, None: a tick) is due `at`, after what is due then already."""
        if self.due.setdefault(at, obj) is not obj:  # something is due then already
            self.also_due.setdefault(at, deque()).append(obj)
        heapq.heappush(self.times, at)
