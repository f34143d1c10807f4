"""vLLM scheduler class that applies the head's retention hints (`scheduler_cls`).

Loaded by vLLM inside the engine-core process. Each `schedule()` first drains
the hint socket (Retain: hold the workflow's blocks until `until`, with the
score its steps put in force; Release: drop the hold and evict the workflow's
blocks first), lets lapsed holds go,
and frees holds (lowest score first) while the free blocks do not cover what
the step's requests may take: the running ones' next blocks and the next
waiting request; then vLLM schedules as usual. A request's workflow comes in
`SamplingParams.extra_args["saga_workflow"]`; when a request ends its blocks are
recorded (and, with hints on, held for `hold_grace_s` until the head's hint
arrives). When a workflow's next request is scheduled it has taken its own
references on its cached prefix, so the hold is dropped.

Priority needs nothing here: the worker passes each call's priority from the
head's ordering policy to vLLM's own `scheduling_policy="priority"`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import vllm
import zmq
from vllm.v1.core.sched.scheduler import Scheduler

from saga_hpc.worker.heartbeat import waits_for_memory
from saga_hpc.worker.hint_channel import ChannelConfig, PoolStats
from saga_hpc.worker.holds import BlockHolds
from saga_hpc.worker.lifeline import end_with_parent

log = logging.getLogger("saga_hpc.worker.scheduler")

SUPPORTED_VLLM = "0.32."
WORKFLOW_ARG = "saga_workflow"


def check_vllm() -> None:
    """Fail with a clear message when vLLM's internals are not the ones this class uses."""
    from vllm.v1.core.block_pool import BlockPool
    from vllm.v1.core.kv_cache_utils import FreeKVCacheBlockQueue

    version = vllm.__version__
    needed = [
        (BlockPool, "touch"),
        (BlockPool, "free_blocks"),
        (BlockPool, "_maybe_evict_cached_block"),
        (FreeKVCacheBlockQueue, "remove"),
        (FreeKVCacheBlockQueue, "append"),  # and its linked list (holds._move_before_cached)
        (Scheduler, "_free_request_blocks"),
    ]
    missing = [f"{c.__name__}.{m}" for c, m in needed if not hasattr(c, m)]
    if not version.startswith(SUPPORTED_VLLM) or missing:
        raise RuntimeError(
            f"saga-hpc's HintScheduler is written against vLLM {SUPPORTED_VLLM}x and found "
            f"vLLM {version}"
            + (f" without {', '.join(missing)}" if missing else "")
            + ": port saga_hpc/worker/hint_scheduler.py, or serve with --system vllm (no hints)"
        )


def workflow_of(sampling_params: Any) -> str | None:
    extra = getattr(sampling_params, "extra_args", None) or {}
    wf = extra.get(WORKFLOW_ARG)
    return wf if isinstance(wf, str) else None


def blocks_wanted(running: Iterable[Any], waiting: Any | None, block_size: int) -> int:
    """Free blocks the engine's next step may take: each running request's blocks
    for the rest of its prompt (chunked prefill) and its next token, and the next
    waiting request's whole prompt plus one (its cached prefix counted, as in
    `waits_for_memory`: those blocks are free until it touches them)."""
    need: int = sum(
        max(
            0,
            math.ceil((r.num_tokens + 1) / block_size)
            - math.ceil(r.num_computed_tokens / block_size),
        )
        for r in running
    )
    if waiting is not None:
        need += math.ceil(waiting.num_tokens / block_size) + 1
    return need


