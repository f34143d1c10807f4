#!/usr/bin/env python3
"""One hash over what a grid of simulations produced, to show a change moved no result.

Runs every system (and saga with Belady's retention) on both workloads and both
profiles, at the bench load and overloaded, through the API, and hashes each
run's every call record (each column in completion order), TCT per task (in
completion order), KV sample, retention misses, recomputed tokens, event count
and makespan. `repr` of each number goes into the hash, so an int that became a
float (or a float one ulp off) changes it. Compare two trees, or the compiled
build against pure Python on one tree (`SAGA_PURE_PYTHON=1`, saga_hpc/compiled.py):

    python scripts/sim_fingerprint.py > a.txt
    SAGA_PURE_PYTHON=1 python scripts/sim_fingerprint.py > b.txt
    diff a.txt b.txt

One line per run (its hash and event count), the last line the hash of all;
which build ran and the seconds each run took go to stderr. `--quick` runs the
first size only.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from array import array
from collections.abc import Iterable

from saga_hpc.bench.sim_bench import DEFAULT_LOAD, DEFAULT_TENANTS
from saga_hpc.sim.engine import SimResult, Simulation
from saga_hpc.sim.profile import load_profile
from saga_hpc.workload.generators import generate

SYSTEMS = (("vllm", None), ("saga", None), ("sglang", None), ("continuum", None))
SYSTEMS += (("autellix", None), ("saga", "belady"))
WORKLOADS = ("swe-bench", "webarena")
PROFILES = ("h100-llama3-8b-chunked", "h100-llama3-8b")
# (GPUs, seconds of arrivals, tasks/s per GPU: None is the workload's bench load)
SIZES = ((8, 300.0, None), (16, 600.0, None), (8, 300.0, 1.5))


def digest(result: SimResult) -> str:
    h = hashlib.sha256()

    def put(values: Iterable[object]) -> None:
        h.update("\x1f".join(map(repr, values)).encode())
        h.update(b"\x1e")

    columns = result.calls.columns  # type: ignore[attr-defined]  # a run's CallRecords
    for name, column in columns.items():
        h.update(name.encode())
        if isinstance(column, array):
            h.update(column.typecode.encode() + column.tobytes())
        else:
            put(column)
    put(result.tct_s.items())
    put(result.kv_samples)
    put((result.system, result.retention_misses, result.recomputed_tokens, result.events))
    put((result.makespan_s,))
    return h.hexdigest()[:16]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first size only")
    args = parser.parse_args()
    try:
        from saga_hpc import compiled  # trees before the compiled build have none

        print(compiled.status(), file=sys.stderr)
    except ImportError:
        print("saga_hpc: no compiled build in this tree", file=sys.stderr)
    total = hashlib.sha256()
    started = time.perf_counter()
    for gpus, duration, load in SIZES[:1] if args.quick else SIZES:
        for workload in WORKLOADS:
            rate = (load or DEFAULT_LOAD[workload]) * gpus
            tasks = generate(
                workload, rate_per_s=rate, duration_s=duration, seed=0, tenants=DEFAULT_TENANTS
            )
            for profile_name in PROFILES:
                profile = load_profile(profile_name)
                for system, retention in SYSTEMS:
                    t0 = time.perf_counter()
                    result = Simulation(
                        tasks,
                        system,
                        gpus,
                        profile,
                        retention=retention,
                        shares=dict(DEFAULT_TENANTS),
                    ).run()
                    run = digest(result)
                    total.update(run.encode())
                    name = f"{result.system} {workload} {profile_name} {gpus}x{duration:.0f}s"
                    print(f"{run} {name} load={load or 'bench'} events={result.events}")
                    print(f"  {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print(f"all {total.hexdigest()[:16]}")
    print(f"{time.perf_counter() - started:.0f} s in all", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
