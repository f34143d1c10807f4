"""Retention holds on a vLLM block pool: keep a workflow's cached blocks while it is away.

vLLM has no API to pin prefix blocks; a block stays out of the free-block LRU
as long as something holds a reference to it. `BlockHolds` is that something:
it remembers the hashed blocks of each workflow's last request, takes one
reference on them when the head says the workflow will return (`hold`), and
gives it back when the workflow's next request has picked the blocks up, when
the hint lapses, or when the head says the workflow will not return
(`release(..., evict_first=True)` then moves its unshared blocks ahead of
every other cached block in the free queue, so they are evicted before anyone
else's, yet after the blocks that cache nothing: while memory is not short,
an ended workflow's prefix stays a cache hit for whoever sends it next).

It touches only `BlockPool.touch`, `BlockPool.free_blocks` and the free
queue's `remove` / `prepend_n` of vLLM 0.32 (see `hint_scheduler.check_vllm`).
Holds are bounded by `budget_blocks` references; the lowest score goes first,
each hold's score the one its hint's steps put in force at the time (the AEG's
score as the workflow stays away, as the simulator's pools apply it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from saga_hpc.core.types import score_in_force

Block = Any  # vllm.v1.core.kv_cache_utils.KVCacheBlock
Pool = Any  # vllm.v1.core.block_pool.BlockPool


Steps = Sequence[Sequence[float]]  # (time, score from then on), time increasing


@dataclass(slots=True)
class Hold:
    blocks: list[Block]
    until: float
    score: float  # before the first step
    steps: Steps = ()

    def score_at(self, now: float) -> float:
        return score_in_force(self.score, self.steps, now)


@dataclass(slots=True)
class HoldStats:
    holds: int = 0  # hold() calls that pinned at least one block
    dropped_for_budget: int = 0
    dropped_for_memory: int = 0
    released_first: int = 0  # blocks moved to the front of the free queue


@dataclass
class BlockHolds:
    pool: Pool
    budget_blocks: int
    max_records: int = 4096
    records: OrderedDict[str, list[tuple[Block, Any]]] = field(default_factory=OrderedDict)
    owners: dict[int, int] = field(default_factory=dict)  # block id -> records containing it
    holds: dict[str, Hold] = field(default_factory=dict)
    held: int = 0  # references held, over all holds
    stats: HoldStats = field(default_factory=HoldStats)

    # ------------------------------------------------------------ records

    def record(self, workflow: str, blocks: list[Block]) -> None:
        """The workflow's request ends with these blocks (first block first)."""
        self._forget(workflow)
        kept = [(b, b.block_hash) for b in blocks if not b.is_null and b.block_hash is not None]
        self.records[workflow] = kept
        for b, _ in kept:
            self.owners[b.block_id] = self.owners.get(b.block_id, 0) + 1
        while len(self.records) > self.max_records:
            self._forget(next(iter(self.records)))

    def _forget(self, workflow: str) -> None:
        for b, _ in self.records.pop(workflow, []):
            left = self.owners[b.block_id] - 1
            if left:
                self.owners[b.block_id] = left
            else:
                del self.owners[b.block_id]

    # -------------------------------------------------------------- holds

    def hold(self, workflow: str, until: float, score: float, now: float, steps: Steps = ()) -> int:
        """Pin the workflow's recorded blocks that still hold its prefix; an
        existing hold gets the new expiry and scores, and the rest of the prefix
        if the budget cut it short. Returns blocks held."""
        blocks = self._prefix(workflow)
        current = self.holds.get(workflow)
        if current is not None:
            current.until, current.score, current.steps = until, score, steps
            if len(current.blocks) >= len(blocks):
                return len(current.blocks)
            # The budget cut it short when it came with the grace hold's score 0,
            # which outranks no hold: with the head's score it may take the rest
            # from holds that score lower, as a new hold would.
            self.release(workflow)
        hold = Hold([], until, score, steps)
        self._make_budget(len(blocks), hold.score_at(now), now)
        hold.blocks = blocks[: max(0, self.budget_blocks - self.held)]
        if not hold.blocks:
            return 0
        self.pool.touch(hold.blocks)
        self.holds[workflow] = hold
        self.held += len(hold.blocks)
        self.stats.holds += 1
        return len(hold.blocks)

    def _prefix(self, workflow: str) -> list[Block]:
        """The workflow's recorded blocks up to the first one evicted and reused since."""
        blocks: list[Block] = []
        for b, h in self.records.get(workflow, []):
            if b.block_hash != h:
                break
            blocks.append(b)
        return blocks

    def release(self, workflow: str, evict_first: bool = False) -> None:
        """Drop the workflow's hold; with `evict_first` its blocks that no other
        remembered workflow shares go to the front of the free queue."""
        hold = self.holds.pop(workflow, None)
        if hold is not None:
            self.held -= len(hold.blocks)
            # Reverse: vLLM frees a request's tail blocks first, so they are evicted first.
            self.pool.free_blocks(reversed(hold.blocks))
        if evict_first:
            first = [
                b
                for b, h in reversed(self.records.get(workflow, []))
                if b.block_hash == h and b.ref_cnt == 0 and self.owners.get(b.block_id) == 1
            ]
            if first and _move_before_cached(self.pool.free_block_queue, first):
                self.stats.released_first += len(first)
            self._forget(workflow)

    def expire(self, now: float) -> None:
        """Holds past their `until` end; their blocks become ordinary LRU candidates."""
        for wf in [wf for wf, h in self.holds.items() if h.until <= now]:
            self.release(wf)

    def make_room(self, blocks_needed: int, now: float) -> None:
        """Free holds, lowest score at `now` first, until `blocks_needed` blocks are
        free (or no hold is left): a request the engine cannot admit outranks any hold."""
        while self.holds and self.pool.get_num_free_blocks() < blocks_needed:
            self.release(self._lowest(now))
            self.stats.dropped_for_memory += 1

    def _make_budget(self, wanted: int, score: float, now: float) -> None:
        """Drop holds scoring lower at `now` until `wanted` more references fit the budget."""
        while self.held + wanted > self.budget_blocks and self.holds:
            victim = self._lowest(now)
            if self.holds[victim].score_at(now) >= score:
                return
            self.release(victim)
            self.stats.dropped_for_budget += 1

    def _lowest(self, now: float) -> str:
        return min(self.holds, key=lambda wf: self.holds[wf].score_at(now))


# How far to look for the first cached block in the free queue. Beyond it the
# pool has that many blocks caching nothing: memory is not short, and an ended
# workflow's blocks may keep their LRU place.
SCAN_LIMIT = 4096


def _move_before_cached(queue: Any, blocks: list[Block]) -> bool:
    """Move free `blocks` (in this order) to just before the first free block that
    caches something; False (nothing moved) if none is found within SCAN_LIMIT.
    Uses the linked list of vLLM's FreeKVCacheBlockQueue (see check_vllm)."""
    moving = {b.block_id for b in blocks}
    anchor = queue.fake_free_list_head.next_free_block
    for _ in range(SCAN_LIMIT):
        if anchor is queue.fake_free_list_tail:
            break
        if anchor.block_hash is not None and anchor.block_id not in moving:
            break
        anchor = anchor.next_free_block
    else:
        return False
    for b in blocks:
        queue.remove(b)
    prev = anchor.prev_free_block
    for b in blocks:
        prev.next_free_block, b.prev_free_block = b, prev
        prev = b
    prev.next_free_block, anchor.prev_free_block = anchor, prev
    queue.num_free_blocks += len(blocks)
    return True
