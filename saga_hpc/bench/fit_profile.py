"""Fit a simulator cost profile (`GpuProfile`) to a service's measured calls, and check it.

Every call's worker reports where its time went inside the engine (vLLM's own
per-request timestamps: queued, scheduled, first token, last token) and the
ledger keeps it (`calls.engine_queue_s`, `prefill_s`, `decode_s`). The
simulator's GPU has three costs and the service adds one; each is read off the
calls so that, over the fitted run, the simulated phase adds up to the
measured one under the run's real contention (other engines, the head and
the agents sharing the machine):

- prefill rate: uncached prompt tokens over the time each worker spent with at
  least one call in prefill (the union of the calls' prefill windows). The
  simulator runs a GPU's prefills one after the other, so this is its server
  rate; summing each call's own prefill time instead would count twice the
  engine steps that prefill two calls at once.
- decode step: each call's decode time against its output tokens and the mean
  number of calls in the engine on its worker meanwhile, by least squares
  weighted by steps: decode_s = (out - 1) (s1 + k (batch - 1)). It includes
  the steps stalled by other calls' prefills.
- call overhead: the rest of a call's turn, outside the engine and the head's
  queue, mean per call. A turn runs from when the agent's task was due to send
  the call (its arrival, or the previous answer plus the tool's time) to the
  answer: HTTP, the head, the worker's front end, and the agent's own lateness
  (a tool's sleep or the task's start that wakes late on a busy machine). The
  turns and the tools add up to the TCT, so the simulator, which adds the
  overhead between a call's end and the next, sees all of the TCT's time.

Repeated runs (`bench --real --repeat N`) are pooled: the fit takes every
round's calls (`pooled`: each round's workers kept apart), and `sim_vs_real`
compares the simulator's TCT per system, which is deterministic, with the
real TCT averaged over the rounds, and gives the per-round errors' range too.
One real run on a shared machine swings by 15-25% with its load, so one run
is a poor reference.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from saga_hpc.sim.engine import Simulation
from saga_hpc.sim.metrics import summarize
from saga_hpc.sim.profile import GpuProfile
from saga_hpc.store.records import StoredCall
from saga_hpc.workload.model import Task


@dataclass(frozen=True)
class CallTiming:
    """One call's engine phases on one clock (the head's), from its ledger row."""

    worker: str
    uncached: int
    output: int
    scheduled: float  # the engine scheduled it: its prefill starts
    prefill_s: float
    decode_s: float
    overhead_s: float

    @property
    def first_token(self) -> float:
        return self.scheduled + self.prefill_s

    @property
    def end(self) -> float:
        return self.first_token + self.decode_s


@dataclass(frozen=True)
class Fit:
    calls: int
    prefill_tokens_per_s: float
    decode_step_s: float  # at batch 1
    decode_step_per_seq_s: float  # added per further sequence in the batch
    call_overhead_s: float

    def profile(
        self, name: str, kv_tokens: int, block_tokens: int, max_batch: int, description: str
    ) -> GpuProfile:
        return GpuProfile(
            name=name,
            block_tokens=block_tokens,
            kv_tokens=kv_tokens,
            prefill_tokens_per_s=self.prefill_tokens_per_s,
            decode_step_s_batch1=self.decode_step_s,
            decode_step_s_batch64=self.decode_step_s + 63 * self.decode_step_per_seq_s,
            max_batch=max_batch,
            description=description,
            call_overhead_s=self.call_overhead_s,
        )


def call_timings(
    calls: Iterable[StoredCall], turn_s: Mapping[tuple[str, int], float] | None = None
) -> list[CallTiming]:
    """The calls the engine timed. `turn_s` ((workflow, seq) -> the call's turn as the
    agent measured it: from when it was due to its answer) adds the agent's time
    outside the head to the overhead; without it the overhead is what the head
    sees (the ledger alone)."""
    out = []
    for c in calls:
        if c.prefill_s is None or c.decode_s is None:
            continue
        queue = c.engine_queue_s or 0.0
        engine = queue + c.prefill_s + c.decode_s
        overhead = max(0.0, c.finished_at - c.dispatched_at - engine)
        if turn_s is not None and (c.workflow_id, c.seq) in turn_s:
            head_s = c.finished_at - c.arrived_at
            overhead += max(0.0, turn_s[c.workflow_id, c.seq] - head_s)
        out.append(
            CallTiming(
                worker=c.worker,
                uncached=c.prompt_tokens - c.cached_tokens,
                output=c.output_tokens,
                scheduled=c.dispatched_at + queue,
                prefill_s=c.prefill_s,
                decode_s=c.decode_s,
                overhead_s=overhead,
            )
        )
    return out


def pooled(runs: Sequence[Sequence[CallTiming]]) -> list[CallTiming]:
    """The calls of several runs as one fit's input: each run's workers are renamed
    apart (`r<i>/<worker>`), so that windows of different runs never count as
    overlapping (in the prefill union or a decode batch), whatever their clocks."""
    if len(runs) == 1:
        return list(runs[0])
    return [
        dataclasses.replace(t, worker=f"r{i}/{t.worker}") for i, run in enumerate(runs) for t in run
    ]


def fit(timings: Sequence[CallTiming]) -> Fit:
    if not timings:
        raise ValueError("no calls with engine timings to fit (recorded by vLLM workers only)")
    busy = sum(_union((t.scheduled, t.first_token) for t in ts) for ts in _groups(timings).values())
    tokens = sum(t.uncached for t in timings)
    if busy <= 0 or tokens <= 0:
        raise ValueError("the calls spent no measurable time in prefill")
    s1, k = fit_step(timings)
    return Fit(
        calls=len(timings),
        prefill_tokens_per_s=tokens / busy,
        decode_step_s=s1,
        decode_step_per_seq_s=k,
        call_overhead_s=statistics.fmean(t.overhead_s for t in timings),
    )


def fit_step(timings: Sequence[CallTiming]) -> tuple[float, float]:
    """(s1, k) of decode_s = n (s1 + k (b - 1)), n = out - 1 steps, b = the mean
    batch over the call's decode window; least squares, k >= 0, s1 > 0."""
    rows = [
        (t.output - 1, b - 1, t.decode_s) for t, b in zip(timings, batches(timings), strict=True)
    ]
    rows = [r for r in rows if r[0] > 0]
    if not rows:
        raise ValueError("no call decoded more than one token")
    # Normal equations of y = s1 n + k n x.
    saa = sum(n * n for n, _, _ in rows)
    sab = sum(n * n * x for n, x, _ in rows)
    sbb = sum((n * x) ** 2 for n, x, _ in rows)
    say = sum(n * y for n, _, y in rows)
    sby = sum(n * x * y for n, x, y in rows)
    det = saa * sbb - sab * sab
    flat = say / saa  # the best step with no batch term
    if det <= 1e-12 * saa * sbb:
        return flat, 0.0
    s1, k = (say * sbb - sby * sab) / det, (saa * sby - sab * say) / det
    if k < 0 or s1 <= 0:
        return flat, 0.0
    return s1, k


