"""Which workflows' KV blocks a worker should keep while the agent runs a tool.

The core only emits hints (`Retain` with an expiry and a reuse score,
`Release`); the worker's block pool (vLLM scheduler class, or the simulator's
pool) applies them when it must evict.

- `lru`: no hints; the pool evicts least recently used blocks (vLLM).
- `ttl`: Continuum-style: pin a workflow leaving on a tool call for a fixed TTL.
- `aeg`: SAGA: the Agent Execution Graph predicts whether and when the workflow
  returns after this tool (learned online per task class and tool name, from
  the last 128 gaps); the score is the expected reuse per block and second
  held, P(return | still away) / E[remaining gap | still away], given how long
  the workflow has been away: Belady's rule with expectations in place of the
  known future. The hint carries the score as a schedule of steps (at
  quantiles of the gaps) and lapses after the longest gap seen.
- `belady`: the simulator's offline oracle; like `lru` here, the pool knows
  the future trace.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field

from mypy_extensions import mypyc_attr

from saga_hpc.core.types import CallOutcome, CallSpec, Decision, Release, Retain

GAP_WINDOW = 128  # gaps kept per (task class, tool)
RETABULATE_EVERY = 16  # returns between two tabulations of a full window
STEP_QUANTILES = (0.25, 0.5, 0.75, 0.875)  # where the score's schedule steps
LAPSE_MARGIN_S = 0.05  # the hint lapses this long after the longest gap seen


@dataclass(slots=True)
class ToolStats:
    """Online estimate of one (task class, tool): its last gaps (a call's end to
    the workflow's next call), and how often the agent returns."""

    gaps: list[float] = field(default_factory=list)  # a ring of the last GAP_WINDOW
    seen: int = 0
    returns: int = 0
    abandons: int = 0
    # (elapsed e, P(gap > e), E[gap - e | gap > e]) at e = 0 and at the gaps'
    # STEP_QUANTILES, e increasing, each with a gap beyond it: see `tabulate`.
    table: tuple[tuple[float, float, float], ...] = ()
    lapse_s: float = 0.0  # the longest gap of the window + LAPSE_MARGIN_S

    def observe_return(self, gap_s: float) -> None:
        self.returns += 1
        if len(self.gaps) < GAP_WINDOW:
            self.gaps.append(gap_s)
        else:
            self.gaps[self.seen % GAP_WINDOW] = gap_s
        self.seen += 1
        if self.seen <= RETABULATE_EVERY or self.seen % RETABULATE_EVERY == 0:
            self.tabulate()

    def tabulate(self) -> None:
        """The gap distribution at the schedule's points. Between two gaps of the
        window P(gap > e) and the mean of the gaps beyond e are constant, so the
        score is known at any e from these; the schedule takes it at each point."""
        g = sorted(self.gaps)
        m = len(g)
        total = math.fsum(g)
        prefix = [0.0]
        for x in g:
            prefix.append(prefix[-1] + x)
        points = [0.0] + [g[max(0, math.ceil(q * m) - 1)] for q in STEP_QUANTILES]
        table: list[tuple[float, float, float]] = []
        for e in points:
            if table and e <= table[-1][0]:
                continue
            i = bisect_right(g, e)  # gaps <= e: the workflow would be back
            beyond = m - i
            if beyond == 0:
                break
            table.append((e, beyond / m, (total - prefix[i]) / beyond - e))
        self.table = tuple(table)
        self.lapse_s = g[-1] + LAPSE_MARGIN_S

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
        """(P(return), expected gap s, how long to hold s) after `tool`, as the
        workflow leaves."""
        p, table, lapse = self._outlook(task_class, tool, position)
        return p, table[0][2], lapse

    def schedule(
        self, task_class: str, tool: str, position: int | None = None
    ) -> tuple[float, float, list[tuple[float, float]], float]:
        """What to hint as a workflow leaves on `tool`: (P(return), expected gap s,
        the score's schedule [(elapsed s, score from then on)], the first at 0,
        and when to lapse, elapsed s). Score at elapsed e: P(return | not back by
        e) / E[gap - e | gap > e]; P(return | not back by e) = p S / (p S + 1 - p),
        S = P(gap > e) among the gaps that returned."""
        p, table, lapse = self._outlook(task_class, tool, position)
        steps = []
        for e, survive, remaining in table:
            ps = p * survive
            steps.append((e, ps / (ps + 1 - p) / (0.01 if remaining < 0.01 else remaining)))
        return p, table[0][2], steps, lapse

    def _outlook(
        self, task_class: str, tool: str, position: int | None
    ) -> tuple[float, tuple[tuple[float, float, float], ...], float]:
        """P(return) after `tool` from call `position`, the tool's table and lapse:
        one lookup of the tool's statistics for all, as a workflow leaves."""
        # Called as every call ends: ToolStats.p_return and Counts.odds written out.
        m = self.models.get(task_class, _NO_MODEL)
        s = m.tools.get(tool)
        table: tuple[tuple[float, float, float], ...]
        if s is None or not s.table:
            table, lapse = ((0.0, 1.0, self.prior_s),), 2 * self.prior_s
        else:
            table, lapse = s.table, s.lapse_s
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
        return p, table, lapse

    def expected_gap_s(self, task_class: str, tool: str) -> float:
        return self.forecast(task_class, tool)[1]

    def horizon_s(self, task_class: str, tool: str) -> float:
        """How long to hold: the longest gap of the window and a margin, twice the
        prior for an unseen tool."""
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
        p, gap, steps, lapse = self.predictor.schedule(spec.task_class, tool, position)
        # Keeping the context saves recomputing all its blocks if the workflow
        # returns, and costs its blocks for the time it is away: per block and
        # second held, the expected value is P(return) / expected time to the
        # return, both given how long it has been away (the schedule's steps).
        reason = (
            f"aeg: P(return after {tool}, call {position}) {p:.2f}, E[gap] {gap:.2f}s"
            if self.explain
            else ""
        )
        later = tuple([(now + e, score) for e, score in steps[1:]])
        return [
            Retain(worker_id, spec.workflow_id, now + lapse, steps[0][1], stimulus, reason, later)
        ]

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
