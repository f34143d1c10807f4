"""Metrics of one simulated run, named as in DESIGN.md ("Metrics")."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

import numpy as np

from saga_hpc.sim.engine import SimResult

WINDOW_S = 10.0


def _q(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    k = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
    # The k-th smallest value, as sorting would give it, selected in linear time
    # (a run of an hour on 64 GPUs has millions of calls).
    return float(np.partition(np.asarray(values, dtype=np.float64), k)[k])


def summarize(
    r: SimResult, shares: dict[str, float], slo_ttft_s: float = 2.0, slo_tpot_s: float = 0.1
) -> dict[str, float]:
    tct = list(r.tct_s.values())
    # One pass over the records (an hour on 64 GPUs has millions), the same
    # arithmetic in the same order as a pass per figure.
    ttft: list[float] = []
    tpot: list[float] = []
    add_ttft, add_tpot = ttft.append, tpot.append
    buckets: dict[int, int] = defaultdict(int)
    service: dict[str, float] = defaultdict(float)
    out_tokens = prompt = hit = slo_ok = 0
    for c in r.calls:
        c_ttft, c_tpot, c_out = c.ttft_s, c.tpot_s, c.out
        add_ttft(c_ttft)
        add_tpot(c_tpot)
        out_tokens += c_out
        buckets[int(c.finished // WINDOW_S)] += c_out
        prompt += c.prompt
        hit += c.hit
        if c_ttft <= slo_ttft_s and c_tpot <= slo_tpot_s:
            slo_ok += 1
        service[c.tenant] += c.service_s
    span = max(r.makespan_s, 1e-9)
    dev, jain = _fairness(service, shares)
    return {
        "tasks": len(tct),
        "calls": len(r.calls),
        "tct_mean_s": statistics.fmean(tct) if tct else 0.0,
        "tct_median_s": statistics.median(tct) if tct else 0.0,
        "tct_p99_s": _q(tct, 0.99),
        "mean_ttft_ms": 1000 * statistics.fmean(ttft) if ttft else 0.0,
        "p99_ttft_ms": 1000 * _q(ttft, 0.99),
        "mean_tpot_ms": 1000 * statistics.fmean(tpot) if tpot else 0.0,
        "output_throughput": out_tokens / span,
        "peak_output_throughput": max(buckets.values(), default=0) / WINDOW_S,
        "kv_hit_rate": hit / prompt if prompt else 0.0,
        "recomputed_prefill_tokens": float(r.recomputed_tokens),
        "retention_misses": float(r.retention_misses),
        "kv_mem_util": statistics.fmean(u for _, _, u in r.kv_samples) if r.kv_samples else 0.0,
        "kv_mem_used": statistics.fmean(u for _, u, _ in r.kv_samples) if r.kv_samples else 0.0,
        "slo_attainment": slo_ok / len(r.calls) if r.calls else 0.0,
        "fair_share_max_dev": dev,
        "jain_index": jain,
        "events": float(r.events),
        "events_per_s": r.events / r.wall_s if r.wall_s else 0.0,
        "sim_wall_s": r.wall_s,
    }


def _fairness(service: dict[str, float], shares: dict[str, float]) -> tuple[float, float]:
    """Max deviation of a tenant's share of GPU service (seconds per tenant) from
    its entitlement, and Jain's index of share/entitlement, over the run (tenants
    with weight > 0)."""
    tenants = [t for t in service if shares.get(t, 0) > 0]
    if len(tenants) < 2:
        return 0.0, 1.0
    total_s = sum(service[t] for t in tenants)
    total_w = sum(shares[t] for t in tenants)
    ratios = [(service[t] / total_s) / (shares[t] / total_w) for t in tenants]
    dev = max(abs(service[t] / total_s - shares[t] / total_w) for t in tenants)
    jain = sum(ratios) ** 2 / (len(ratios) * sum(x * x for x in ratios))
    return dev, jain


def tct_growth(arrivals: dict[str, float], tct_s: dict[str, float], duration_s: float) -> float:
    """Mean TCT of the tasks that arrived in the last quarter of the run over that
    of the first quarter: about 1 when the system is stable, growing with the
    run's length when its queues grow without bound (overload)."""
    quarters: list[list[float]] = [[], []]
    for task_id, arrival in arrivals.items():
        if task_id not in tct_s:
            continue
        if arrival < duration_s / 4:
            quarters[0].append(tct_s[task_id])
        elif arrival >= 3 * duration_s / 4:
            quarters[1].append(tct_s[task_id])
    if not quarters[0] or not quarters[1]:
        return math.nan
    return statistics.fmean(quarters[1]) / statistics.fmean(quarters[0])
