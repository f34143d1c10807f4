"""A simulator profile against the real runs of earlier `bench --real` results, no rerun.

For each results JSON: its seed's trace replayed in the simulator with the
profile scaled to that bench's probe (as `bench --real --profile` does) and
as shipped, against the real TCT of its rounds, per system. Benches on the
bench model the profile was fitted for only (the trace is rebuilt from the
JSON's seed, task count, rate and tool scale).

    python scripts/check_profile.py docs/results/bench-real-fit-repeat6-6layers.json \\
        docs/results/bench-real-check-6layers-seed1-repeat4.json [--profile cpu-tiny]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from saga_hpc.bench.fit_profile import sim_vs_real
from saga_hpc.bench.probe import probe_speed
from saga_hpc.bench.real_bench import BENCH_MODEL, BLOCK_SIZE
from saga_hpc.bench.real_trace import TraceScale, scaled_trace
from saga_hpc.sim.profile import GpuProfile, load_profile


def errors(doc: dict[str, Any], profile: GpuProfile) -> dict[str, float]:
    cfg = doc["config"]
    tenants = tuple(cfg["tenants"].items())
    scale = TraceScale(**{f.name: cfg["trace"][f.name] for f in dataclasses.fields(TraceScale)})
    tasks = scaled_trace(cfg["workloads"][0], cfg["seed"], tenants, scale)
    profile = dataclasses.replace(
        profile,
        kv_tokens=cfg["kv_tokens_per_worker"] // BLOCK_SIZE * BLOCK_SIZE,
        max_batch=cfg["max_num_seqs"],
    )
    metrics = [
        {run["system"]: run["metrics"] for run in doc["runs"] if run["round"] == i}
        for i in range(cfg["repeat"])
    ]
    checked = sim_vs_real(tasks, metrics, profile, cfg["tenants"], cfg["workers"])
    return {system: e["tct_mean_error"] for system, e in checked.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+", type=Path, help="bench --real --json documents")
    ap.add_argument("--profile", default="cpu-tiny", help="name or path (default cpu-tiny)")
    args = ap.parse_args()
    profile = load_profile(args.profile)
    for path in args.results:
        doc = json.loads(path.read_text())
        if doc["config"]["model"] != dataclasses.asdict(BENCH_MODEL):
            print(f"{path.name}: skipped, model {doc['config']['model']} is not the bench model")
            continue
        speed = probe_speed(doc["runs"])
        scaled = errors(doc, profile.at_speed(*speed))
        shipped = errors(doc, profile)
        print(
            f"{path.name}: seed {doc['config']['seed']}, {doc['config']['repeat']} rounds, "
            f"probe {speed[0]:.0f} / {speed[1]:.0f} tokens/s; sim vs real TCT "
            + ", ".join(f"{s} {100 * e:+.1f}%" for s, e in scaled.items())
            + " (unscaled "
            + ", ".join(f"{s} {100 * e:+.1f}%" for s, e in shipped.items())
            + ")"
        )


if __name__ == "__main__":
    main()
