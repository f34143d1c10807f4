"""`saga-hpc bench`: every system on the same seeded traces in the simulator: JSON, table, plots."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from saga_hpc.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="compare scheduling systems on the simulated cluster")
    p.add_argument("--gpus", type=int, default=64)
    p.add_argument("--workloads", default="swe-bench,webarena")
    p.add_argument("--systems", default="vllm,saga,sglang,continuum,autellix")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--duration", type=float, default=3600.0, help="seconds of task arrivals (default 3600)"
    )
    p.add_argument(
        "--load",
        type=float,
        default=None,
        help="task arrivals per second per GPU (default: per workload, where the vllm baseline "
        "is loaded but stable: swe-bench 0.3, webarena 0.5)",
    )
    p.add_argument("--profile", default="h100-llama3-8b", help="GPU profile name or JSON path")
    p.add_argument("--json", type=Path, help="write the result document here")
    p.add_argument("--plots", type=Path, help="write PNG figures into this directory")
    p.set_defaults(func=_bench)


def parse_list(text: str, known: set[str], what: str) -> tuple[str, ...]:
    items = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [x for x in items if x not in known]
    if not items or bad:
        given = ", ".join(bad) or "(none given)"
        raise UsageError(f"unknown {what} {given}; choose from {', '.join(sorted(known))}")
    return items


def _bench(args: argparse.Namespace) -> int:
    from saga_hpc.bench.sim_bench import BenchConfig, run_bench, table
    from saga_hpc.core.systems import SYSTEMS
    from saga_hpc.sim.profile import load_profile
    from saga_hpc.workload.generators import GENERATORS

    if args.gpus < 1 or args.duration <= 0 or (args.load is not None and args.load <= 0):
        raise UsageError("--gpus, --duration and --load must be positive")
    try:
        profile = load_profile(args.profile)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    cfg = BenchConfig(
        gpus=args.gpus,
        workloads=parse_list(args.workloads, set(GENERATORS), "workload"),
        systems=parse_list(args.systems, set(SYSTEMS), "system"),
        seed=args.seed,
        duration_s=args.duration,
        load=args.load,
    )
    doc, results = run_bench(cfg, profile, progress=lambda s: print(s, file=sys.stderr, flush=True))
    print(table(doc))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2, allow_nan=True) + "\n")
    if args.plots:
        from saga_hpc.bench.plots import write_plots

        for path in write_plots(results, dict(cfg.tenants), args.plots):
            print(f"plot {path}", file=sys.stderr)
    return 0
