"""A KV block pool with prefix reuse and pluggable eviction: the simulator's GPU cache.

Granularity is one *entry* per cached context (a workflow's conversation, or
a shared system prompt) holding a number of blocks; a workflow's context is a
chain, so evicting part of an entry drops blocks from its tail (leaves first,
as vLLM frees them). Entries used by running calls are pinned. The eviction
order is the policy:

- `lru`: least recently used first (vLLM's free-block queue).
- `ttl`: entries with a live Retain hint only after every other one (Continuum).
- `aeg`: released entries first, then unhinted ones by LRU, then hinted ones
  by lowest expected reuse per block (SAGA); a hint's score follows its
  schedule of steps, each applied at its time as a lapse is.
- `belady`: the entry whose next use is furthest in the future first, from an
  oracle over the trace (the offline optimum's order; simulator only).

An entry's rank is fixed while it sits in the heap: every change (a call
finishing, a hint, a release, a waiting call) gives it a new version, and
stale slots are skipped; a rank found different when an entry reaches the
top is pushed again. Every operation is O(log n) amortised.

Most changes are superseded before anything is evicted (a finishing call's
entry gets a Retain right after; a returning workflow's entry is pinned as
its call starts), so for the policies whose rank changes only through pool
events (`lru`, `ttl`, `aeg`: a hint lapsing is one, applied at its expiry)
a changed entry is queued and pushed once, with the rank it has then, when
an eviction next needs the heap: the slot the last change would have pushed,
without the others. Slots gone stale are swept out when they outnumber the
entries. `belady` ranks by an oracle that moves on its own, so its stored
ranks are a snapshot the eviction order depends on: it pushes at once.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass

from saga_hpc.core.types import fast_init


@dataclass(slots=True)
class _Entry:
    key: str
    blocks: int = 0
    refs: int = 0
    last_use: float = 0.0
    retain_until: float = 0.0
    score: float = 0.0
    steps: tuple[tuple[float, float], ...] = ()  # the hint's later scores, (from, score)
    step: int = 0  # steps applied so far
    next_change: float = math.inf  # when the hint next steps or lapses (inf: no event due)
    released: bool = False
    wanted: bool = False  # a call needing this context waits to start: evict it last
    shared: bool = False  # a prefix many workflows start with (system prompt)
    dead: bool = False  # its workflow ended: cached but useless
    version: int = 0
    queued: bool = False  # changed since its last heap slot: pushed before the next eviction


@fast_init
@dataclass(frozen=True, slots=True)
class Admission:
    hit_blocks: int  # blocks of the prompt found cached (shared prefix + own context)
    own_hit_blocks: int  # of which from the call's own context
    new_blocks: int  # blocks allocated


NextUse = Callable[[str, float], float]


class KVPool:
    def __init__(
        self, capacity_blocks: int, policy: str = "lru", next_use: NextUse | None = None
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(
                f"unknown eviction policy {policy!r}; choose one of {', '.join(POLICIES)}"
            )
        if policy == "belady" and next_use is None:
            raise ValueError("belady needs a next_use oracle")
        self.capacity = capacity_blocks
        self.policy = policy
        self.next_use = next_use
        self.entries: dict[str, _Entry] = {}
        self.used = 0  # blocks held by entries (running or cached)
        self.pinned = 0  # blocks of entries with running calls
        # (rank, tie, version, key): the rank's two parts flat in the slot, so heap
        # comparisons do not descend into a nested tuple.
        self._heap: list[tuple[float, float, int, str]] = []
        self._rank: Callable[[_Entry, float], tuple[float, float]] = getattr(
            self, f"_rank_{policy}"
        )
        # Entries changed since their last slot, pushed when an eviction needs the heap
        # (every policy but belady, whose oracle rank must be taken when it changes).
        self._deferred = policy != "belady"
        self._queued: list[_Entry] = []
        # When hints lapse, to rank their entries again: each time once on a heap of
        # plain floats (they sift faster than (time, key) tuples), and the keys whose
        # hints lapse then.
        self._expiry_times: list[float] = []
        self._expiring: dict[float, list[str]] = {}
        # The one rank the clock alone can change, a hint lapsing (ttl: pinned, aeg:
        # hinted; lru: none): a slot of any other rank is still right when it
        # reaches the top, as every other change goes through `_push` and makes the
        # old slot stale. None: any rank may move (belady's oracle).
        self._lapsing: float | None = {"lru": math.nan, "ttl": 1.0, "aeg": 2.0}.get(policy)
        self.evicted_blocks = 0
        self.dead_blocks = 0  # cached blocks of ended workflows (memory not doing useful work)
        self.hit_blocks = 0
        self.query_blocks = 0

    # ------------------------------------------------------------------ calls

    def cached(self, key: str) -> int:
        e = self.entries.get(key)
        return e.blocks if e is not None else 0

    def admit(
        self,
        key: str,
        keep_blocks: int,
        total_blocks: int,
        now: float,
        shared_key: str | None = None,
        shared_blocks: int = 0,
    ) -> Admission | None:
        """Start a call whose prompt + output need `total_blocks` beyond the shared
        prefix; the first `keep_blocks` of its own context may be cached. Returns
        None when the blocks cannot be found even after evicting every unpinned entry."""
        # Called for every call that starts: `_pin` and `min` written out.
        entries = self.entries
        entry = entries.get(key) or _Entry(key)
        blocks = entry.blocks
        own_hit = blocks if blocks < keep_blocks else keep_blocks
        if total_blocks < own_hit:
            own_hit = total_blocks
        shared = entries.get(shared_key) if shared_key else None
        shared_hit = 0
        if shared is not None:
            shared_hit = shared.blocks if shared.blocks < shared_blocks else shared_blocks
        grow_own = total_blocks - own_hit
        grow_shared = shared_blocks - shared_hit
        new = grow_own + grow_shared
        unpinned = entry.refs == 0
        # Blocks of this entry past the reused prefix are garbage now; free them first.
        freed_here = blocks - own_hit if unpinned else 0
        need = new - freed_here
        if need > self.capacity - self.used and not self._make_room(need, (key, shared_key), now):
            return None
        if unpinned:
            if blocks:
                self.used -= freed_here
                if entry.dead:  # a context reused after its workflow was retired is live again
                    self.dead_blocks -= blocks
                    entry.dead = False
                blocks = own_hit
            self.pinned += blocks
            entry.version += 1  # its heap slot is stale now
        entry.refs += 1
        entry.wanted = False
        entry.blocks = blocks + grow_own
        self.used += grow_own
        self.pinned += grow_own
        entries[key] = entry
        if shared_key:
            s = shared or _Entry(shared_key, shared=True)
            self._pin(s)
            s.blocks += grow_shared
            self.used += grow_shared
            self.pinned += grow_shared
            entries[shared_key] = s
        self.hit_blocks += own_hit + shared_hit
        self.query_blocks += total_blocks + shared_blocks
        return Admission(own_hit + shared_hit, own_hit, new)

    def finish(self, key: str, now: float, shared_key: str | None = None) -> int:
        """The call ended: its blocks stay cached, evictable by policy. Returns the
        blocks cached for `key`."""
        entries = self.entries
        blocks = 0
        e = entries.get(key)
        if e is not None:
            blocks = e.blocks
            e.refs -= 1
            e.last_use = now
            if e.refs == 0:
                self.pinned -= blocks
                if e.next_change == math.inf and e.retain_until > now:
                    self._advance(e, now)  # steps that fell due while it was in use
                self._push(e, now)
        s = entries.get(shared_key) if shared_key else None
        if s is not None:
            s.refs -= 1
            s.last_use = now
            if s.refs == 0:
                self.pinned -= s.blocks
                self._push(s, now)
        return blocks

    # ------------------------------------------------------------------ hints

    def retain(
        self,
        key: str,
        until: float,
        score: float,
        now: float,
        steps: tuple[tuple[float, float], ...] = (),
    ) -> None:
        """Keep `key` with `score` until `until`; `steps`: (time, score) in increasing
        time before `until`, the score from each time on."""
        e = self.entries.get(key)
        if e is not None:
            e.retain_until, e.score, e.released = until, score, False
            e.steps, e.step = steps, 0
            self._expect(e, steps[0][0] if steps else until)
            if e.refs == 0:
                self._push(e, now)

    def _expect(self, e: _Entry, at: float) -> None:
        """The entry's hint changes at `at`: rank it again then."""
        e.next_change = at
        keys = self._expiring.get(at)
        if keys is None:
            self._expiring[at] = [e.key]
            heapq.heappush(self._expiry_times, at)
        else:
            keys.append(e.key)

    def _advance(self, e: _Entry, now: float) -> None:
        """Apply the hint's steps due by `now`; expect its next step, or its lapse."""
        steps, k = e.steps, e.step
        while k < len(steps) and steps[k][0] <= now:
            e.score = steps[k][1]
            k += 1
        e.step = k
        if k < len(steps):
            self._expect(e, steps[k][0])
        elif e.retain_until > now:
            self._expect(e, e.retain_until)
        else:
            e.next_change = math.inf

    def release(self, key: str, now: float) -> None:
        e = self.entries.get(key)
        if e is not None:
            e.retain_until, e.released = 0.0, True
            e.steps, e.next_change = (), math.inf
            if e.refs == 0:
                self._push(e, now)

    def want(self, key: str, now: float) -> None:
        """A call of this context is waiting for memory: keep its blocks (every policy)."""
        e = self.entries.get(key)
        if e is not None and not e.wanted:
            e.wanted = True
            if e.refs == 0:
                self._push(e, now)

    def unwant(self, key: str, now: float) -> None:
        """The call waiting for this context went to another GPU."""
        e = self.entries.get(key)
        if e is not None and e.wanted:
            e.wanted = False
            if e.refs == 0:
                self._push(e, now)

    def retire(self, key: str) -> None:
        """The workflow ended: its cached blocks no longer count as useful."""
        e = self.entries.get(key)
        if e is not None and not e.dead:
            e.dead = True
            self.dead_blocks += e.blocks

    @property
    def useful(self) -> int:
        return self.used - self.dead_blocks

    def drop(self, key: str) -> None:
        """Forget an unpinned entry now (the workflow will never come back)."""
        e = self.entries.get(key)
        if e is not None and e.refs == 0:
            if e.dead:
                self.dead_blocks -= e.blocks
            self.used -= e.blocks
            self.evicted_blocks += e.blocks
            del self.entries[key]

    # -------------------------------------------------------------- internals

    @property
    def free(self) -> int:
        return self.capacity - self.used

    def _pin(self, e: _Entry) -> None:
        if e.refs == 0:
            self.pinned += e.blocks
            e.version += 1  # its heap slot is stale now
        e.refs += 1

    # Eviction rank per policy (lowest evicted first); a waiting call's context last.

    def _rank_lru(self, e: _Entry, now: float) -> tuple[float, float]:
        return (9.0 if e.wanted else 0.0, e.last_use)

    def _rank_ttl(self, e: _Entry, now: float) -> tuple[float, float]:
        if e.wanted:
            return (9.0, e.last_use)
        return (1.0 if e.retain_until > now or e.shared else 0.0, e.last_use)

    def _rank_aeg(self, e: _Entry, now: float) -> tuple[float, float]:
        if e.wanted:
            return (9.0, e.last_use)
        if e.shared:  # every workflow of the agent reuses it: the highest reuse there is
            return (2.0, math.inf)
        if e.released:
            return (0.0, e.last_use)
        if e.retain_until > now:
            return (2.0, e.score)
        return (1.0, e.last_use)

    def _rank_belady(self, e: _Entry, now: float) -> tuple[float, float]:
        if e.wanted:
            return (9.0, e.last_use)
        assert self.next_use is not None
        return (-self.next_use(e.key, now), 0.0)

    def _push(self, e: _Entry, now: float) -> None:
        e.version += 1
        if self._deferred:
            if not e.queued:
                e.queued = True
                self._queued.append(e)
            return
        rank, tie = self._rank(e, now)
        heapq.heappush(self._heap, (rank, tie, e.version, e.key))

    def _flush(self, exclude: tuple[str | None, ...], now: float) -> None:
        """Push the queued entries' slots, as their last change would have (the
        rank of lru/ttl/aeg is the same now as then: hints that lapsed since were
        re-queued by their expiry). An excluded entry cannot be evicted by this
        call and stays queued. Then sweep stale slots out if they dominate."""
        heap, entries, rank = self._heap, self.entries, self._rank
        keep: list[_Entry] = []
        for e in self._queued:
            if e.refs or entries.get(e.key) is not e:
                e.queued = False  # pinned (re-queued when it ends) or evicted
            elif e.key in exclude:
                keep.append(e)
            else:
                e.queued = False
                r, tie = rank(e, now)
                heapq.heappush(heap, (r, tie, e.version, e.key))
        self._queued = keep
        if len(heap) > 2 * len(entries) + 64:
            self._sweep()

    def _sweep(self) -> None:
        """Drop the heap's stale slots. Pops would skip them anyway; a stale slot
        that would later match a re-created entry's version is checked against
        its rank when popped and re-pushed as the live slot it duplicates, so
        dropping it changes no eviction (non-volatile ranks only)."""
        entries = self.entries
        live = []
        for slot in self._heap:
            e = entries.get(slot[3])
            if e is not None and e.version == slot[2] and e.refs == 0:
                live.append(slot)
        heapq.heapify(live)
        self._heap = live

    def _make_room(self, blocks: int, exclude: tuple[str | None, ...], now: float) -> bool:
        if blocks <= self.capacity - self.used:
            return True
        times = self._expiry_times
        while times and times[0] <= now:  # hints that stepped or lapsed: ranked again
            at = heapq.heappop(times)
            keys = self._expiring.pop(at)
            # Keys sharing a time in order, as (at, key) tuples would leave a heap.
            for key in sorted(keys):
                e = self.entries.get(key)
                if e is None or e.next_change != at:
                    continue  # a later hint replaced the one that set this time
                if e.refs:  # in use: its steps are applied when its call ends
                    e.next_change = math.inf
                    continue
                self._advance(e, now)
                self._push(e, now)
        if blocks > self.capacity - self.pinned:
            return False
        if self._deferred:
            self._flush(exclude, now)
        skipped: list[tuple[float, float, int, str]] = []
        heap, entries, lapsing = self._heap, self.entries, self._lapsing
        while self.capacity - self.used < blocks and heap:
            rank, tie, version, key = heap[0]  # popped only once done with
            e = entries.get(key)
            if e is None or e.version != version or e.refs > 0:
                heapq.heappop(heap)  # stale slot
                continue
            if key in exclude:
                skipped.append(heapq.heappop(heap))
                continue
            if lapsing is None or rank == lapsing:
                current = self._rank(e, now)
                if current[0] != rank or current[1] != tie:  # stepped or lapsed: rank it again
                    heapq.heapreplace(heap, (current[0], current[1], version, key))
                    continue
            take = blocks - (self.capacity - self.used)  # min(e.blocks, what is missing)
            if e.blocks <= take:
                take = e.blocks
            e.blocks -= take  # from the tail: leaves first
            self.used -= take
            if e.dead:
                self.dead_blocks -= take
            self.evicted_blocks += take
            if e.blocks == 0:
                del entries[key]
                heapq.heappop(heap)
            # else: room is made, and the entry's slot stays on top, unchanged
        for item in skipped:
            heapq.heappush(heap, item)
        return self.capacity - self.used >= blocks


POLICIES = ("lru", "ttl", "aeg", "belady")
