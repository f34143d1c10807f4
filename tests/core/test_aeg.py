"""The AEG predictor: tool latency, P(return) per tool and per position, as the core feeds it."""

from __future__ import annotations

import pytest

from saga_hpc.core.retention import Aeg, AegPredictor, position_bucket
from saga_hpc.core.scheduler import Scheduler
from saga_hpc.core.types import CallOutcome, CallSpec, Retain, SystemSpec


def test_position_buckets() -> None:
    assert [position_bucket(k) for k in (1, 7, 8, 15, 16, 31, 32, 120)] == [
        1,
        7,
        8,
        8,
        9,
        9,
        10,
        11,
    ]


def test_position_shifts_p_return_in_odds() -> None:
    p = AegPredictor()
    for _ in range(3):
        p.observe_return("swe", "bash", 0.5, position=2)
        p.observe_abandon("swe", "bash", position=30)
    assert p.p_return("swe", "bash") == pytest.approx(0.5)  # 4 / 8, tool only
    # odds = tool 1 x position (4 early, 1/4 late) / class 1
    assert p.p_return("swe", "bash", position=2) == pytest.approx(0.8)
    assert p.p_return("swe", "bash", position=30) == pytest.approx(0.2)
    assert p.p_return("swe", "bash", position=5) == pytest.approx(0.5)  # unseen position


def test_unseen_tool_uses_the_prior() -> None:
    p = AegPredictor(prior_s=2.0)
    assert p.expected_gap_s("web", "click") == 2.0 and p.horizon_s("web", "click") == 4.0
    p.observe_return("web", "click", 1.0)
    assert p.expected_gap_s("web", "click") == 1.0 and p.horizon_s("web", "click") == 1.05


def test_scheduler_built_from_a_spec_feeds_positions_to_the_predictor() -> None:
    s = Scheduler(SystemSpec("mine", "aeg", "affinity", "fcfs"), abandon_after_s=60.0)
    assert s.system_name == "mine" and isinstance(s.retention, Aeg)
    s.add_worker("w1", slots=1, kv_capacity_tokens=1000, now=0.0)
    s.submit(CallSpec("c1", "A", "t", 10, 4, 0.0), 0.0)
    (hint,) = [
        d
        for d in s.complete(CallOutcome("c1", "w1", 1.0, 10, 0, 4, "bash"), 1.0)
        if isinstance(d, Retain)
    ]
    assert hint.until == 1.0 + 4.0 and hint.reuse_score == pytest.approx(0.5 / 2.0)
    assert hint.reason == "aeg: P(return after bash, call 1) 0.50, E[gap] 2.00s"
    s.submit(CallSpec("c2", "A", "t", 20, 4, 1.5), 1.5)  # back after 0.5 s, from call 1
    s.complete(CallOutcome("c2", "w1", 2.0, 20, 10, 4, "bash"), 2.0)
    s.tick(62.5)  # never came back after call 2: abandoned
    predictor = s.retention.predictor  # type: ignore[attr-defined]
    assert predictor.positions[("default", 1)].returns == 1
    assert predictor.positions[("default", 2)].abandons == 1
    assert s.story("A") == []  # forgotten
