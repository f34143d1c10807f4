"""The worker's per-call engine phases, read from vLLM's per-request stats."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from saga_hpc.protocol import Done, decode, encode
from saga_hpc.worker.runner import engine_timings


def stats(**kw: float) -> SimpleNamespace:
    base = {"queued_ts": 10.0, "scheduled_ts": 10.5, "first_token_ts": 10.8, "last_token_ts": 12.0}
    return SimpleNamespace(**{**base, **kw}, num_preemptions=1)


def test_phases_from_vllm_timestamps_travel_to_the_head() -> None:
    t = engine_timings(stats())
    assert t["engine_queue_s"] == pytest.approx(0.5)
    assert t["prefill_s"] == pytest.approx(0.3)
    assert t["decode_s"] == pytest.approx(1.2)
    assert t["preemptions"] == 1
    done = Done("c", "", 10, 0, 5, "length", 1.6, 0.4, **t)
    assert decode(encode(done)) == done


def test_no_stats_or_no_first_token_means_no_timings() -> None:
    assert engine_timings(None) == {}
    assert engine_timings(stats(first_token_ts=0.0)) == {}
    # Never queued (timestamp 0): the queue time is unknown, the rest is not.
    t = engine_timings(stats(queued_ts=0.0))
    assert t["engine_queue_s"] is None and t["prefill_s"] == pytest.approx(0.3)
