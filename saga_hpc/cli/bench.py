"""`saga-hpc bench`: every system on the same seeded traces in the simulator: JSON, table, plots;
with `--real`, the same kind of trace against real vLLM workers (`bench.real_bench`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from saga_hpc.bench import jsondoc
from saga_hpc.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="compare scheduling systems on the simulated cluster")
    p.add_argument("--gpus", type=int, default=64)
    p.add_argument(
        "--workloads", "--workload", help="default swe-bench,webarena (--real: swe-bench)"
    )
    p.add_argument(
        "--systems", help="default vllm,saga,sglang,continuum,autellix (--real: vllm,saga)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--duration", type=float, default=3600.0, help="seconds of task arrivals (default 3600)"
    )
    p.add_argument(
        "--load",
        type=float,
        default=None,
        help="task arrivals per second per GPU (default: per workload, where the vllm baseline "
        "is loaded but stable: swe-bench 0.29, webarena 0.30)",
    )
    p.add_argument(
        "--burst",
        type=float,
        default=1.0,
        help="mean tasks one job starts at once (default 1: Poisson arrivals; docs/workloads.md)",
    )
    p.add_argument(
        "--profile",
        help="GPU profile name or JSON path (default h100-llama3-8b-chunked; with --real: "
        "replay the trace in the simulator with it and report its TCT error per system "
        "against the real TCT pooled over the rounds)",
    )
    p.add_argument("--json", type=Path, help="write the result document here")
    p.add_argument("--plots", type=Path, help="write PNG figures into this directory")
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="simulations run at once, one process each (default: the CPUs, %(default)s)",
    )
    real = p.add_argument_group("real engines (--real)")
    real.add_argument(
        "--real", action="store_true", help="run on real vLLM workers instead of the simulator"
    )
    real.add_argument("--workers", type=int, default=2, help="vLLM workers (default 2)")
    real.add_argument("--tasks", type=int, default=24, help="tasks of the trace (default 24)")
    real.add_argument(
        "--rate", type=float, default=4.0, help="task arrivals per second (default 4)"
    )
    real.add_argument(
        "--tool-scale",
        type=float,
        default=0.5,
        help="tool latencies of the trace are multiplied by this (default 0.5)",
    )
    real.add_argument(
        "--kv-tokens", type=int, default=6144, help="KV pool per worker, tokens (default 6144)"
    )
    real.add_argument(
        "--fit-profile",
        type=Path,
        metavar="PROFILE.json",
        help="fit a simulator cost profile to the first system's runs (their ledgers' engine "
        "timings, every round's pooled), write it here, replay the trace in the simulator and "
        "report its TCT error per system against the real TCT pooled over the rounds",
    )
    real.add_argument(
        "--prefill-tokens-per-s",
        type=float,
        help="the heads' prefill rate for steal decisions (default: measured by the first "
        "system's probe, used by the later systems)",
    )
    real.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run the systems N times on the same trace, alternating which goes first "
        "(vllm saga, saga vllm, ...), and compare pooled over the rounds (default 1)",
    )
    real.add_argument("--run-dir", type=Path, default=Path("bench-real"), help="logs and stores")
    real.add_argument(
        "--model-dir",
        type=Path,
        default=Path.home() / ".cache" / "saga-hpc" / "bench-model",
        help="where the benchmark model is generated (kept between runs)",
    )
    p.set_defaults(func=_bench)


def parse_list(text: str, known: set[str], what: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in items if x not in known]
    if not items or bad:
        given = ", ".join(bad) or "(none given)"
        raise UsageError(f"unknown {what} {given}; choose from {', '.join(sorted(known))}")
    return items


def check_outputs(args: argparse.Namespace) -> None:
    """Fail before a long run, not after it, when its outputs cannot be written."""
    for flag in ("json", "fit_profile"):
        path: Path | None = getattr(args, flag, None)
        if path is None:
            continue
        option = "--" + flag.replace("_", "-")
        if path.is_dir():
            raise UsageError(f"{option} {path}: is a directory")
        if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
            raise UsageError(f"{option} {path}: no writable directory {path.parent}")
    plots: Path | None = getattr(args, "plots", None)
    if plots is not None:
        try:
            plots.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--plots {plots}: {exc.strerror or exc}") from exc


def _bench(args: argparse.Namespace) -> int:
    check_outputs(args)
    if args.real:
        return _real(args)
    from saga_hpc.bench.sim_bench import BenchConfig, run_bench, table
    from saga_hpc.core.systems import SYSTEMS
    from saga_hpc.sim.profile import DEFAULT_PROFILE, load_profile
    from saga_hpc.workload.generators import GENERATORS

    if args.gpus < 1 or args.duration <= 0 or (args.load is not None and args.load <= 0):
        raise UsageError("--gpus, --duration and --load must be positive")
    if not args.burst >= 1:
        raise UsageError(f"--burst {args.burst}: mean tasks per job must be at least 1")
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: run at least one simulation at a time")
    try:
        profile = load_profile(args.profile or DEFAULT_PROFILE)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    cfg = BenchConfig(
        gpus=args.gpus,
        workloads=parse_list(args.workloads or "swe-bench,webarena", set(GENERATORS), "workload"),
        systems=parse_list(
            args.systems or "vllm,saga,sglang,continuum,autellix", set(SYSTEMS), "system"
        ),
        seed=args.seed,
        duration_s=args.duration,
        load=args.load,
        burst=args.burst,
        jobs=args.jobs,
    )
    doc, results = run_bench(cfg, profile, progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(table(doc))
    if args.json:
        args.json.write_text(jsondoc.dumps(doc) + "\n")
    if args.plots:
        from saga_hpc.bench.plots import write_plots

        for path in write_plots(results, dict(cfg.tenants), args.plots):
            print(f"plot {path}", file=sys.stderr)
    return 0


def _real(args: argparse.Namespace) -> int:
    from saga_hpc.bench.real_bench import RealBenchConfig, run_real_bench
    from saga_hpc.bench.real_trace import TraceScale
    from saga_hpc.bench.sim_bench import table
    from saga_hpc.core.systems import SYSTEMS
    from saga_hpc.workload.generators import GENERATORS

    workloads = parse_list(args.workloads or "swe-bench", set(GENERATORS), "workload")
    if len(workloads) != 1:
        raise UsageError("--real runs one workload at a time (--workload swe-bench)")
    if min(args.workers, args.tasks, args.rate, args.kv_tokens, args.tool_scale) <= 0:
        raise UsageError("--workers, --tasks, --rate, --kv-tokens, --tool-scale must be positive")
    if args.repeat < 1:
        raise UsageError(f"--repeat {args.repeat}: rounds must be at least 1")
    if args.profile and args.fit_profile:
        raise UsageError("--real takes --profile (check a profile) or --fit-profile, not both")
    check = None
    if args.profile:
        from saga_hpc.sim.profile import load_profile

        try:
            check = load_profile(args.profile)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    cfg = RealBenchConfig(
        model_dir=args.model_dir,
        run_dir=args.run_dir,
        workers=args.workers,
        systems=parse_list(args.systems or "vllm,saga", set(SYSTEMS), "system"),
        workload=workloads[0],
        seed=args.seed,
        scale=TraceScale(tasks=args.tasks, rate_per_s=args.rate, tool_scale=args.tool_scale),
        kv_tokens=args.kv_tokens,
        prefill_tokens_per_s=args.prefill_tokens_per_s,
        fit_profile=args.fit_profile,
        check_profile=check,
        repeat=args.repeat,
    )
    doc, _ = run_real_bench(cfg, progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(table(doc))
    c = doc.get("comparison")
    if c and "rounds" in c:
        print(rounds_report(c))
    elif c:
        hit = {r["system"]: r["metrics"]["kv_hit_rate"] for r in doc["runs"]}
        print(f"  KV hit rate saga - vllm        {100 * (hit['saga'] - hit['vllm']):+.1f} points")
    for run in doc["runs"]:
        label = f"{run['system']} round {run['round']}" if args.repeat > 1 else run["system"]
        print(
            f"recomputing a {doc['config']['probe_tokens']}-token prefix costs "
            f"{run['probe']['recompute_s']:.3f} s here (measured before the {label} run)"
        )
    check = doc.get("sim_vs_real", {})
    if "fit" in check:
        f = check["fit"]
        runs = "run" if args.repeat == 1 else f"runs of {args.repeat} rounds"
        print(
            f"profile fitted to the {check['fitted_on']} {runs} ({f['calls']} calls): prefill "
            f"{f['prefill_tokens_per_s']:.0f} tokens/s, decode step "
            f"{1000 * f['decode_step_s']:.1f} ms + {1000 * f['decode_step_per_seq_s']:.1f} ms "
            f"per further sequence, {1000 * f['call_overhead_s']:.0f} ms per call outside "
            f"the engine; engine speed calibrated x{check['engine_speed_factor']:.3f} on their "
            f"TCT (uncalibrated: {errors(check['systems_uncalibrated'])})"
        )
    if "this_run" in check.get("probe", {}):
        print(probe_line(check["probe"]["profile"], check["probe"]["this_run"], check))
    for system, e in check.get("systems", {}).items():
        print(sim_vs_real_line(system, e, fitted=check.get("fitted_on") == system))
    if args.json:
        args.json.write_text(jsondoc.dumps(doc) + "\n")
    return 0


def probe_line(fitted: list[float] | None, now: list[float], check: dict[str, Any]) -> str:
    """How a checked profile followed this run's probe (`GpuProfile.at_speed`)."""
    from saga_hpc.sim.profile import PROBE_NOISE, beyond_noise

    if not fitted:
        return "profile not scaled to this run's probe (it has no probe figures)"

    def rate(name: str, run: float, profile: float) -> str:
        ratio = run / profile
        followed = "followed" if beyond_noise(ratio) != 1.0 else "within the noise, not followed"
        return f"{name} {run:.0f} vs {profile:.0f} tokens/s (x{ratio:.2f}: {followed})"

    return (
        f"this run's probe against the profile's: {rate('prefill', now[0], fitted[0])}, "
        f"{rate('decode', now[1], fitted[1])}; a rate follows beyond x{PROBE_NOISE:g} either "
        f"way (unscaled: {errors(check['systems_unscaled'])})"
    )


