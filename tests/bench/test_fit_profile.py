"""Fitting the simulator's cost profile to the engine timings a service recorded."""

from __future__ import annotations

import random

import pytest

from saga_hpc.bench.fit_profile import CallTiming, batches, call_timings, fit, fit_step
from saga_hpc.store.records import StoredCall


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
    # The agent saw 2.25 s where the head saw 2 s: the network's quarter second too.
    (t,) = call_timings([row], {("wf", 0): 2.25})
    assert t.overhead_s == pytest.approx(0.35)
    without = StoredCall(**{**row.__dict__, "prefill_s": None})
    assert call_timings([without]) == []


def test_no_timed_calls_is_an_error_not_a_profile() -> None:
    with pytest.raises(ValueError, match="no calls with engine timings"):
        fit([])
