"""`bench --real --repeat`: ABBA order and the comparison pooled over rounds (no engines)."""

from __future__ import annotations

import math
import statistics

import pytest

from saga_hpc.bench.repeat import pooled_tct, repeated_comparison, run_order, spread, tct_ratio
from saga_hpc.cli.bench import rounds_report


def test_rounds_alternate_which_system_goes_first() -> None:
    assert run_order(["vllm", "saga"], 1) == [(0, "vllm"), (0, "saga")]
    assert run_order(["vllm", "saga"], 4) == [
        (0, "vllm"), (0, "saga"),
        (1, "saga"), (1, "vllm"),
        (2, "vllm"), (2, "saga"),
        (3, "saga"), (3, "vllm"),
    ]  # fmt: skip
    assert [s for _, s in run_order(["a", "b", "c"], 2)] == ["a", "b", "c", "c", "b", "a"]
    with pytest.raises(ValueError, match="at least 1"):
        run_order(["vllm", "saga"], 0)


def test_abba_cancels_a_linear_drift_that_sequential_runs_do_not() -> None:
    """Both systems equally fast; the machine slows down by 1 s of TCT per run."""
    tasks = [f"t{i}" for i in range(12)]

    def pooled_ratio(order: list[tuple[int, str]]) -> float:
        rounds = max(r for r, _ in order) + 1
        tct: dict[str, list[dict[str, float]]] = {"vllm": [{}] * rounds, "saga": [{}] * rounds}
        for slot, (r, system) in enumerate(order):
            tct[system][r] = {t: 10.0 + i + slot for i, t in enumerate(tasks)}
        return tct_ratio(pooled_tct(tct["vllm"]), pooled_tct(tct["saga"]))

    assert pooled_ratio(run_order(["vllm", "saga"], 4)) == pytest.approx(1.0)
    sequential = [(r, s) for r in range(4) for s in ("vllm", "saga")]  # vllm always first
    assert pooled_ratio(sequential) < 0.95


def test_pooled_tct_is_the_mean_over_rounds_of_tasks_every_round_finished() -> None:
    rounds = [{"a": 1.0, "b": 4.0}, {"a": 3.0, "b": 2.0, "c": 9.0}]
    assert pooled_tct(rounds) == {"a": 2.0, "b": 3.0}
    assert tct_ratio({"a": 4.0, "b": 8.0, "x": 100.0}, {"a": 2.0, "b": 4.0}) == 2.0
    assert math.isnan(tct_ratio({"a": 1.0}, {"b": 1.0}))


def test_spread_over_rounds() -> None:
    s = spread([0.9, 1.2, 1.05])
    assert (s["min"], s["max"], s["above_1"]) == (0.9, 1.2, 2)
    lo, hi = s["ci95"]
    assert lo < 0.9 < 1.2 < hi  # three rounds this far apart: a wide interval
    assert lo < s["geomean"] < hi
    assert s["geomean"] == pytest.approx((0.9 * 1.2 * 1.05) ** (1 / 3))
    assert spread([1.1])["ci95"] is None
    tight = spread([1.10, 1.11, 1.12, 1.10, 1.11])["ci95"]
    assert 1.0 < tight[0] < tight[1] < 1.13


def _round(vllm: list[float], saga: list[float]) -> dict[str, dict[str, float]]:
    return {
        "vllm": {f"t{i}": x for i, x in enumerate(vllm)},
        "saga": {f"t{i}": x for i, x in enumerate(saga)},
    }


def _metrics(hit_vllm: float, hit_saga: float) -> dict[str, dict[str, float]]:
    def m(hit: float) -> dict[str, float]:
        return {
            "kv_hit_rate": hit,
            "peak_output_throughput": 100.0,
            "output_throughput": 50.0,
            "kv_mem_util": 0.0,
            "slo_attainment": 0.9,
            "belady_miss_ratio": math.nan,
        }

    return {"vllm": m(hit_vllm), "saga": m(hit_saga)}


def test_repeated_comparison_pools_tasks_and_reports_each_round() -> None:
    base = [10.0 + i for i in range(12)]
    # Round 0: the machine was slow during the vllm run (vllm 1.2x); round 1: during
    # saga's (0.9x); round 2: saga 5% faster on every task.
    tct = [
        _round([1.2 * x for x in base], base),
        _round(base, [x / 0.9 for x in base]),
        _round([1.05 * x for x in base], base),
    ]
    metrics = [_metrics(0.60, 0.66), _metrics(0.62, 0.64), _metrics(0.61, 0.65)]
    c = repeated_comparison(tct, metrics, ["vllm", "saga", "vllm"], "swe-bench")

    rounds = c["rounds"]
    assert rounds["n"] == 3
    per_round = [r["tct_mean_ratio_vllm_over_saga"] for r in rounds["per_round"]]
    assert per_round == pytest.approx([1.2, 0.9, 1.05])
    assert [r["first"] for r in rounds["per_round"]] == ["vllm", "saga", "vllm"]
    assert all(r["wilcoxon_p"] < 0.01 for r in rounds["per_round"])  # each round "significant"
    assert (rounds["tct_ratio"]["min"], rounds["tct_ratio"]["max"]) == pytest.approx((0.9, 1.2))
    lo, hi = rounds["tct_ratio"]["ci95"]
    assert lo < 1 < hi  # ... but the rounds disagree: no claim
    vllm = statistics.fmean((1.2 + 1 + 1.05) * x / 3 for x in base)
    saga = statistics.fmean((1 + 1 / 0.9 + 1) * x / 3 for x in base)
    assert c["tct_mean_ratio_vllm_over_saga"] == pytest.approx(vllm / saga)
    assert c["paired_tct_test"]["swe-bench"]["tasks"] == 12
    assert [r["kv_hit_gain_points"] for r in rounds["per_round"]] == pytest.approx([6, 2, 4])
    assert rounds["kv_hit_gain_points"] == pytest.approx(4.0)
    assert (rounds["kv_hit_gain_points_min"], rounds["kv_hit_gain_points_max"]) == pytest.approx(
        (2.0, 6.0)
    )
    assert rounds["headline"] == "tct_mean_ratio_vllm_over_saga"
    assert c["output_throughput_ratio_saga_over_vllm"] == 1.0
    assert c["saga_slo_attainment"] == 0.9

    report = rounds_report(c)
    assert "round 1 (saga first): TCT ratio vllm/saga 0.900" in report
    assert f"headline: TCT mean ratio vllm/saga {vllm / saga:.3f} pooled over 3 rounds" in report
    assert "saga faster in 2 of 3" in report
