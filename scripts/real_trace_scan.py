"""Where could retention matter on `bench --real`'s trace? The simulator's answer.

For each pool size, tool scale and task count: the trace's hit-rate floor (only
the tenants' system prompts cached) and ceiling (every context kept), counted
token by token as the engines see them, then vllm, saga and saga with Belady's
offline retention in the simulator with a fitted profile (default cpu-tiny),
means over seeds. Usage (seconds per line on the 2-core machine):

    python scripts/real_trace_scan.py --tasks 24,48 --tool-scale 0.5,1,2 \\
        --kv-tokens 6144,9216,12288,16384 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics

from saga_hpc.bench.real_bench import BLOCK_SIZE
from saga_hpc.bench.real_trace import TraceScale, TraceTokens, scaled_trace
from saga_hpc.bench.sim_bench import DEFAULT_TENANTS
from saga_hpc.sim.engine import Simulation
from saga_hpc.sim.metrics import summarize
from saga_hpc.sim.profile import load_profile
from saga_hpc.workload.model import Task

VOCAB = 368  # the generated model's; only which prefixes are shared matters here
RUNS = {"vllm": ("vllm", None), "saga": ("saga", None), "belady": ("saga", "belady")}


def floor_and_ceiling(tasks: list[Task], seed: int) -> tuple[float, float]:
    tokens = TraceTokens(VOCAB, seed)
    total = floor = ceiling = 0
    for task in tasks:
        previous: list[int] = []
        for prompt in tokens.prompts(task):
            usable = (len(prompt) - 1) // BLOCK_SIZE * BLOCK_SIZE  # vLLM recomputes the last token
            system = min(task.system_tokens // BLOCK_SIZE * BLOCK_SIZE, usable)
            common = next(
                (i for i, (a, b) in enumerate(zip(previous, prompt, strict=False)) if a != b),
                min(len(previous), len(prompt)),
            )
            own = min(common // BLOCK_SIZE * BLOCK_SIZE, usable)
            total += len(prompt)
            floor += system
            ceiling += max(system, own)
            previous = prompt
    return floor / total, ceiling / total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="cpu-tiny")
    p.add_argument("--tasks", default="24")
    p.add_argument("--tool-scale", default="0.5")
    p.add_argument("--kv-tokens", default="6144")
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args()
    profile = load_profile(args.profile)
    shares = dict(DEFAULT_TENANTS)
    seeds = [int(s) for s in args.seeds.split(",")]
    grid = itertools.product(
        [int(x) for x in args.tasks.split(",")],
        [float(x) for x in args.tool_scale.split(",")],
        [int(x) for x in args.kv_tokens.split(",")],
    )
    for n, tool, kv in grid:
        pool = dataclasses.replace(profile, kv_tokens=kv)
        traces = [
            scaled_trace("swe-bench", s, DEFAULT_TENANTS, TraceScale(tasks=n, tool_scale=tool))
            for s in seeds
        ]
        bounds = [floor_and_ceiling(t, s) for t, s in zip(traces, seeds, strict=True)]
        cells = []
        for name, (system, retention) in RUNS.items():
            ms = [
                summarize(
                    Simulation(t, system, 2, pool, retention=retention, shares=shares).run(), shares
                )
                for t in traces
            ]
            tct = statistics.fmean(m["tct_mean_s"] for m in ms)
            hit = statistics.fmean(m["kv_hit_rate"] for m in ms)
            cells.append(f"{name} {tct:5.1f} s {hit:.3f}")
        print(
            f"tasks {n} tool x{tool} kv {kv}: floor {statistics.fmean(b[0] for b in bounds):.3f} "
            f"ceiling {statistics.fmean(b[1] for b in bounds):.3f} | " + " | ".join(cells),
            flush=True,
        )


if __name__ == "__main__":
    main()
