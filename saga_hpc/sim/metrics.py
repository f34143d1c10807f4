"""Metrics of one simulated run, named as in DESIGN.md ("Metrics")."""

from __future__ import annotations

import math
import statistics
from array import array
from collections.abc import MutableSequence, Sequence
from typing import Any

import numpy as np

from saga_hpc.sim.engine import SimResult
from saga_hpc.sim.records import FIELDS, CallRecord, CallRecords, new_column

WINDOW_S = 10.0


def _q(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    k = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
    # The k-th smallest value, as sorting would give it, selected in linear time
    # (a run of an hour on 64 GPUs has millions of calls); on a copy, so a run's
    # column stays in completion order.
    return float(np.partition(_floats(values), k)[k])


def _floats(values: Sequence[float]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Floats as an array: a column's `array` without a copy, a list by `fromiter`."""
    if isinstance(values, array):
        return np.frombuffer(values, dtype=np.float64)
    return np.fromiter(values, dtype=np.float64, count=len(values))


def summarize(
    r: SimResult, shares: dict[str, float], slo_ttft_s: float = 2.0, slo_tpot_s: float = 0.1
) -> dict[str, float]:
    tct = list(r.tct_s.values())
    # Whole columns at a time (an hour on 64 GPUs has millions of calls), with the
    # same results as a pass over the records: integer sums, and each tenant's
    # service summed in completion order (a running sum, not numpy's pairwise one).
    cols = _columns(r.calls)
    ttft, tpot, out = cols["ttft_s"], cols["tpot_s"], cols["out"]
    n_calls = len(ttft)
    out_tokens, prompt, hit = sum(out), sum(cols["prompt"]), sum(cols["hit"])
    peak = 0.0
    slo_ok = 0
    service: dict[str, float] = {}
    if n_calls:
        windows = np.floor_divide(_floats(cols["finished"]), WINDOW_S)
        peak = float(np.bincount(windows.astype(np.int64), weights=out).max())
        ttft_a, tpot_a = _floats(ttft), _floats(tpot)
        slo_ok = int(np.count_nonzero((ttft_a <= slo_ttft_s) & (tpot_a <= slo_tpot_s)))
        tenant_a = np.asarray(cols["tenant"], dtype=object)
        service_a = _floats(cols["service_s"])
        for tenant in dict.fromkeys(cols["tenant"]):  # in order of first completion
            service[tenant] = float(np.cumsum(service_a[tenant_a == tenant])[-1])
    span = max(r.makespan_s, 1e-9)
    dev, jain = _fairness(service, shares)
    return {
        "tasks": len(tct),
        "calls": n_calls,
        "tct_mean_s": statistics.fmean(tct) if tct else 0.0,
        "tct_median_s": statistics.median(tct) if tct else 0.0,
        "tct_p99_s": _q(tct, 0.99),
        "mean_ttft_ms": 1000 * statistics.fmean(ttft) if ttft else 0.0,
        "p99_ttft_ms": 1000 * _q(ttft, 0.99),
        "mean_tpot_ms": 1000 * statistics.fmean(tpot) if tpot else 0.0,
        "output_throughput": out_tokens / span,
        "peak_output_throughput": peak / WINDOW_S,
        "kv_hit_rate": hit / prompt if prompt else 0.0,
        "recomputed_prefill_tokens": float(r.recomputed_tokens),
        "retention_misses": float(r.retention_misses),
        "kv_mem_util": statistics.fmean(u for _, _, u in r.kv_samples) if r.kv_samples else 0.0,
        "kv_mem_used": statistics.fmean(u for _, u, _ in r.kv_samples) if r.kv_samples else 0.0,
        "slo_attainment": slo_ok / n_calls if n_calls else 0.0,
        "fair_share_max_dev": dev,
        "jain_index": jain,
        "events": float(r.events),
        "events_per_s": r.events / r.wall_s if r.wall_s else 0.0,
        "sim_wall_s": r.wall_s,
    }


def _columns(calls: Sequence[CallRecord]) -> dict[str, MutableSequence[Any]]:
    """The records' fields by column: a run's own, or read off records."""
    if isinstance(calls, CallRecords):
        return calls.columns
    columns = {name: new_column(name) for name in FIELDS}
    for name, column in columns.items():
        column.extend(getattr(c, name) for c in calls)
    return columns


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
