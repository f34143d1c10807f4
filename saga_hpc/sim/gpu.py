"""One simulated GPU: admitting a dispatched call into its KV pool and timing
it, and telling the core when calls wait on it for memory.

- `start`: the call starts when its KV blocks fit (evicting cached contexts by
  the system's eviction policy); its uncached prompt is prefilled after the
  GPU's earlier prefills (chunked prefill shares one compute budget, so a
  recomputed prefix delays the GPU's other arrivals too), then `out` decode
  steps whose length depends on the batch size when it starts.
- with the profile's `prefill_stalls_decode` (chunked prefill: every engine
  step carries a prefill chunk with the running decodes, so while prompts
  are computed each decode step takes the chunk's time too), a call ends
  later by the prefill done on its GPU since its first token. Prefill is
  serial per GPU: what has run by `now` is all that was queued
  (`prefill_queued_s`) less what is still ahead (`prefill_free_at - now`).
  If the call was held up, it also waits for the prefill already queued,
  which runs first; prefill queued later is counted when it comes due again.
  The engine's event loop checks this as a call comes due (`Simulation._run`).
- `report`: the GPU's memory-blocked state, as a worker's heartbeat says it.
- `check_fits`: a trace whose call could never fit a GPU is refused up front.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from saga_hpc.core.types import WorkerStats
from saga_hpc.sim.profile import GpuProfile
from saga_hpc.sim.task_run import TaskRun
from saga_hpc.workload.model import Task

if TYPE_CHECKING:
    from saga_hpc.sim.engine import Simulation


@dataclass(slots=True)
class Gpu:
    index: int
    running: int = 0
    prefill_free_at: float = 0.0
    prefill_queued_s: float = 0.0  # prefill seconds queued on it since the run began
    # Calls dispatched to it, waiting for KV memory.
    pending: deque[TaskRun] = field(default_factory=deque)
    blocked: bool = False  # told the core it is out of memory


def start(sim: Simulation, run: TaskRun, now: float) -> float | None:
    """Start the task's current call on its GPU (`run.gpu`) if its blocks fit:
    returns when it finishes, or None (it must wait)."""
    block, g = sim.block, run.gpu
    task_id = run.task.task_id
    adm = sim.pools[g].admit(
        task_id, run.keep_blocks, run.own_blocks, now, run.shared_key, run.system_blocks
    )
    if adm is None:
        return None
    gpu = sim.gpus[g]
    run.gpus.add(g)
    prompt = run.prompt
    # min() and max() written out (calls to them cost more than the comparison):
    # at least the prompt's last token is computed.
    hit = adm.hit_blocks * block
    if prompt - 1 < hit:
        hit = prompt - 1
    run.hit = hit
    left = run.left_gpu
    if left >= 0:
        # A retention miss: the workflow came back and part of the context it
        # left cached (and still needs) is gone, or it runs elsewhere now.
        run.left_gpu = -1
        wanted = run.left_blocks if run.left_blocks <= run.keep_blocks else run.keep_blocks
        if adm.own_hit_blocks < wanted:
            sim.misses += 1
            sim.recomputed += (wanted - adm.own_hit_blocks) * block
    free_at = gpu.prefill_free_at
    prefill_start = now if now >= free_at else free_at
    prefill_s = (prompt - hit) / sim.prefill_rate
    gpu.prefill_free_at = free_at = prefill_start + prefill_s
    gpu.prefill_queued_s = queued = gpu.prefill_queued_s + prefill_s
    run.prefill_seen = queued  # every prefill queued before its own is done by its first token
    gpu.running = running = gpu.running + 1
    step = sim.step_s[running]  # running <= max_batch: the core's slots
    run.first_token = first = free_at + step
    out = run.out
    run.service_s = (free_at - prefill_start) + step * out
    return first + step * (out - 1 if out > 1 else 0)


def report(sim: Simulation, gpu: Gpu, blocked: bool, now: float) -> None:
    """Tell the core whether this GPU has calls waiting for memory (as a
    worker's heartbeat does), so it holds further calls at the head."""
    gpu.blocked = blocked
    pool = sim.pools[gpu.index]
    stats = WorkerStats(
        sim.worker_ids[gpu.index],
        pool.capacity,
        pool.pinned,
        pool.used - pool.pinned,
        0,
        0,
        gpu.running,
        len(gpu.pending),
        memory_blocked=blocked,
    )
    sim.apply(sim.sched.observe(stats, now), now)


def check_fits(tasks: list[Task], profile: GpuProfile) -> dict[str, list[int]]:
    """A call larger than a GPU's whole KV pool could never start (vLLM rejects it
    at admission); say so instead of simulating a GPU that waits forever. Returns
    each task's prompt sizes."""
    sizes = {}
    limit = profile.kv_tokens
    for task in tasks:
        prompts = sizes[task.task_id] = task.prompt_tokens()
        for i, step in enumerate(task.steps):
            if prompts[i] + step.output_tokens > limit:
                raise ValueError(
                    f"task {task.task_id} call {i}: {prompts[i] + step.output_tokens} tokens "
                    f"do not fit a GPU's KV pool ({limit} tokens, profile {profile.name})"
                )
    return sizes
