"""`saga-hpc sim`: one system on one workload (generated or a JSONL trace) in the simulator."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from saga_hpc.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sim", help="simulate one scheduling system on a workload")
    p.add_argument("--system", default="saga")
    p.add_argument("--retention", help="override the system's retention policy (e.g. belady)")
    p.add_argument("--workload", default="swe-bench", help="generator name (ignored with --trace)")
    p.add_argument("--trace", type=Path, help="replay this JSONL trace instead of generating")
    p.add_argument("--write-trace", type=Path, help="save the generated tasks as a JSONL trace")
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--duration", type=float, default=600.0)
    p.add_argument(
        "--load",
        type=float,
        help="task arrivals per second per GPU (default: the bench load of the workload, "
        "where the vllm baseline is loaded but stable)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--burst",
        type=float,
        default=1.0,
        help="mean tasks one job starts at once (default 1: Poisson arrivals; docs/workloads.md)",
    )
    p.add_argument(
        "--profile",
        help="GPU profile name or JSON path (default h100-llama3-8b-chunked: vLLM's chunked "
        "prefill, where prompts computed on a GPU slow its decodes)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    # Once the output is written nothing is open; the run's millions of objects
    # need not be freed one by one at exit (saga_hpc.cli.main).
    p.set_defaults(func=_sim, exit_without_teardown=True)


def _sim(args: argparse.Namespace) -> int:
    from saga_hpc.bench.sim_bench import DEFAULT_LOAD
    from saga_hpc.core.kvpool import POLICIES
    from saga_hpc.core.systems import SYSTEMS
    from saga_hpc.sim.engine import Simulation
    from saga_hpc.sim.metrics import summarize
    from saga_hpc.sim.profile import DEFAULT_PROFILE, load_profile
    from saga_hpc.workload.generators import GENERATORS, generate
    from saga_hpc.workload.trace import TraceError, read_trace, write_trace

    if args.system not in SYSTEMS:
        raise UsageError(f"--system {args.system!r}: choose one of {', '.join(SYSTEMS)}")
    if args.retention and args.retention not in POLICIES:
        raise UsageError(f"--retention {args.retention!r}: choose one of {', '.join(POLICIES)}")
    if args.gpus < 1 or args.duration <= 0 or (args.load is not None and args.load <= 0):
        raise UsageError("--gpus, --duration and --load must be positive")
    if not args.burst >= 1:
        raise UsageError(f"--burst {args.burst}: mean tasks per job must be at least 1")
    try:
        profile = load_profile(args.profile or DEFAULT_PROFILE)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    tenants = (("physics", 3.0), ("chem", 1.0))
    if args.trace:
        try:
            tasks = read_trace(args.trace)
        except (OSError, TraceError) as exc:
            raise UsageError(f"--trace {args.trace}: {exc}") from exc
    else:
        if args.workload not in GENERATORS:
            raise UsageError(f"--workload {args.workload!r}: choose one of {', '.join(GENERATORS)}")
        tasks = generate(
            args.workload,
            rate_per_s=(args.load or DEFAULT_LOAD.get(args.workload, 0.5)) * args.gpus,
            duration_s=args.duration,
            seed=args.seed,
            tenants=tenants,
            burst=args.burst,
        )
    if args.write_trace:
        write_trace(tasks, args.write_trace)
    shares = {t: w for t, w in tenants}
    try:
        sim = Simulation(
            tasks, args.system, args.gpus, profile, retention=args.retention, shares=shares
        )
    except ValueError as exc:  # a trace call larger than the profile's KV pool
        raise UsageError(str(exc)) from exc
    r = sim.run()
    m = summarize(r, shares)
    if args.json:
        print(json.dumps({"system": r.system, "gpus": args.gpus, "metrics": m}, indent=2))
    else:
        print(
            f"{r.system} on {args.gpus} GPUs: {len(tasks)} tasks, {m['calls']} calls, "
            f"{r.events} events in {r.wall_s:.1f} s ({m['events_per_s']:.0f} events/s)"
        )
        for key in (
            "tct_mean_s",
            "tct_median_s",
            "tct_p99_s",
            "mean_ttft_ms",
            "output_throughput",
            "peak_output_throughput",
            "kv_hit_rate",
            "kv_mem_util",
            "retention_misses",
            "slo_attainment",
            "jain_index",
        ):
            print(f"  {key:24s} {m[key]:12.3f}")
    return 0