def errors(systems: dict[str, Any]) -> str:
    """'vllm +13.7%, saga +6.6%': each system's simulated TCT error."""
    return ", ".join(f"{s} {100 * e['tct_mean_error']:+.1f}%" for s, e in systems.items())


def sim_vs_real_line(system: str, e: dict[str, Any], fitted: bool) -> str:
    """One system's simulated TCT against the real one (pooled over the rounds, with the
    per-round errors' range when there are several)."""
    several = e["rounds"] > 1
    real = f" (mean of {e['rounds']} rounds)" if several else ""
    spread = (
        f"; rounds {100 * e['tct_mean_error_min']:+.1f}% to {100 * e['tct_mean_error_max']:+.1f}%"
        if several
        else ""
    )
    seen = f" (fitted on {'these runs' if several else 'this run'})" if fitted else ""
    return (
        f"simulator vs real, {system}: TCT mean {e['tct_mean_sim_s']:.2f} s vs "
        f"{e['tct_mean_real_s']:.2f} s{real} ({100 * e['tct_mean_error']:+.1f}%{spread}), "
        f"hit rate {e['kv_hit_rate_sim']:.3f} vs {e['kv_hit_rate_real']:.3f}{seen}"
    )


def rounds_report(c: dict[str, Any]) -> str:
    """The per-round figures of a repeated `bench --real` and which one is the headline."""
    rounds = c["rounds"]
    lines = []
    for r in rounds["per_round"]:
        lines.append(
            f"  round {r['round']} ({r['first']} first): TCT ratio vllm/saga "
            f"{r['tct_mean_ratio_vllm_over_saga']:.3f} (Wilcoxon p = {r['wilcoxon_p']:.3g}), "
            f"hit vllm {r['kv_hit_rate']['vllm']:.3f} saga {r['kv_hit_rate']['saga']:.3f} "
            f"({r['kv_hit_gain_points']:+.1f} points)"
        )
    spread = rounds["tct_ratio"]
    ci = spread["ci95"]
    interval = f", 95% interval over rounds {ci[0]:.3f}-{ci[1]:.3f}" if ci else ""
    lines += [
        f"  KV hit rate saga - vllm        {rounds['kv_hit_gain_points']:+.1f} points (rounds "
        f"{rounds['kv_hit_gain_points_min']:+.1f} to {rounds['kv_hit_gain_points_max']:+.1f})",
        f"headline: TCT mean ratio vllm/saga {c['tct_mean_ratio_vllm_over_saga']:.3f} pooled "
        f"over {rounds['n']} rounds (rounds {spread['min']:.3f}-{spread['max']:.3f}{interval}; "
        f"saga faster in {spread['above_1']} of {rounds['n']})",
        f"  why: {rounds['headline_why']}",
    ]
    return "\n".join(lines)
