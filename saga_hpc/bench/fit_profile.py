"""Fit a simulator cost profile (`GpuProfile`) to measured real-engine runs, and check it.

The simulator's GPU model has three costs: prefill throughput, and a decode
step that grows linearly with the batch. They are read off the real runs:

- prefill: the probe's cold-minus-warm latency of one long prompt on an idle
  worker (`real_bench.Probe`) is the time to compute its cached tokens;
- decode step: every call's time per output token, against the number of
  calls decoding on its worker meanwhile (calls in flight over its decode
  window, divided by the workers), by least squares: step(b) = s1 + k (b - 1).

`sim_vs_real` then replays the same trace in the simulator with that profile
and reports the TCT error per system.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from saga_hpc.sim.engine import CallRecord, SimResult, Simulation
from saga_hpc.sim.metrics import summarize
from saga_hpc.sim.profile import GpuProfile
from saga_hpc.workload.model import Task


def batch_sizes(calls: Sequence[CallRecord], workers: int) -> list[float]:
    """Mean calls in flight per worker over each call's decode window."""
    spans = [(c.arrived, c.finished) for c in calls]
    out = []
    for c in calls:
        start = c.arrived + c.ttft_s
        length = max(c.finished - start, 1e-9)
        overlap = sum(max(0.0, min(e, c.finished) - max(s, start)) for s, e in spans)
        out.append(max(1.0, overlap / length / workers))
    return out


def fit_step(batches: Sequence[float], tpots: Sequence[float]) -> tuple[float, float]:
    """Least-squares (s1, k) of tpot = s1 + k (batch - 1), with k >= 0 and s1 > 0."""
    xs = [b - 1 for b in batches]
    mx, my = statistics.fmean(xs), statistics.fmean(tpots)
    var = sum((x - mx) ** 2 for x in xs)
    k = (
        max(0.0, sum((x - mx) * (y - my) for x, y in zip(xs, tpots, strict=True)) / var)
        if var
        else 0.0
    )
    s1 = my - k * mx
    if s1 <= 0:  # the line would cross zero: keep the mean as a flat step
        return my, 0.0
    return s1, k


def fit_profile(
    name: str,
    runs: Sequence[SimResult],
    prefill_tokens_per_s: float,
    kv_tokens: int,
    block_tokens: int,
    max_batch: int,
    description: str,
) -> GpuProfile:
    batches: list[float] = []
    tpots: list[float] = []
    for r in runs:
        # One-token calls have no decode window to time.
        timed = [c for c in r.calls if c.out > 1]
        batches += batch_sizes(timed, r.gpus)
        tpots += [c.tpot_s for c in timed]
    s1, k = fit_step(batches, tpots)
    return GpuProfile(
        name=name,
        block_tokens=block_tokens,
        kv_tokens=kv_tokens,
        prefill_tokens_per_s=prefill_tokens_per_s,
        decode_step_s_batch1=s1,
        decode_step_s_batch64=s1 + 63 * k,
        max_batch=max_batch,
        description=description,
    )


def sim_vs_real(
    tasks: list[Task], real: dict[str, SimResult], profile: GpuProfile, shares: dict[str, float]
) -> dict[str, dict[str, float]]:
    """Per system: TCT mean real and simulated, and the relative error."""
    out = {}
    for system, r in real.items():
        sim = Simulation(tasks, system, r.gpus, profile, shares=shares).run()
        real_m, sim_m = summarize(r, shares), summarize(sim, shares)
        out[system] = {
            "tct_mean_real_s": real_m["tct_mean_s"],
            "tct_mean_sim_s": sim_m["tct_mean_s"],
            "tct_mean_error": sim_m["tct_mean_s"] / real_m["tct_mean_s"] - 1,
            "kv_hit_rate_real": real_m["kv_hit_rate"],
            "kv_hit_rate_sim": sim_m["kv_hit_rate"],
        }
    return out
