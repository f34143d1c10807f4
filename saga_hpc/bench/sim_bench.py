"""`saga-hpc bench`: every system on the same seeded traces, one JSON document.

For each workload the same task list (same seed, same arrivals) runs under
every system, plus SAGA's policies with Belady's offline eviction (the lower
bound on retention misses). Comparisons are saga vs vllm, geometric mean over
the workloads; the TCT difference is tested per task with a paired Wilcoxon
signed-rank test (the same tasks ran under both systems).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from saga_hpc.sim.engine import SimResult, Simulation
from saga_hpc.sim.metrics import summarize, tct_growth
from saga_hpc.sim.profile import GpuProfile
from saga_hpc.workload.generators import generate

DEFAULT_TENANTS = (("physics", 3.0), ("chem", 1.0))
# Task arrivals per second per GPU where the vllm baseline is loaded but stable on
# the default profile, one grid step below where it stops being stable: its TCT
# of the last quarter of an hour's arrivals stays within 10% of the first
# quarter's on 16 GPUs at swe-bench 0.36 and webarena 0.47, and grows 34x at
# swe-bench 0.37 and 9x at webarena 0.5 (docs/simulator.md, "Bench load").
DEFAULT_LOAD = {"swe-bench": 0.34, "webarena": 0.45}
ORACLE = "saga+belady"


@dataclass(frozen=True)
class BenchConfig:
    gpus: int
    workloads: tuple[str, ...]
    systems: tuple[str, ...]
    seed: int
    duration_s: float
    load: float | None  # task arrivals per second per GPU; None: DEFAULT_LOAD per workload
    tenants: tuple[tuple[str, float], ...] = DEFAULT_TENANTS
    burst: float = 1.0  # mean tasks per job; 1 = Poisson arrivals


def run_bench(
    cfg: BenchConfig, profile: GpuProfile, progress: Callable[[str], None] = lambda s: None
) -> tuple[dict[str, Any], dict[str, dict[str, SimResult]]]:
    shares = dict(cfg.tenants)
    runs: list[dict[str, Any]] = []
    results: dict[str, dict[str, SimResult]] = {}
    for workload in cfg.workloads:
        tasks = generate(
            workload,
            rate_per_s=(cfg.load or DEFAULT_LOAD[workload]) * cfg.gpus,
            duration_s=cfg.duration_s,
            seed=cfg.seed,
            tenants=cfg.tenants,
            burst=cfg.burst,
        )
        arrivals = {t.task_id: t.arrival_s for t in tasks}
        progress(f"{workload}: {len(tasks)} tasks, {sum(len(t.steps) for t in tasks)} calls")
        results[workload] = {}
        variants = [(s, None) for s in cfg.systems] + [("saga", "belady")]
        for system, retention in variants:
            t0 = time.perf_counter()
            r = Simulation(
                tasks, system, cfg.gpus, profile, retention=retention, shares=shares
            ).run()
            results[workload][r.system] = r
            m = summarize(r, shares)
            m["tct_growth"] = tct_growth(arrivals, r.tct_s, cfg.duration_s)
            runs.append(
                {
                    "system": r.system,
                    "workload": workload,
                    "gpus": cfg.gpus,
                    "seed": cfg.seed,
                    "metrics": m,
                }
            )
            took = time.perf_counter() - t0
            progress(
                f"  {r.system:14s} {took:6.1f} s  {r.events / r.wall_s:8.0f} events/s  "
                f"TCT mean {m['tct_mean_s']:7.1f} s  growth {m['tct_growth']:5.2f}"
            )
    for run in runs:
        oracle = results[run["workload"]].get(ORACLE)
        mine = results[run["workload"]][run["system"]]
        run["metrics"]["belady_miss_ratio"] = (
            mine.retention_misses / oracle.retention_misses
            if oracle and oracle.retention_misses
            else math.nan
        )
    doc: dict[str, Any] = {
        "config": {
            "gpus": cfg.gpus,
            "workloads": list(cfg.workloads),
            "systems": list(cfg.systems),
            "seed": cfg.seed,
            "duration_s": cfg.duration_s,
            "load_tasks_per_gpu_s": {w: cfg.load or DEFAULT_LOAD[w] for w in cfg.workloads},
            "tenants": dict(cfg.tenants),
            "burst": cfg.burst,
            "profile": profile.name,
        },
        "runs": runs,
    }
    if "saga" in cfg.systems and "vllm" in cfg.systems:
        doc["comparison"] = compare(runs, results, cfg.workloads)
    return doc, results


def _metric(runs: list[dict[str, Any]], system: str, workload: str, key: str) -> float:
    run = next(r for r in runs if r["system"] == system and r["workload"] == workload)
    return float(run["metrics"][key])


def geomean(xs: list[float]) -> float:
    xs = [x for x in xs if x > 0 and math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else math.nan


def paired_tct_test(saga: Mapping[str, float], vllm: Mapping[str, float]) -> dict[str, float]:
    """Paired Wilcoxon signed-rank test of task -> TCT under each system (the same tasks)."""
    from scipy.stats import wilcoxon

    common = sorted(set(saga) & set(vllm))
    diffs = [vllm[t] - saga[t] for t in common]
    p = float(wilcoxon(diffs).pvalue) if len(common) > 10 and any(diffs) else math.nan
    return {
        "tasks": len(common),
        "wilcoxon_p": p,
        "saga_faster_share": sum(d > 0 for d in diffs) / len(diffs) if diffs else math.nan,
    }


def compare(
    runs: list[dict[str, Any]], results: dict[str, dict[str, SimResult]], workloads: tuple[str, ...]
) -> dict[str, Any]:
    def ratio(key: str, saga_over_vllm: bool) -> float:
        vals = []
        for w in workloads:
            s, v = _metric(runs, "saga", w, key), _metric(runs, "vllm", w, key)
            num, den = (s, v) if saga_over_vllm else (v, s)
            vals.append(num / den if den else math.nan)  # e.g. KV use not sampled
        return geomean(vals)

    tests = {
        w: paired_tct_test(results[w]["saga"].tct_s, results[w]["vllm"].tct_s) for w in workloads
    }
    return {
        "tct_mean_ratio_vllm_over_saga": ratio("tct_mean_s", False),
        "peak_throughput_ratio_saga_over_vllm": ratio("peak_output_throughput", True),
        "output_throughput_ratio_saga_over_vllm": ratio("output_throughput", True),
        "kv_mem_util_ratio_saga_over_vllm": ratio("kv_mem_util", True),
        "saga_slo_attainment": min(_metric(runs, "saga", w, "slo_attainment") for w in workloads),
        "saga_belady_miss_ratio": geomean(
            [_metric(runs, "saga", w, "belady_miss_ratio") for w in workloads]
        ),
        "paired_tct_test": tests,
    }


def table(doc: dict[str, Any]) -> str:
    cols = (
        ("tct_mean_s", "TCT mean", "{:9.1f}"),
        ("tct_p99_s", "TCT p99", "{:9.1f}"),
        ("tct_growth", "growth", "{:9.2f}"),  # ~1: stable; >1: queues grow
        ("mean_ttft_ms", "TTFT ms", "{:9.0f}"),
        ("output_throughput", "tok/s", "{:9.0f}"),
        ("peak_output_throughput", "peak", "{:9.0f}"),
        ("kv_hit_rate", "hit", "{:9.3f}"),
        ("kv_mem_util", "KV util", "{:9.3f}"),
        ("slo_attainment", "SLO", "{:9.3f}"),
        ("retention_misses", "misses", "{:9.0f}"),
        ("belady_miss_ratio", "/belady", "{:9.2f}"),
        ("jain_index", "Jain", "{:9.3f}"),
    )
    lines = [f"{'workload':10s} {'system':14s} " + " ".join(f"{h:>9s}" for _, h, _ in cols)]
    repeated = doc["config"].get("repeat", 1) > 1
    for r in doc["runs"]:
        m = r["metrics"]
        name = f"{r['system']} r{r['round']}" if repeated else r["system"]
        lines.append(
            f"{r['workload']:10s} {name:14s} "
            + " ".join(f.format(m.get(k, math.nan)) for k, _, f in cols)
        )
    c = doc.get("comparison")
    if c:
        lines += [
            "",
            f"saga vs vllm (pooled over {c['rounds']['n']} rounds):"
            if "rounds" in c
            else "saga vs vllm (geomean over workloads):",
            f"  TCT mean ratio vllm/saga      {c['tct_mean_ratio_vllm_over_saga']:.3f}",
            f"  peak throughput saga/vllm     {c['peak_throughput_ratio_saga_over_vllm']:.3f}",
            f"  KV memory utilisation ratio   {c['kv_mem_util_ratio_saga_over_vllm']:.3f}",
            f"  saga SLO attainment (min)     {c['saga_slo_attainment']:.4f}",
            f"  saga misses / belady misses   {c['saga_belady_miss_ratio']:.3f}",
        ]
        for w, t in c["paired_tct_test"].items():
            lines.append(
                f"  {w}: paired Wilcoxon over {t['tasks']} tasks p = {t['wilcoxon_p']:.3g}, "
                f"saga faster on {100 * t['saga_faster_share']:.0f}% of tasks"
            )
    return "\n".join(lines)
