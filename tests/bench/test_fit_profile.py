"""Fitting the simulator's cost profile to the engine timings a service recorded."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from saga_hpc.bench.fit_profile import (
    CallTiming,
    batches,
    calibrate,
    call_timings,
    engine_speed,
    fit,
    fit_step,
    pooled,
    sim_vs_real,
)
from saga_hpc.bench.probe import probe_speed
from saga_hpc.bench.real_bench import turns
from saga_hpc.bench.real_trace import TraceScale, scaled_trace
from saga_hpc.bench.sim_bench import DEFAULT_TENANTS
from saga_hpc.sim.engine import SimResult, Simulation
from saga_hpc.sim.metrics import summarize
from saga_hpc.sim.profile import GpuProfile, load_profile
from saga_hpc.sim.records import CallRecord
from saga_hpc.store.records import StoredCall
from saga_hpc.workload.model import Step, Task


def timing(
    scheduled: float, prefill: float, decode: float, out: int = 11, uncached: int = 100
) -> CallTiming:
    return CallTiming("w0", uncached, out, scheduled, prefill, decode, 0.0)


def test_batch_is_the_calls_in_the_engine_on_its_worker_over_the_decode_window() -> None:
    first = timing(10.0, 1.0, 2.0)  # decodes over 11-13 s
    others = [timing(11.0, 0.0, 2.0), timing(11.0, 0.5, 0.5)]  # 11-13 s, 11-12 s
    elsewhere = CallTiming("w1", 100, 11, 10.0, 0.0, 3.0, 0.0)
    assert batches([timing(0.0, 1.0, 2.0)]) == [1.0]
    # Itself (2 s), one call 11-13 (2 s), one 11-12 (1 s); the other worker's call not.
    assert batches([first, *others, elsewhere])[0] == pytest.approx(2.5)


def test_step_line_is_recovered_from_noisy_calls() -> None:
    rng = random.Random(0)
    calls = []
    for i in range(400):
        # Calls alone (batch 1) or in pairs (batch 2) on a worker of their own.
        out = rng.randint(2, 64)
        step = 0.02 + 0.005 * (i % 2) + rng.gauss(0, 0.001)
        calls.append(CallTiming(f"w{i}", 100, out, 0.0, 0.1, step * (out - 1), 0.0))
        if i % 2:
            calls.append(CallTiming(f"w{i}", 100, out, 0.0, 0.1, step * (out - 1), 0.0))
    s1, k = fit_step(calls)
    assert s1 == pytest.approx(0.02, abs=0.001)
    assert k == pytest.approx(0.005, abs=0.0005)


def test_a_step_never_shrinks_with_the_batch_nor_goes_negative() -> None:
    # The pair decodes faster per step than the call alone: no negative growth.
    alone = CallTiming("a", 100, 11, 0.0, 0.0, 0.3, 0.0)
    pair = [CallTiming("b", 100, 11, 0.0, 0.0, 0.1, 0.0) for _ in range(2)]
    s1, k = fit_step([alone, *pair])
    # Flat: the run's decode time over its steps.
    assert k == 0.0 and s1 == pytest.approx(0.5 / 30)


def test_prefill_rate_counts_overlapping_prefills_once() -> None:
    # Two calls prefilled in the same engine steps over 0-1 s, one more at 2-2.5 s:
    # 3000 tokens in 1.5 s of prefill, not in the 2.5 s their own times add up to.
    calls = [
        timing(0.0, 1.0, 0.1, uncached=1000),
        timing(0.0, 1.0, 0.1, uncached=1000),
        timing(2.0, 0.5, 0.1, uncached=1000),
    ]
    assert fit(calls).prefill_tokens_per_s == pytest.approx(2000.0)


def test_overhead_is_the_latency_outside_the_engine_and_the_head_queue() -> None:
    row = StoredCall(
        call_id="c",
        workflow_id="wf",
        account="a",
        user="u",
        model="m",
        worker="w0",
        prompt_tokens=1000,
        cached_tokens=800,
        output_tokens=10,
        arrived_at=100.0,
        dispatched_at=100.5,  # 0.5 s in the head's queue
        first_token_at=None,
        finished_at=102.0,
        worker_time_s=1.4,
        next_tool=None,
        engine_queue_s=0.2,
        prefill_s=0.3,
        decode_s=0.9,
        seq=0,
    )
    (t,) = call_timings([row])
    assert (t.uncached, t.scheduled) == (200, pytest.approx(100.7))
    assert t.overhead_s == pytest.approx(1.5 - 1.4)
    # The agent's turn was 2.25 s where the head saw 2 s: that quarter second too.
    (t,) = call_timings([row], {("wf", 0): 2.25})
    assert t.overhead_s == pytest.approx(0.35)
    without = StoredCall(**{**row.__dict__, "prefill_s": None})
    assert call_timings([without]) == []


def test_no_timed_calls_is_an_error_not_a_profile() -> None:
    with pytest.raises(ValueError, match="no calls with engine timings"):
        fit([])


def test_pooled_rounds_keep_their_workers_apart() -> None:
    # Two rounds on one clock, same worker name, the same windows: 2000 tokens in
    # 2 s of prefill (one per round), and each call decodes alone in its round.
    one = [timing(0.0, 1.0, 1.0, uncached=1000)]
    runs = [one, list(one)]
    assert fit(pooled(runs)).prefill_tokens_per_s == pytest.approx(1000.0)
    assert batches(pooled(runs)) == [1.0, 1.0]
    # Laid on top of each other: 2000 tokens in one 1 s window, and a batch of 2.
    assert fit([*one, *one]).prefill_tokens_per_s == pytest.approx(2000.0)
    assert batches([*one, *one]) == [2.0, 2.0]
    assert pooled([one]) == one  # one run: as it was


def _real(sim: SimResult, tct_scale: float, hit: int) -> SimResult:
    """A fake real run of the simulated one: every TCT times `tct_scale`, one call
    of 100 prompt tokens of which `hit` were cached."""
    call = CallRecord("t", "physics", 0.0, 0.1, 0.01, 1.0, 100, hit, 10, 1.0)
    return SimResult(
        system=sim.system,
        gpus=sim.gpus,
        calls=[call],
        tct_s={t: x * tct_scale for t, x in sim.tct_s.items()},
        tenants=sim.tenants,
        kv_samples=[],
        retention_misses=0,
        recomputed_tokens=0,
        events=1,
        makespan_s=1.0,
    )


def test_sim_is_compared_with_the_real_tct_pooled_over_rounds() -> None:
    tasks = scaled_trace("swe-bench", 0, DEFAULT_TENANTS, TraceScale(tasks=4))
    profile = load_profile("cpu-tiny")
    shares = dict(DEFAULT_TENANTS)
    sim = Simulation(tasks, "vllm", 2, profile, shares=shares).run()
    mean = sum(sim.tct_s.values()) / len(sim.tct_s)
    rounds = [
        {"vllm": summarize(_real(sim, 0.8, 60), shares)},
        {"vllm": summarize(_real(sim, 1.25, 80), shares)},
    ]
    (e,) = sim_vs_real(tasks, rounds, profile, shares, 2).values()
    # Real: the mean of the rounds' means (1.025 x sim); each round's error too.
    assert e["rounds"] == 2
    assert e["tct_mean_sim_s"] == pytest.approx(mean)
    assert e["tct_mean_real_s"] == pytest.approx(1.025 * mean)
    assert e["tct_mean_error"] == pytest.approx(1 / 1.025 - 1)
    assert e["tct_mean_error_per_round"] == pytest.approx([0.25, -0.2])
    assert (e["tct_mean_error_min"], e["tct_mean_error_max"]) == pytest.approx((-0.2, 0.25))
    assert e["kv_hit_rate_real"] == pytest.approx(0.7)
    # One round is compared with that round alone.
    (one,) = sim_vs_real(tasks, rounds[1:], profile, shares, 2).values()
    assert one["tct_mean_error"] == pytest.approx(-0.2)
    assert one["kv_hit_rate_real"] == pytest.approx(0.8)


def test_a_turn_runs_from_when_the_call_was_due_and_turns_and_tools_make_the_tct() -> None:
    steps = (Step(0, 100, 10, "bash", 0.5), Step(110, 50, 10, None, 0.0))
    task = Task("a", "physics", "swe", 1.0, 50, steps)

    def call(sent: float, finished: float) -> CallRecord:
        return CallRecord("a", "physics", sent, 0.1, 0.01, finished, 100, 0, 10, finished - sent)

    # Sent 0.3 s after its arrival, answered at 2.0; the tool's 0.5 s ends at 2.5,
    # the next call goes out 0.2 s late, at 2.7, and is answered at 3.0.
    got = turns([call(1.3, 2.0), call(2.7, 3.0)], [task])
    assert got == {("a", 0): pytest.approx(1.0), ("a", 1): pytest.approx(0.5)}
    assert sum(got.values()) + 0.5 == pytest.approx(3.0 - task.arrival_s)  # its TCT


def _tct(tasks: list[Task], profile: GpuProfile) -> float:
    sim = Simulation(tasks, "vllm", 2, profile, shares=dict(DEFAULT_TENANTS)).run()
    return sum(sim.tct_s.values()) / len(sim.tct_s)


def test_calibration_finds_the_engine_speed_that_gives_the_real_tct() -> None:
    tasks = scaled_trace("swe-bench", 0, DEFAULT_TENANTS, TraceScale(tasks=12))
    profile = load_profile("cpu-tiny")
    # "Real" runs whose engine was 0.7x the fitted costs' speed.
    real = _tct(tasks, engine_speed(profile, 0.7))
    assert real > 1.1 * _tct(tasks, profile)  # the uncalibrated profile is far off
    calibrated, factor = calibrate(profile, tasks, "vllm", 2, dict(DEFAULT_TENANTS), real)
    # One trace's TCT jumps a few percent between nearby speeds; the smooth fit lands near.
    assert factor == pytest.approx(0.7, rel=0.08)
    assert calibrated.prefill_tokens_per_s == pytest.approx(profile.prefill_tokens_per_s * factor)
    assert calibrated.decode_step_s_batch64 == pytest.approx(profile.decode_step_s_batch64 / factor)
    assert _tct(tasks, calibrated) == pytest.approx(real, rel=0.08)


def test_calibration_refuses_a_tct_no_engine_speed_gives() -> None:
    tasks = scaled_trace("swe-bench", 0, DEFAULT_TENANTS, TraceScale(tasks=4))
    with pytest.raises(ValueError, match="cannot follow"):
        # Shorter than the tools alone take.
        calibrate(load_profile("cpu-tiny"), tasks, "vllm", 2, dict(DEFAULT_TENANTS), 0.01)


def test_a_profile_follows_the_probe_to_a_faster_or_slower_machine() -> None:
    fitted = replace(
        load_profile("cpu-tiny"), probe_prefill_tokens_per_s=4000.0, probe_decode_tokens_per_s=200.0
    )
    # Prefill twice as fast, decode at half the speed.
    moved = fitted.at_speed(8000.0, 100.0)
    assert moved.prefill_tokens_per_s == pytest.approx(2 * fitted.prefill_tokens_per_s)
    assert moved.decode_step_s_batch1 == pytest.approx(2 * fitted.decode_step_s_batch1)
    assert moved.decode_step_s_batch64 == pytest.approx(2 * fitted.decode_step_s_batch64)
    assert moved.call_overhead_s == fitted.call_overhead_s
    assert (moved.probe_prefill_tokens_per_s, moved.probe_decode_tokens_per_s) == (8000.0, 100.0)
    # A change within the probe's run-to-run noise is not followed.
    assert fitted.at_speed(4800.0, 220.0).prefill_tokens_per_s == fitted.prefill_tokens_per_s
    assert fitted.at_speed(4800.0, 220.0).decode_step_s_batch1 == fitted.decode_step_s_batch1
    # A profile without probe figures (not fitted from real runs) stays as it is.
    plain = replace(fitted, probe_prefill_tokens_per_s=0.0)
    assert plain.at_speed(8000.0, 100.0) == plain


def test_a_bench_speed_is_the_mean_of_its_runs_probes() -> None:
    runs = [
        {"probe": {"prefill_tokens_per_s": 4000.0, "decode_tokens_per_s": 150.0}},
        {"probe": {"prefill_tokens_per_s": 6000.0, "decode_tokens_per_s": 250.0}},
    ]
    assert probe_speed(runs) == pytest.approx((5000.0, 200.0))
