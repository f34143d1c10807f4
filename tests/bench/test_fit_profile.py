"""Fitting the simulator's decode step to measured calls."""

from __future__ import annotations

import random

import pytest

from saga_hpc.bench.fit_profile import batch_sizes, fit_step
from saga_hpc.sim.engine import CallRecord


def record(arrived: float, ttft: float, finished: float) -> CallRecord:
    return CallRecord("t", "a", arrived, ttft, 0.0, finished, 100, 0, 10, finished - arrived)


def test_batch_is_the_calls_in_flight_per_worker_over_the_decode_window() -> None:
    alone = record(0.0, 1.0, 3.0)
    overlapping = [record(10.0, 1.0, 13.0), record(11.0, 0.0, 13.0), record(11.0, 0.0, 12.0)]
    assert batch_sizes([alone], workers=1) == [1.0]
    # The first call decodes over 11-13 s: itself (2 s), one call 11-13 (2 s), one 11-12 (1 s).
    assert batch_sizes(overlapping, workers=1)[0] == pytest.approx(2.5)
    assert batch_sizes(overlapping, workers=2)[0] == pytest.approx(1.25)


def test_step_line_is_recovered_from_noisy_samples() -> None:
    rng = random.Random(0)
    batches = [rng.uniform(1, 8) for _ in range(400)]
    tpots = [0.02 + 0.005 * (b - 1) + rng.gauss(0, 0.002) for b in batches]
    s1, k = fit_step(batches, tpots)
    assert s1 == pytest.approx(0.02, abs=0.001)
    assert k == pytest.approx(0.005, abs=0.0005)


def test_a_step_never_shrinks_with_the_batch_nor_goes_negative() -> None:
    s1, k = fit_step([1, 2, 3], [0.03, 0.02, 0.01])
    assert k == 0.0 and s1 == pytest.approx(0.02)
    s1, k = fit_step([1, 1, 1], [0.01, 0.02, 0.03])
    assert (s1, k) == (pytest.approx(0.02), 0.0)
