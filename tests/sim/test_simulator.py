"""The simulator: invariants, determinism, and that retention changes outcomes."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from saga_hpc.cli.main import main
from saga_hpc.sim.engine import Simulation
from saga_hpc.sim.metrics import summarize
from saga_hpc.sim.profile import load_profile
from saga_hpc.workload.generators import generate

PROFILE = load_profile("h100-llama3-8b")
SHARES = {"physics": 3.0, "chem": 1.0}


def tasks(rate: float = 2.0, duration: float = 120.0):  # type: ignore[no-untyped-def]
    return generate(
        "swe-bench", rate_per_s=rate, duration_s=duration, seed=0, tenants=tuple(SHARES.items())
    )


@pytest.mark.parametrize("system", ["vllm", "saga", "sglang", "continuum", "autellix"])
def test_every_call_completes_and_tokens_are_conserved(system: str) -> None:
    ts = tasks()
    r = Simulation(ts, system, 4, PROFILE, shares=SHARES).run()
    assert set(r.tct_s) == {t.task_id for t in ts}
    assert len(r.calls) == sum(len(t.steps) for t in ts)
    assert sum(c.out for c in r.calls) == sum(s.output_tokens for t in ts for s in t.steps)
    assert all(0 <= c.hit < c.prompt for c in r.calls)
    assert all(used <= 1.0 for _, used, _ in r.kv_samples)


def test_deterministic() -> None:
    ts = tasks()
    a = summarize(Simulation(ts, "saga", 4, PROFILE, shares=SHARES).run(), SHARES)
    b = summarize(Simulation(ts, "saga", 4, PROFILE, shares=SHARES).run(), SHARES)
    for key in ("tct_mean_s", "kv_hit_rate", "retention_misses", "output_throughput"):
        assert a[key] == b[key]


def test_first_calls_arrive_with_their_task_and_the_collector_comes_back() -> None:
    ts = tasks()
    r = Simulation(ts, "vllm", 4, PROFILE, shares=SHARES).run()
    firsts: dict[str, float] = {}
    for c in r.calls:  # records in completion order; a task's first call is its earliest
        firsts.setdefault(c.task_id, c.arrived)
    assert firsts == {t.task_id: t.arrival_s for t in ts}
    assert gc.isenabled()  # the run turns the cyclic collector off only while it lasts
    gc.disable()
    try:
        Simulation(ts, "vllm", 4, PROFILE, shares=SHARES).run()
        assert not gc.isenabled()  # and leaves a caller's choice alone
    finally:
        gc.enable()


def test_under_memory_pressure_aeg_misses_less_than_lru_and_belady_least() -> None:
    ts = tasks(rate=2.0, duration=300.0)
    misses = {}
    for system, retention in (("vllm", None), ("vllm", "aeg"), ("vllm", "belady")):
        r = Simulation(ts, system, 4, PROFILE, retention=retention, shares=SHARES).run()
        misses[retention or "lru"] = r.retention_misses
    assert misses["belady"] < misses["aeg"] < misses["lru"], misses


def test_cli_sim_and_bench(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert (
        main(
            [
                "sim",
                "--gpus",
                "2",
                "--duration",
                "60",
                "--system",
                "vllm",
                "--write-trace",
                str(tmp_path / "t.jsonl"),
            ]
        )
        == 0
    )
    assert main(["sim", "--gpus", "2", "--trace", str(tmp_path / "t.jsonl"), "--json"]) == 0
    assert (
        main(
            [
                "bench",
                "--gpus",
                "2",
                "--duration",
                "60",
                "--workloads",
                "swe-bench",
                "--systems",
                "vllm,saga",
                "--json",
                str(tmp_path / "b.json"),
            ]
        )
        == 0
    )
    assert "saga vs vllm" in capsys.readouterr().out
    # Strict JSON: a figure that does not exist (no Bélády misses to divide by in a
    # 2-GPU minute, no paired test) is null, not the bare word NaN.
    doc = json.loads((tmp_path / "b.json").read_text(), parse_constant=_no_constant)
    vllm = next(r for r in doc["runs"] if r["system"] == "vllm")
    assert vllm["metrics"]["belady_miss_ratio"] is None


def _no_constant(name: str) -> None:
    raise AssertionError(f"{name} in a result document")


def test_bench_in_worker_processes_gives_what_one_process_gives() -> None:
    """The systems of a workload run in forked processes with --jobs: every figure
    and every call record comes back as one process computes them, in order."""
    from saga_hpc.bench.sim_bench import BenchConfig, run_bench

    def bench(jobs: int):  # type: ignore[no-untyped-def]
        cfg = BenchConfig(2, ("swe-bench",), ("vllm", "saga"), 0, 60.0, None, jobs=jobs)
        doc, results = run_bench(cfg, PROFILE)
        for run in doc["runs"]:
            del run["metrics"]["events_per_s"], run["metrics"]["sim_wall_s"]
        for r in results["swe-bench"].values():
            r.wall_s = 0.0
        return json.dumps(doc, sort_keys=True), results

    one, many = bench(1), bench(2)
    assert one[0] == many[0]
    assert list(many[1]["swe-bench"]) == ["vllm", "saga", "saga+belady"]
    assert one[1] == many[1] and len(many[1]["swe-bench"]["saga"].calls) > 100


@pytest.mark.parametrize(
    "argv",
    [
        ["sim", "--system", "magic"],
        ["sim", "--gpus", "0"],
        ["bench", "--jobs", "0"],
        ["bench", "--systems", "vllm,nope"],
        ["sim", "--trace", "/nonexistent"],
        ["bench", "--profile", "a100-nothing"],
        ["bench", "--json", "/nonexistent-dir/out.json"],
        ["bench", "--json", "/tmp"],
        ["bench", "--plots", "/proc/no-plots-here"],
        ["bench", "--real", "--json", "/nonexistent-dir/out.json"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("saga-hpc: error:")


def test_a_trace_call_larger_than_a_gpu_pool_is_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    step = {"keep_tokens": 0, "new_tokens": 500_000, "output_tokens": 5, "tool": None, "tool_s": 0}
    task = {"task_id": "huge", "tenant": "physics", "arrival_s": 0, "system_tokens": 10}
    (tmp_path / "t.jsonl").write_text(json.dumps({**task, "steps": [step]}) + "\n")
    assert main(["sim", "--trace", str(tmp_path / "t.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "task huge call 0" in err and "do not fit" in err


def test_metrics_read_from_columns_are_those_of_a_pass_over_the_records() -> None:
    """A run keeps its call records by column and the metrics read them whole; the
    figures are bit for bit those of a pass over the records in completion order."""
    import dataclasses

    from saga_hpc.sim.metrics import _fairness

    r = Simulation(tasks(), "saga", 4, PROFILE, shares=SHARES).run()
    by_columns = summarize(r, SHARES)
    assert by_columns == summarize(dataclasses.replace(r, calls=list(r.calls)), SHARES)
    windows: dict[int, int] = {}
    service: dict[str, float] = {}
    slo_ok = 0
    for c in r.calls:
        windows[int(c.finished // 10.0)] = windows.get(int(c.finished // 10.0), 0) + c.out
        service[c.tenant] = service.get(c.tenant, 0.0) + c.service_s
        slo_ok += c.ttft_s <= 2.0 and c.tpot_s <= 0.1
    assert by_columns["peak_output_throughput"] == max(windows.values()) / 10.0
    assert by_columns["slo_attainment"] == slo_ok / len(r.calls)
    dev, jain = _fairness(service, SHARES)
    assert (by_columns["fair_share_max_dev"], by_columns["jain_index"]) == (dev, jain)
    assert by_columns["kv_hit_rate"] == sum(c.hit for c in r.calls) / sum(c.prompt for c in r.calls)
