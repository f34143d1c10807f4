"""Repeated, interleaved runs of `bench --real` and their pooled comparison.

On a shared machine the engines' speed drifts between two runs a few minutes
apart, and one run pair's per-task Wilcoxon test cannot see it: it pairs tasks,
not the conditions they ran under (docs/usage.md, `bench --real`: the same
trace gave 0.92x and 1.15x, each with p < 0.02). So the systems run N rounds on
the same seeded trace, alternating which goes first (ABBA: vllm saga, saga vllm,
...), so that a drift linear in time weighs on every system alike over each
pair of rounds. The round is the unit that replicates the machine's load:

- headline: the pooled TCT ratio (per task, the mean TCT over the rounds per
  system; then the ratio of the means), with the per-round ratios' range and a
  95% t-interval over rounds, which does include the run-to-run drift;
- the paired Wilcoxon test on the pooled per-task means is reported too, but
  it says the tasks differ under these N runs, not that another N would agree.

Pure functions over plain numbers: the engines are not needed to test them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from saga_hpc.bench.sim_bench import geomean, paired_tct_test

BASELINE, CANDIDATE = "vllm", "saga"


def run_order(systems: Sequence[str], repeat: int) -> list[tuple[int, str]]:
    """(round, system) in the order they run: round r in the given order when r is
    even, reversed when odd (ABBA for two systems). An even `repeat` balances a
    linear drift exactly; an odd one leaves the last round's order unbalanced."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, not {repeat}")
    order: list[tuple[int, str]] = []
    for r in range(repeat):
        order += [(r, s) for s in (systems if r % 2 == 0 else list(reversed(systems)))]
    return order


def pooled_tct(rounds: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per task, its mean TCT over the rounds (tasks that finished in every round)."""
    if not rounds:
        return {}
    common = set(rounds[0]).intersection(*rounds[1:])
    return {t: statistics.fmean(r[t] for r in rounds) for t in sorted(common)}


def tct_ratio(baseline: Mapping[str, float], candidate: Mapping[str, float]) -> float:
    """Mean TCT of the baseline over that of the candidate, on the tasks both finished."""
    common = set(baseline) & set(candidate)
    if not common:
        return math.nan
    den = statistics.fmean(candidate[t] for t in common)
    return statistics.fmean(baseline[t] for t in common) / den if den else math.nan


def spread(ratios: Sequence[float]) -> dict[str, Any]:
    """Per-round ratios: range, geometric mean and a 95% t-interval of it over the
    rounds (the rounds as replicates; null with one round)."""
    from scipy.stats import t as student_t

    logs = [math.log(x) for x in ratios if x > 0 and math.isfinite(x)]
    ci: list[float] | None = None
    if len(logs) >= 2:
        half = student_t.ppf(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
        mid = statistics.fmean(logs)
        ci = [math.exp(mid - half), math.exp(mid + half)]
    return {
        "min": min(ratios, default=math.nan),
        "max": max(ratios, default=math.nan),
        "geomean": geomean(list(ratios)),
        "ci95": ci,
        "above_1": sum(x > 1 for x in ratios),
    }


def repeated_comparison(
    tct: Sequence[Mapping[str, Mapping[str, float]]],
    metrics: Sequence[Mapping[str, Mapping[str, float]]],
    first: Sequence[str],
    workload: str,
) -> dict[str, Any]:
    """saga vs vllm over rounds. `tct[r][system]` is task -> TCT of round r,
    `metrics[r][system]` its `summarize` dict, `first[r]` the system that ran
    first in round r. The keys of `sim_bench.compare` hold the pooled figures;
    `rounds` holds each round and the spread over them."""
    pooled = {s: pooled_tct([r[s] for r in tct]) for s in (BASELINE, CANDIDATE)}

    def mean(system: str, key: str) -> float:
        return statistics.fmean(float(m[system][key]) for m in metrics)

    def ratio(key: str) -> float:
        den = mean(BASELINE, key)
        return mean(CANDIDATE, key) / den if den else math.nan

    per_round: list[dict[str, Any]] = []
    ratios: list[float] = []
    gains: list[float] = []
    for r, (times, m) in enumerate(zip(tct, metrics, strict=True)):
        hit = {s: float(m[s]["kv_hit_rate"]) for s in (BASELINE, CANDIDATE)}
        ratios.append(tct_ratio(times[BASELINE], times[CANDIDATE]))
        gains.append(100 * (hit[CANDIDATE] - hit[BASELINE]))
        per_round.append(
            {
                "round": r,
                "first": first[r],
                "tct_mean_ratio_vllm_over_saga": ratios[-1],
                "wilcoxon_p": paired_tct_test(times[CANDIDATE], times[BASELINE])["wilcoxon_p"],
                "kv_hit_rate": hit,
                "kv_hit_gain_points": gains[-1],
            }
        )
    hit = {s: mean(s, "kv_hit_rate") for s in (BASELINE, CANDIDATE)}
    return {
        "tct_mean_ratio_vllm_over_saga": tct_ratio(pooled[BASELINE], pooled[CANDIDATE]),
        "peak_throughput_ratio_saga_over_vllm": ratio("peak_output_throughput"),
        "output_throughput_ratio_saga_over_vllm": ratio("output_throughput"),
        "kv_mem_util_ratio_saga_over_vllm": ratio("kv_mem_util"),
        "saga_slo_attainment": min(float(m[CANDIDATE]["slo_attainment"]) for m in metrics),
        "saga_belady_miss_ratio": geomean(
            [float(m[CANDIDATE]["belady_miss_ratio"]) for m in metrics]
        ),
        "paired_tct_test": {workload: paired_tct_test(pooled[CANDIDATE], pooled[BASELINE])},
        "rounds": {
            "n": len(per_round),
            "per_round": per_round,
            "tct_ratio": spread(ratios),
            "kv_hit_rate": hit,
            "kv_hit_gain_points": 100 * (hit[CANDIDATE] - hit[BASELINE]),
            "kv_hit_gain_points_min": min(gains, default=math.nan),
            "kv_hit_gain_points_max": max(gains, default=math.nan),
            "headline": "tct_mean_ratio_vllm_over_saga",
            "headline_why": HEADLINE_WHY,
        },
    }


HEADLINE_WHY = (
    "the pooled TCT ratio, read with the per-round range and the 95% interval over "
    "rounds: each round ran both systems under the same stretch of machine load, so "
    "the rounds' spread is the run-to-run drift; the pooled per-task Wilcoxon p pairs "
    "tasks only and does not cover that drift"
)