class HintScheduler(Scheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_vllm()
        # Runs in the engine-core process: it must not outlive its worker rank.
        end_with_parent()
        super().__init__(*args, **kwargs)
        additional = self.vllm_config.additional_config
        self.saga = ChannelConfig.from_additional(
            additional if isinstance(additional, dict) else None
        )
        pool = self.kv_cache_manager.block_pool
        self.holds = BlockHolds(
            pool, budget_blocks=int(self.saga.hold_budget * pool.num_gpu_blocks)
        )
        self.live: dict[str, int] = {}  # workflow -> its requests in the engine
        self.evictions = 0
        evict = pool._maybe_evict_cached_block

        def counting_evict(block: Any) -> bool:
            evicted: bool = evict(block)
            self.evictions += evicted
            return evicted

        pool._maybe_evict_cached_block = counting_evict  # type: ignore[method-assign]
        self._zmq = zmq.Context()
        self.hint_sock = self._zmq.socket(zmq.PULL)
        self.hint_sock.connect(self.saga.hints)
        self.stats_sock = self._zmq.socket(zmq.PUSH)
        self.stats_sock.setsockopt(zmq.LINGER, 0)
        self.stats_sock.setsockopt(zmq.SNDHWM, 4)
        self.stats_sock.connect(self.saga.stats)
        self._next_stats = 0.0
        self._blocked = False  # last memory verdict sent

    # ------------------------------------------------------------ vLLM hooks

    def add_request(self, request: Any) -> None:
        wf = workflow_of(request.sampling_params)
        if wf is not None:
            self.live[wf] = self.live.get(wf, 0) + 1
        super().add_request(request)

    def schedule(self, *args: Any, **kwargs: Any) -> Any:
        now = time.time()
        self._apply_hints(now)
        self.holds.expire(now)
        self._unstall(now)
        out = super().schedule(*args, **kwargs)
        for new in out.scheduled_new_reqs:
            wf = workflow_of(new.sampling_params)
            if wf is not None:
                self.holds.release(wf)  # it now holds its cached prefix itself
        blocked = self._memory_blocked()
        # A change of the memory verdict goes out at once: the head holds or
        # releases calls for this worker on it.
        if now >= self._next_stats or blocked != self._blocked:
            self._next_stats = now + self.saga.stats_interval_s
            self._blocked = blocked
            self._send_stats()
        return out

    def _free_request_blocks(self, request: Any) -> None:
        wf = workflow_of(request.sampling_params)
        if wf is not None:
            left = self.live.get(wf, 1) - 1
            if left > 0:
                self.live[wf] = left
            else:
                self.live.pop(wf, None)
            groups = self.kv_cache_manager.get_blocks(request.request_id).blocks
            if len(groups) == 1:  # one KV cache group (full attention): holds apply
                self.holds.release(wf)
                self.holds.record(wf, list(groups[0]))
                if self.saga.hold_grace_s > 0 and left <= 0:
                    now = time.time()
                    self.holds.hold(wf, now + self.saga.hold_grace_s, 0.0, now)
        super()._free_request_blocks(request)

    def shutdown(self) -> None:
        self.hint_sock.close(linger=0)
        self.stats_sock.close(linger=0)
        self._zmq.term()
        super().shutdown()

    # ------------------------------------------------------------- internals

    def _apply_hints(self, now: float) -> None:
        while True:
            try:
                msg = json.loads(self.hint_sock.recv(zmq.NOBLOCK))
            except zmq.Again:
                return
            for wf, until, score, steps in msg["retain"]:
                # A hint that arrives after the workflow's next call is stale.
                if wf not in self.live:
                    self.holds.hold(wf, until, score, now, steps)
            for wf in msg["release"]:
                if wf not in self.live:
                    self.holds.release(wf, evict_first=True)

    def _unstall(self, now: float) -> None:
        """Holds give way to requests, lowest score first, whenever the free blocks
        do not cover what this step may take (`blocks_wanted`), as the simulator's
        pools evict held blocks last but do evict them. (Until 2026-11-30 only
        when nothing ran: a held block then kept a call waiting, and the head's
        further calls for this worker, behind every running one; six real-engine
        rounds: memory-blocked head waits 16.6 vs 14.2 s a round for vllm,
        preemptions 27 vs 12, docs/usage.md.)"""
        if not self.holds.holds:
            return
        admits = self.waiting and len(self.running) < self.max_num_running_reqs
        waiting = self.waiting.peek_request() if admits else None
        self.holds.make_room(blocks_wanted(self.running, waiting, self.block_size), now)

    def _memory_blocked(self) -> bool:
        request = self.waiting.peek_request() if self.waiting else None
        pool = self.kv_cache_manager.block_pool
        return waits_for_memory(
            request.num_tokens if request is not None else None,
            pool.get_num_free_blocks(),
            self.block_size,
        )

    def _send_stats(self) -> None:
        pool = self.kv_cache_manager.block_pool
        cached_free = sum(1 for b in pool.blocks if b.ref_cnt == 0 and b.block_hash is not None)
        stats = PoolStats(
            total=pool.num_gpu_blocks,
            free=pool.get_num_free_blocks(),
            cached_free=cached_free,
            held=self.holds.held,
            evictions=self.evictions,
            holds=self.holds.stats.holds,
            dropped_for_memory=self.holds.stats.dropped_for_memory,
            released_first=self.holds.stats.released_first,
            memory_blocked=self._blocked,
        )
        # When the worker is behind, drop this report: the next one replaces it.
        with contextlib.suppress(zmq.Again):
            self.stats_sock.send(json.dumps(asdict(stats)).encode(), zmq.NOBLOCK)
