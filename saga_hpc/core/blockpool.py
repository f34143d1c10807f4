"""A prefix-sharing KV block pool: vLLM's block manager, reduced to its bookkeeping.

Every full block of a prompt has a chained hash (block i's hash covers tokens
0..16(i+1)); a cached block is found by hash, so calls (of any workflow)
whose prompts share leading blocks share those blocks. A running request
holds references on the cached blocks it hit and on the blocks it allocated;
when it finishes, its full blocks are cached under their hashes and become
evictable. Which evictable block goes first is the eviction policy's key
(`core.retention.eviction`); only leaves of a prefix chain are evicted, so a
cached block is always reachable from the chain's first block.

The pool reads no clock: `admit`, `extend` and `finish` take `now`, and the
hints (`retain`, `release`) apply at the last `now` seen. Every operation is
O(log n) per block it touches (lazy heap: a changed block is pushed again
with a new version and stale slots are skipped).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from saga_hpc.core.retention.eviction import EvictionPolicy, Hint, Key


@dataclass(slots=True)
class _Block:
    parent: int | None
    depth: int
    workflow: str | None  # whose hints apply; None once two workflows shared it
    refs: int = 0
    children: int = 0  # cached blocks whose parent this is
    last_use: float = 0.0
    version: int = 0


@dataclass(slots=True)
class _Request:
    workflow_id: str
    hashes: tuple[int, ...]
    hit: int  # leading blocks referenced from the cache
    allocated: int  # blocks allocated for it (not cached yet)


class BlockPool:
    def __init__(self, capacity_blocks: int, block_tokens: int, eviction: EvictionPolicy) -> None:
        self.capacity = capacity_blocks
        self.block_tokens = block_tokens
        self.eviction = eviction
        self.used = 0  # blocks referenced by running requests
        self.cached = 0  # evictable blocks, still holding a prefix
        self.hit_tokens = 0
        self.query_tokens = 0
        self.evictions = 0
        self._blocks: dict[int, _Block] = {}
        self._requests: dict[str, _Request] = {}
        self._owned: dict[str, set[int]] = {}
        self._hints: dict[str, Hint] = {}
        self._heap: list[tuple[Key, int, int]] = []
        self._expiries: list[tuple[float, str]] = []
        self._now = 0.0

    def __contains__(self, block_hash: int) -> bool:
        return block_hash in self._blocks

    @property
    def free(self) -> int:
        return self.capacity - self.used - self.cached

    # --------------------------------------------------------------- requests

    def lookup(self, prefix_hashes: Sequence[int]) -> int:
        """How many leading blocks of the prompt are cached."""
        n = 0
        for h in prefix_hashes:
            if h not in self._blocks:
                break
            n += 1
        return n

    def admit(
        self,
        request_id: str,
        workflow_id: str,
        prefix_hashes: Sequence[int],
        total_blocks_needed: int,
        now: float,
    ) -> int | None:
        """Start a request needing `total_blocks_needed` blocks, reusing its cached
        leading blocks; returns how many were hit, or None when the rest cannot
        be allocated even after evicting every evictable block."""
        self._tick(now)
        hashes = tuple(prefix_hashes)
        hit = min(self.lookup(hashes), total_blocks_needed)
        reclaimed = sum(1 for h in hashes[:hit] if self._blocks[h].refs == 0)
        need = total_blocks_needed - hit
        if need > self.free + self.cached - reclaimed:
            return None
        for h in hashes[:hit]:
            self._pin(h, workflow_id)
        self._evict(need - self.free)
        self.used += need
        self._requests[request_id] = _Request(workflow_id, hashes, hit, need)
        self.hit_tokens += hit * self.block_tokens
        self.query_tokens += len(hashes) * self.block_tokens
        return hit

    def extend(self, request_id: str, n_blocks: int, now: float) -> bool:
        """Decode grew the request by `n_blocks`; False when they cannot be found."""
        self._tick(now)
        if n_blocks > self.free + self.cached:
            return False
        self._evict(n_blocks - self.free)
        self.used += n_blocks
        self._requests[request_id].allocated += n_blocks
        return True

    def finish(self, request_id: str, now: float, new_hashes: Sequence[int] = ()) -> None:
        """The request ended. Its prompt blocks and the full blocks it generated
        (`new_hashes`, continuing the chain) stay cached, evictable; the rest is freed."""
        self._tick(now)
        req = self._requests.pop(request_id)
        chain = req.hashes + tuple(new_hashes)
        held = list(chain[: req.hit])
        for i in range(req.hit, min(len(chain), req.hit + req.allocated)):
            h = chain[i]
            if h in self._blocks:  # another request cached the same block meanwhile
                continue
            parent = chain[i - 1] if i else None
            self._blocks[h] = _Block(parent, i, req.workflow_id, refs=1)
            self._owned.setdefault(req.workflow_id, set()).add(h)
            if parent is not None and parent in self._blocks:
                self._blocks[parent].children += 1
            self.used += 1  # counted as referenced until the unpin below
            held.append(h)
        self.used -= req.allocated
        for h in held:
            b = self._blocks[h]
            b.last_use = now
            b.refs -= 1
            if b.refs == 0:
                self.used -= 1
                self.cached += 1
                if b.children == 0:
                    self._push(h, b)

    # ------------------------------------------------------------------ hints

    def retain(
        self,
        workflow_id: str,
        until: float,
        score: float,
        steps: tuple[tuple[float, float], ...] = (),
    ) -> None:
        """Keep the workflow's blocks with `score` until `until`; `steps`: (time,
        score) in increasing time before `until`, the score from each time on."""
        if workflow_id not in self._owned:  # nothing of it cached here
            return
        self._hints[workflow_id] = Hint(until, score, steps=steps)
        for at, _ in steps:
            heapq.heappush(self._expiries, (at, workflow_id))
        heapq.heappush(self._expiries, (until, workflow_id))
        self._rerank(workflow_id)

    def release(self, workflow_id: str) -> None:
        if workflow_id not in self._owned:
            return
        self._hints[workflow_id] = Hint(released=True)
        self._rerank(workflow_id)

    # -------------------------------------------------------------- internals

    def _pin(self, h: int, workflow_id: str) -> None:
        b = self._blocks[h]
        if b.refs == 0:
            self.cached -= 1
            self.used += 1
            b.version += 1  # its heap slot is stale now
        b.refs += 1
        if b.workflow is not None and b.workflow != workflow_id:
            # A prefix two workflows use (a system prompt) follows no one's hints: LRU.
            self._disown(h, b.workflow)
            b.workflow = None

    def _key(self, h: int, b: _Block) -> Key:
        hint = self._hints.get(b.workflow) if b.workflow is not None else None
        return self.eviction.key(h, b.depth, b.last_use, hint, self._now)

    def _push(self, h: int, b: _Block) -> None:
        b.version += 1
        heapq.heappush(self._heap, (self._key(h, b), b.version, h))

    def _rerank(self, workflow_id: str) -> None:
        for h in self._owned.get(workflow_id, ()):
            b = self._blocks[h]
            if b.refs == 0 and b.children == 0:
                self._push(h, b)

    def _tick(self, now: float) -> None:
        """Advance the pool's clock; blocks whose hint stepped or lapsed are ranked again."""
        self._now = now
        while self._expiries and self._expiries[0][0] <= now:
            at, wf = heapq.heappop(self._expiries)
            hint = self._hints.get(wf)
            if hint is not None and (hint.until == at or any(t == at for t, _ in hint.steps)):
                self._rerank(wf)

    def _evict(self, n: int) -> None:
        heap = self._heap
        check = self.eviction.volatile
        while n > 0:
            key, version, h = heapq.heappop(heap)
            b = self._blocks.get(h)
            if b is None or b.version != version or b.refs or b.children:
                continue  # stale slot
            if check:
                current = self._key(h, b)
                if current != key:  # the oracle's answer moved since it was ranked
                    heapq.heappush(heap, (current, version, h))
                    continue
            # Evict up the chain while the parent, now a leaf, ranks first anyway
            # (a whole cold chain goes without a heap round trip per block).
            while True:
                del self._blocks[h]
                if b.workflow is not None:
                    self._disown(h, b.workflow)
                self.cached -= 1
                self.evictions += 1
                n -= 1
                ph = b.parent
                parent = self._blocks.get(ph) if ph is not None else None
                if ph is None or parent is None:
                    break
                parent.children -= 1
                if parent.children or parent.refs:
                    break
                parent.version += 1
                pkey = self._key(ph, parent)
                if n > 0 and (not heap or pkey <= heap[0][0]):
                    h, b = ph, parent
                    continue
                heapq.heappush(heap, (pkey, parent.version, ph))
                break

    def _disown(self, h: int, workflow_id: str) -> None:
        owned = self._owned[workflow_id]
        owned.discard(h)
        if not owned:  # nothing of it left here: its hint is moot
            del self._owned[workflow_id]
            self._hints.pop(workflow_id, None)
