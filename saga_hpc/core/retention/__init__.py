"""Which workflows' KV blocks a worker should keep while the agent runs a tool.

The core only emits hints (`Retain` with an expiry and a reuse score,
`Release`); the worker's block pool (vLLM scheduler class, or the simulator's
pool) applies them when it must evict.

- `lru`: no hints; the pool evicts least recently used blocks (vLLM).
- `ttl`: Continuum-style: pin a workflow leaving on a tool call for a fixed TTL.
- `aeg`: SAGA: the Agent Execution Graph predicts whether and when the workflow
  returns after this tool (learned online per task class and tool name); the
  hint lasts until the predicted return plus a margin, and its score is the
  expected reuse per block and second held: P(return) / expected gap.
- `belady`: the simulator's offline oracle; like `lru` here, the pool knows
  the future trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mypy_extensions import mypyc_attr

from saga_hpc.core.types import CallOutcome, CallSpec, Decision, Release, Retain


@dataclass(slots=True)
class ToolStats:
    """Online estimate of one (task class, tool): how long it takes, how often the agent returns."""

    mean_s: float = 0.0
    var_s2: float = 0.0
    seen: int = 0
    returns: int = 0
    abandons: int = 0

    def observe_return(self, latency_s: float, alpha: float = 0.2) -> None:
        self.returns += 1
        if self.seen == 0:
            self.mean_s, self.var_s2 = latency_s, 0.0
        else:
            delta = latency_s - self.mean_s
            self.mean_s += alpha * delta
            self.var_s2 = (1 - alpha) * (self.var_s2 + alpha * delta * delta)
        self.seen += 1

    def p_return(self) -> float:
        # Laplace prior: an unseen tool is assumed to come back (agents usually do).
        return (self.returns + 1) / (self.returns + self.abandons + 2)


def position_bucket(position: int) -> int:
    """Calls 1..7 each their own bucket, then one bucket per doubling (8-15, 16-31, ...)."""
    if 0 <= position < _N_BUCKETS:
        return _BUCKETS[position]
    return _bucket(position)


def _bucket(position: int) -> int:
    return position if position < 8 else 8 + int(math.log2(position / 8))


_BUCKETS = tuple(_bucket(p) for p in range(1024))  # looked up twice per call: computed once
_N_BUCKETS = len(_BUCKETS)


@dataclass(slots=True)
class Counts:
    """Returns vs abandons of workflows that left on a tool call."""

    returns: int = 0
    abandons: int = 0

    def odds(self) -> float:
        # Laplace prior, as ToolStats.p_return.
        return (self.returns + 1) / (self.abandons + 1)


_UNSEEN_TOOL = ToolStats()  # read-only defaults: lookups of unseen keys build nothing
_NO_COUNTS = Counts()


@dataclass(slots=True)
class _ClassModel:
    """What the predictor learned of one task class: per tool, per position bucket,
    and over the class. One lookup by class, then by tool or bucket: as every call
    ends and every workflow returns, that is cheaper than tuple keys."""

    tools: dict[str, ToolStats] = field(default_factory=dict)
    positions: dict[int, Counts] = field(default_factory=dict)  # by position bucket
    counts: Counts = field(default_factory=Counts)


_NO_MODEL = _ClassModel()  # read-only, as _UNSEEN_TOOL


class AegPredictor:
    """P(return) and return time per (task class, tool), with a prior for unseen tools.

    P(return) combines two online estimates, per (task class, tool) and per
    (task class, position of the call in its workflow), naive-Bayes style in
    odds: odds = odds(tool) * odds(position) / odds(task class). A late call of
    a long workflow returns less often than an early one after the same tool.
    """

    def __init__(self, prior_s: float = 2.0) -> None:
        self.prior_s = prior_s
        self.models: dict[str, _ClassModel] = {}

    # Views by the keys the docs use: (task class, tool), (task class, bucket), class.

    @property
    def stats(self) -> dict[tuple[str, str], ToolStats]:
        return {(c, t): s for c, m in self.models.items() for t, s in m.tools.items()}

    @property
    def positions(self) -> dict[tuple[str, int], Counts]:
        return {(c, b): n for c, m in self.models.items() for b, n in m.positions.items()}

    @property
    def classes(self) -> dict[str, Counts]:
        return {c: m.counts for c, m in self.models.items()}

    def _model(self, task_class: str) -> _ClassModel:
        m = self.models.get(task_class)
        if m is None:
            m = self.models[task_class] = _ClassModel()
        return m

    def forecast(
        self, task_class: str, tool: str, position: int | None = None
    ) -> tuple[float, float, float]:
        """(P(return), expected gap s, how long to hold s) after `tool`: one lookup
        of the tool's statistics for all three, as a workflow leaves."""
        # Called as every call ends: ToolStats.p_return and Counts.odds written out.
        m = self.models.get(task_class, _NO_MODEL)
        s = m.tools.get(tool)
        if s is None or s.seen == 0:
            gap, horizon = self.prior_s, 2 * self.prior_s
        else:
            gap, horizon = s.mean_s, s.mean_s + 2 * math.sqrt(s.var_s2) + 0.05
        if s is None:
            s = _UNSEEN_TOOL
        p = (s.returns + 1) / (s.returns + s.abandons + 2)
        if position is not None:
            odds = p / (1 - p)
            bucket = _BUCKETS[position] if 0 <= position < _N_BUCKETS else _bucket(position)
            at = m.positions.get(bucket, _NO_COUNTS)
            of = m.counts
            odds *= ((at.returns + 1) / (at.abandons + 1)) / ((of.returns + 1) / (of.abandons + 1))
            p = odds / (1 + odds)
        return p, gap, horizon

    def expected_gap_s(self, task_class: str, tool: str) -> float:
        return self.forecast(task_class, tool)[1]

    def horizon_s(self, task_class: str, tool: str) -> float:
        """How long to hold: mean + 2 standard deviations, at least twice the prior for unseen."""
        return self.forecast(task_class, tool)[2]

    def p_return(self, task_class: str, tool: str, position: int | None = None) -> float:
        return self.forecast(task_class, tool, position)[0]

    def observe_return(
        self, task_class: str, tool: str, gap_s: float, position: int | None = None
    ) -> None:
        m = self.models.get(task_class)
        if m is None:
            m = self.models[task_class] = _ClassModel()
        s = m.tools.get(tool)
        if s is None:
            s = m.tools[tool] = ToolStats()
        s.observe_return(gap_s)
        if position is not None:  # once per call that returns: lookups written out
            bucket = _BUCKETS[position] if 0 <= position < _N_BUCKETS else _bucket(position)
            at = m.positions.get(bucket)
            if at is None:
                at = m.positions[bucket] = Counts()
            at.returns += 1
            m.counts.returns += 1

    def observe_abandon(self, task_class: str, tool: str, position: int | None = None) -> None:
        m = self._model(task_class)
        s = m.tools.get(tool)
        if s is None:
            s = m.tools[tool] = ToolStats()
        s.abandons += 1
        if position is not None:
            bucket = position_bucket(position)
            at = m.positions.get(bucket)
            if at is None:
                at = m.positions[bucket] = Counts()
            at.abandons += 1
            m.counts.abandons += 1