def batches(timings: Sequence[CallTiming]) -> list[float]:
    """Per call: mean number of calls in the engine (prefill or decode) on its worker
    over its decode window, itself included."""
    groups = {w: sorted(ts, key=lambda t: t.scheduled) for w, ts in _groups(timings).items()}
    longest = {w: max(t.end - t.scheduled for t in ts) for w, ts in groups.items()}
    starts = {w: [t.scheduled for t in ts] for w, ts in groups.items()}
    out = []
    for t in timings:
        start, end = t.first_token, t.end
        if end - start <= 1e-9:
            out.append(1.0)
            continue
        group = groups[t.worker]
        # Only windows that start after (start - the longest window) can overlap.
        first = bisect.bisect_left(starts[t.worker], start - longest[t.worker])
        last = bisect.bisect_left(starts[t.worker], end)
        overlap = sum(
            max(0.0, min(end, o.end) - max(start, o.scheduled)) for o in group[first:last]
        )
        out.append(max(1.0, overlap / (end - start)))
    return out


def _groups(timings: Sequence[CallTiming]) -> dict[str, list[CallTiming]]:
    groups: dict[str, list[CallTiming]] = defaultdict(list)
    for t in timings:
        groups[t.worker].append(t)
    return groups


def _union(spans: Iterable[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def sim_vs_real(
    tasks: list[Task],
    rounds: Sequence[Mapping[str, Mapping[str, float]]],
    profile: GpuProfile,
    shares: dict[str, float],
    gpus: int,
) -> dict[str, dict[str, Any]]:
    """Per system: TCT mean and KV hit rate, real (mean over the rounds; `rounds`:
    each round's metrics by system, as `summarize` gives them and a bench's JSON
    keeps them) and simulated on `gpus` (once: the simulator is deterministic),
    the TCT error against the real mean, and each round's error."""
    out: dict[str, dict[str, Any]] = {}
    for system in rounds[0]:
        sim = Simulation(tasks, system, gpus, profile, shares=shares).run()
        sim_m = summarize(sim, shares)
        real = [r[system] for r in rounds]
        tct = [float(m["tct_mean_s"]) for m in real]
        errors = [sim_m["tct_mean_s"] / x - 1 for x in tct]
        tct_real = statistics.fmean(tct)
        out[system] = {
            "rounds": len(real),
            "tct_mean_real_s": tct_real,
            "tct_mean_sim_s": sim_m["tct_mean_s"],
            "tct_mean_error": sim_m["tct_mean_s"] / tct_real - 1,
            "tct_mean_error_per_round": errors,
            "tct_mean_error_min": min(errors),
            "tct_mean_error_max": max(errors),
            "kv_hit_rate_real": statistics.fmean(float(m["kv_hit_rate"]) for m in real),
            "kv_hit_rate_sim": sim_m["kv_hit_rate"],
        }
    return out


def engine_speed(profile: GpuProfile, factor: float) -> GpuProfile:
    """The profile with its engine `factor` times as fast: prefill and decode both."""
    return profile.scaled(factor, 1 / factor)


def calibrate(
    profile: GpuProfile,
    tasks: list[Task],
    system: str,
    gpus: int,
    shares: dict[str, float],
    tct_real_s: float,
    *,
    span: float = 2.0,
    points: int = 25,
) -> tuple[GpuProfile, float]:
    """The engine speed at which the simulated TCT of `system` on `tasks` is the real
    one: (the profile at that speed, the factor against the fitted costs).

    The costs read off the calls are each right on average, but with a KV pool
    that holds two or three contexts the TCT is steep in them (about 1/speed:
    queueing for memory) and the simulator admits a call only when its whole
    prompt and output fit, where vLLM admits the prompt and preempts if decoding
    runs short; so a fit that is right phase by phase simulated its own runs up
    to 14% long (docs/simulator.md, "Calibrated engine speed"). One factor on
    both engine rates takes that out. One trace's simulated TCT jumps by a few
    percent between nearby speeds (which call gets the memory first), so the
    factor comes from a smooth curve: log TCT fitted by a quadratic in log speed
    over `points` speeds from 1/`span` to `span`, solved for the real TCT. Only
    the fitted system's runs are used: other systems and seeds stay held out."""
    xs = np.linspace(-math.log(span), math.log(span), points)
    ys = [
        math.log(
            statistics.fmean(
                Simulation(tasks, system, gpus, engine_speed(profile, math.exp(x)), shares=shares)
                .run()
                .tct_s.values()
            )
        )
        for x in xs
    ]
    a, b, c = np.polyfit(xs, ys, 2)
    roots = [
        r.real
        for r in np.roots([a, b, c - math.log(tct_real_s)])
        if abs(r.imag) < 1e-12 and abs(r.real) <= math.log(span) and 2 * a * r.real + b < 0
    ]
    if not roots:
        raise ValueError(
            f"no engine speed within 1/{span:g}-{span:g}x of the fit gives the real TCT "
            f"{tct_real_s:.2f} s (simulated {math.exp(max(ys)):.2f}-{math.exp(min(ys)):.2f} s): "
            f"the simulator cannot follow these runs"
        )
    factor = math.exp(roots[0])
    return engine_speed(profile, factor), factor
