"""Engine arguments: one code path; only platform defaults differ between CPU and GPU."""

from __future__ import annotations

import pytest

from saga_hpc.errors import UsageError
from saga_hpc.worker.engine import (
    HINT_SCHEDULER,
    EngineSettings,
    device_for_worker,
    engine_kwargs,
    engine_threads,
    with_cpu_budget,
)


def test_cpu_build_gets_a_fixed_pool_eager_mode_and_a_small_memory_share() -> None:
    kw = engine_kwargs(EngineSettings(model="/m"), on_cpu=True)
    assert kw["kv_cache_memory_bytes"] == 64_000_000
    assert kw["enforce_eager"] is True
    assert kw["gpu_memory_utilization"] == 0.3
    assert kw["block_size"] == 32 and kw["enable_prefix_caching"] is True
    assert "scheduler_cls" not in kw


def test_gpus_size_the_pool_from_memory_and_keep_cuda_graphs() -> None:
    kw = engine_kwargs(EngineSettings(model="/m"), on_cpu=False)
    assert "kv_cache_memory_bytes" not in kw
    assert kw["enforce_eager"] is False
    assert kw["gpu_memory_utilization"] == 0.9


def test_explicit_settings_win_and_zero_means_size_from_memory() -> None:
    fixed = EngineSettings(model="/m", kv_cache_bytes=5_000_000, enforce_eager=True)
    assert engine_kwargs(fixed, on_cpu=False)["kv_cache_memory_bytes"] == 5_000_000
    assert engine_kwargs(fixed, on_cpu=False)["enforce_eager"] is True
    assert "kv_cache_memory_bytes" not in engine_kwargs(
        EngineSettings(model="/m", kv_cache_bytes=0), on_cpu=True
    )


def test_the_hint_channel_loads_the_hint_scheduler() -> None:
    kw = engine_kwargs(EngineSettings(model="/m"), on_cpu=True, channel={"saga": {"x": 1}})
    assert kw["scheduler_cls"] == HINT_SCHEDULER
    assert kw["additional_config"] == {"saga": {"x": 1}}


def test_each_worker_rank_of_a_gpu_node_takes_its_own_device() -> None:
    assert device_for_worker(0, "0,1,2,3") == "0"
    assert device_for_worker(3, "4,5,6,7") == "7"
    assert device_for_worker(4, "0,1,2,3") == "0"  # more ranks than GPUs: they share
    assert device_for_worker(1, "2") is None  # Slurm bound one GPU per task already
    assert device_for_worker(0, None) is None  # CPU nodes


def test_cpu_engines_split_the_nodes_cpus_unless_an_admin_says_otherwise() -> None:
    assert engine_threads(2, 2) == 1  # this machine: two engines, one thread each
    assert engine_threads(64, 8) == 8
    assert engine_threads(6, 4) == 1  # rounds down: never more threads than CPUs
    assert engine_threads(2, 3) == 1  # more engines than CPUs: still one each
    assert engine_threads(16, 0) == 16  # a worker outside the MPI job has its node alone
    assert engine_threads(2, 2, "4") == 4  # SAGA_ENGINE_THREADS wins
    assert engine_threads(2, 2, "") == 1  # set but empty: derived
    for bad in ("0", "-1", "two"):
        with pytest.raises(UsageError, match="SAGA_ENGINE_THREADS"):
            engine_threads(2, 2, bad)


def test_the_cli_budget_reads_this_process_cpus_and_the_override(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    monkeypatch.delenv("SAGA_ENGINE_THREADS", raising=False)
    s = EngineSettings(model="/m")
    assert with_cpu_budget(s, 2) == EngineSettings(model="/m", cpu_threads=2)
    monkeypatch.setenv("SAGA_ENGINE_THREADS", "3")
    assert with_cpu_budget(s, 2).cpu_threads == 3