# Compiled (saga_hpc/compiled.py), a class takes Python subclasses only if it says so.
@mypyc_attr(allow_interpreted_subclasses=True)
class Retention:
    """Base: `lru`, no hints."""

    name = "lru"

    def __init__(self, ttl_s: float = 10.0, block_tokens: int = 16) -> None:
        self.ttl_s = ttl_s
        self.block_tokens = block_tokens
        self.explain = True  # give hints a reason (the scheduler's record_story)

    def on_leave(
        self,
        worker_id: str,
        spec: CallSpec,
        outcome: CallOutcome,
        now: float,
        stimulus: str,
        position: int | None = None,
    ) -> list[Decision]:
        """A call finished (the `position`-th of its workflow); the workflow is
        away on `outcome.next_tool` (or done)."""
        return []

    def on_return(
        self, spec: CallSpec, tool: str, gap_s: float, position: int | None = None
    ) -> None:
        """The workflow came back after `tool`, `gap_s` seconds after leaving its
        `position`-th call."""

    def on_abandon(self, task_class: str, tool: str, position: int | None = None) -> None:
        """The workflow never came back after `tool` (its hint lapsed and it ended)."""


class Ttl(Retention):
    name = "ttl"

    def on_leave(
        self,
        worker_id: str,
        spec: CallSpec,
        outcome: CallOutcome,
        now: float,
        stimulus: str,
        position: int | None = None,
    ) -> list[Decision]:
        if outcome.workflow_done:
            return [Release(worker_id, spec.workflow_id, stimulus, "workflow done")]
        if outcome.next_tool is None:
            return []
        reason = f"ttl {self.ttl_s:g}s on tool {outcome.next_tool}" if self.explain else ""
        return [Retain(worker_id, spec.workflow_id, now + self.ttl_s, 1.0, stimulus, reason)]


class Aeg(Retention):
    name = "aeg"

    def __init__(self, ttl_s: float = 10.0, block_tokens: int = 16) -> None:
        super().__init__(ttl_s, block_tokens)
        self.predictor = AegPredictor()

    def on_leave(
        self,
        worker_id: str,
        spec: CallSpec,
        outcome: CallOutcome,
        now: float,
        stimulus: str,
        position: int | None = None,
    ) -> list[Decision]:
        if outcome.workflow_done:
            return [Release(worker_id, spec.workflow_id, stimulus, "workflow done")]
        tool = outcome.next_tool or "unknown"
        p, gap, horizon = self.predictor.forecast(spec.task_class, tool, position)
        # Keeping the context saves recomputing all its blocks if the workflow
        # returns, and costs its blocks for the time it is away: per block and
        # second held, the expected value is P(return) / expected gap.
        score = p / (0.01 if gap < 0.01 else gap)  # max(gap, 0.01), once per call
        until = now + horizon
        reason = (
            f"aeg: P(return after {tool}, call {position}) {p:.2f}, E[gap] {gap:.2f}s"
            if self.explain
            else ""
        )
        return [Retain(worker_id, spec.workflow_id, until, score, stimulus, reason)]

    def on_return(
        self, spec: CallSpec, tool: str, gap_s: float, position: int | None = None
    ) -> None:
        self.predictor.observe_return(spec.task_class, tool, gap_s, position)

    def on_abandon(self, task_class: str, tool: str, position: int | None = None) -> None:
        self.predictor.observe_abandon(task_class, tool, position)


class Belady(Retention):
    name = "belady"


RETENTIONS: dict[str, type[Retention]] = {
    "lru": Retention,
    "ttl": Ttl,
    "aeg": Aeg,
    "belady": Belady,
}
