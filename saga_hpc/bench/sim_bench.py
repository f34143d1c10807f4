"""`saga-hpc bench`: every system on the same seeded traces, one JSON document.

For each workload the same task list (same seed, same arrivals) runs under
every system, plus SAGA's policies with Belady's offline eviction (the lower
bound on retention misses). Comparisons are saga vs vllm, geometric mean over
the workloads; the TCT difference is tested per task with a paired Wilcoxon
signed-rank test (the same tasks ran under both systems).

The runs of a workload are independent simulations of the same trace, so with
`jobs` > 1 they run in that many forked processes (the trace is generated once,
before the fork, and shared). Each run is deterministic whatever the process,
and results come back in the order of the systems: the document is the same
as with one process (but for the timing fields).
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from operator import attrgetter
from typing import Any

from saga_hpc.nogc import collector_paused
from saga_hpc.sim.engine import CallRecord, SimResult, Simulation
from saga_hpc.sim.metrics import summarize, tct_growth
from saga_hpc.sim.profile import GpuProfile
from saga_hpc.workload.generators import generate
from saga_hpc.workload.model import Task

DEFAULT_TENANTS = (("physics", 3.0), ("chem", 1.0))
# Task arrivals per second per GPU where the vllm baseline is loaded but stable on
# the default profile (chunked prefill), a little below where it stops being
# stable: its TCT of the last quarter of an hour's arrivals stays within 10% of
# the first quarter's on 16 GPUs up to swe-bench 0.31 and webarena 0.32, and
# grows 72x at swe-bench 0.32 and 1.12x at webarena 0.34 (docs/simulator.md,
# "Bench load"). The previous model (`h100-llama3-8b`) was stable up to 0.36 and
# 0.47 and benched at 0.34 and 0.45.
DEFAULT_LOAD = {"swe-bench": 0.29, "webarena": 0.30}
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
    jobs: int = 1  # processes running a workload's systems at once


Variant = tuple[str, str | None]  # (system, retention override)
Run = tuple[SimResult, dict[str, Any], float]  # result, metrics, seconds it took
Packed = tuple[Run, list[list[Any]]]  # a Run without its call records, and them by column

# What a forked worker simulates: set by the parent just before it forks, so the
# trace is shared (copy-on-write) rather than pickled to every process.
_WORK: tuple[BenchConfig, GpuProfile, list[Task], dict[str, float]] | None = None
_RECORD_FIELDS = tuple(f.name for f in fields(CallRecord))


def _simulate(variant: Variant) -> Run:
    assert _WORK is not None
    cfg, profile, tasks, arrivals = _WORK
    system, retention = variant
    shares = dict(cfg.tenants)
    t0 = time.perf_counter()
    r = Simulation(tasks, system, cfg.gpus, profile, retention=retention, shares=shares).run()
    m = summarize(r, shares)
    m["tct_growth"] = tct_growth(arrivals, r.tct_s, cfg.duration_s)
    return r, m, time.perf_counter() - t0


def _simulate_packed(variant: Variant) -> Packed:
    """`_simulate` in a worker process: the call records travel back by column
    (lists of numbers pickle several times faster than millions of objects)."""
    r, m, took = _simulate(variant)
    columns = [list(map(attrgetter(name), r.calls)) for name in _RECORD_FIELDS]
    return (replace(r, calls=[]), m, took), columns


def _unpack(packed: Packed) -> Run:
    (r, m, took), columns = packed
    with collector_paused():  # millions of records, no cycles (saga_hpc.nogc)
        r.calls = list(map(CallRecord, *columns))
    return r, m, took


def _run_variants(
    cfg: BenchConfig,
    profile: GpuProfile,
    tasks: list[Task],
    arrivals: dict[str, float],
    variants: list[Variant],
) -> Iterator[Run]:
    """Each variant's run, in order: in this process, or in `cfg.jobs` forked ones."""
    global _WORK
    _WORK = (cfg, profile, tasks, arrivals)
    try:
        jobs = min(cfg.jobs, len(variants))
        if jobs <= 1:
            yield from map(_simulate, variants)
            return
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for packed in pool.imap(_simulate_packed, variants):
                yield _unpack(packed)
    finally:
        _WORK = None


def run_bench(
    cfg: BenchConfig, profile: GpuProfile, progress: Callable[[str], None] = lambda s: None
) -> tuple[dict[str, Any], dict[str, dict[str, SimResult]]]:
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
        variants: list[Variant] = [(s, None) for s in cfg.systems] + [("saga", "belady")]
        for r, m, took in _run_variants(cfg, profile, tasks, arrivals, variants):
            results[workload][r.system] = r
            runs.append(
                {
                    "system": r.system,
                    "workload": workload,
                    "gpus": cfg.gpus,
                    "seed": cfg.seed,
                    "metrics": m,
                }
            )
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
            p = t["wilcoxon_p"]
            # Run only on more than 10 tasks with some difference (paired_tct_test).
            test = "(no test: <= 10 tasks or no difference)" if math.isnan(p) else f"p = {p:.3g}"
            lines.append(
                f"  {w}: paired Wilcoxon over {t['tasks']} tasks {test}, "
                f"saga faster on {100 * t['saga_faster_share']:.0f}% of tasks"
            )
    return "\n".join(lines)
