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


def test_schedule_conditions_on_time_away() -> None:
    """Gaps 1, 2, 3, 4 s, no abandon: P(return) 5/6. Away e seconds, the score is
    P(return | not back by e) / E[gap - e | gap > e], from e = 0 and each gap at the
    schedule's quantiles; the hint lapses after the longest gap."""
    p = AegPredictor()
    for gap in (3.0, 1.0, 4.0, 2.0):
        p.observe_return("swe", "pytest", gap)
    prob, gap, steps, lapse = p.schedule("swe", "pytest")
    assert prob == pytest.approx(5 / 6) and gap == pytest.approx(2.5)
    assert lapse == pytest.approx(4.05)
    # e = 0: 5/6 / 2.5; e = 1: 3 of 4 gaps beyond, (5/8) / (5/8 + 1/6) / 2 = 15/38;
    # e = 2: (5/12) / (5/12 + 1/6) / 1.5; e = 3: (5/24) / (5/24 + 1/6) / 1; none beyond 4.
    assert [e for e, _ in steps] == [0.0, 1.0, 2.0, 3.0]
    assert [s for _, s in steps] == pytest.approx([1 / 3, 15 / 38, 10 / 21, 5 / 9])


def test_gap_window_keeps_the_last_128() -> None:
    p = AegPredictor()
    for _ in range(128):
        p.observe_return("swe", "bash", 0.5)
    for _ in range(128):  # every 16th return retabulates: after the 128th, all at 0.1
        p.observe_return("swe", "bash", 0.1)
    assert p.horizon_s("swe", "bash") == pytest.approx(0.15)
    assert p.expected_gap_s("swe", "bash") == pytest.approx(0.1)


def test_bimodal_tool_is_held_through_its_slow_mode() -> None:
    """An instant-or-slow tool: past the instant returns, the workflow still away
    is expected back within the slow mode; the hint lasts past it (the EWMA's
    mean + 2 sd after a run of instant returns did not)."""
    p = AegPredictor()
    for gap in [0.005] * 6 + [0.5, 0.6]:
        p.observe_return("swe", "edit", gap)
    _, _, steps, lapse = p.schedule("swe", "edit")
    # P(return) 9/10; e = 0: mean gap 0.14125 s; e = 0.005: 2 of 8 beyond, 0.545 s
    # left on average; e = 0.5 (the 7th of 8): 1 beyond, 0.1 s left.
    assert [e for e, _ in steps] == [0.0, 0.005, 0.5]
    assert [s for _, s in steps] == pytest.approx(
        [0.9 / 0.14125, 0.225 / 0.325 / 0.545, 0.1125 / 0.2125 / 0.1]
    )
    assert lapse == pytest.approx(0.65)


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
    assert hint.steps == ()  # an unseen tool: the prior's one score
    assert hint.reason == "aeg: P(return after bash, call 1) 0.50, E[gap] 2.00s"
    s.submit(CallSpec("c2", "A", "t", 20, 4, 1.5), 1.5)  # back after 0.5 s, from call 1
    (hint,) = [
        d
        for d in s.complete(CallOutcome("c2", "w1", 2.0, 20, 10, 4, "bash"), 2.0)
        if isinstance(d, Retain)
    ]
    # One gap, 0.5 s: held until 0.55 s after, no step; P(return) 2/3, odds x
    # position 2 (unseen, 1) / class (2/1): 1/2 -> P 1/2, / 0.5 s.
    assert hint.until == pytest.approx(2.55) and hint.steps == ()
    assert hint.reuse_score == pytest.approx(1.0)
    s.tick(62.5)  # never came back after call 2: abandoned
    predictor = s.retention.predictor  # type: ignore[attr-defined]
    assert predictor.positions[("default", 1)].returns == 1
    assert predictor.positions[("default", 2)].abandons == 1
    assert s.story("A") == []  # forgotten
