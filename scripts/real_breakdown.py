"""Where each system's time goes in a `bench --real --repeat N --run-dir DIR` run.

Per call, the agent's turn (from when its task was due to send the call to
the answer) is split into: the agent's lateness (it sent the call late),
the head's queue (arrived -> dispatched), the engine's queue, prefill and
decode, the rest inside the service (worker front end, ZeroMQ, head loop),
and the rest at the agent (HTTP both ways, the ledger commit the answer
waits for, the agent's loop). The parts add up to the turn; turns and tools
add up to the TCT. Means per call, pooled over rounds, then by tenant and by
turn, engine-queue / head-queue waits, preemptions, workflows moved between
workers, and calls per worker.

    python scripts/real_breakdown.py /tmp/refit/runs [--seed 0 --tasks 24]
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from saga_hpc.bench.real_bench import turns
from saga_hpc.bench.real_trace import TraceScale, scaled_trace
from saga_hpc.bench.sim_bench import DEFAULT_TENANTS
from saga_hpc.sim.records import CallRecord
from saga_hpc.workload.model import Task

PARTS = ("late", "head_q", "engine_q", "prefill", "decode", "service_rest", "agent_rest")
Call = dict[str, Any]


def load(run: Path, tasks: list[Task]) -> tuple[list[Call], dict[str, float]]:
    """One run's calls, the agent's records (calls.json) joined with the ledger,
    and its TCT per task."""
    agent = json.loads((run / "calls.json").read_text())
    records = [CallRecord(**a) for a in agent["calls"]]
    turn = turns(records, tasks)  # a task's calls in order, as the bench numbers them
    tool_s = {(t.task_id, i): s.tool_s for t in tasks for i, s in enumerate(t.steps)}
    db = sqlite3.connect(run / "saga.db")
    db.row_factory = sqlite3.Row
    ledger = {
        (r["workflow_id"], r["seq"]): dict(r)
        for r in db.execute("select * from calls where workflow_id != 'bench-probe'")
    }
    db.close()
    out = []
    for (task, n), a in zip(turn, records, strict=True):
        r = ledger[task, n]
        queue = r["engine_queue_s"] or 0.0
        head_s = r["finished_at"] - r["arrived_at"]
        head_q = r["dispatched_at"] - r["arrived_at"]
        engine = queue + r["prefill_s"] + r["decode_s"]
        out.append(
            {
                "task": task,
                "tenant": a.tenant,
                "turn_index": n,
                "worker": r["worker"],
                "late": turn[task, n] - (a.finished - a.arrived),
                "head_q": head_q,
                "engine_q": queue,
                "prefill": r["prefill_s"],
                "decode": r["decode_s"],
                "service_rest": head_s - head_q - engine,
                "agent_rest": (a.finished - a.arrived) - head_s,
                "turn": turn[task, n],
                "preemptions": r["preemptions"] or 0,
                "prompt": r["prompt_tokens"],
                "cached": r["cached_tokens"],
                "at": r["arrived_at"],
                "sent": r["dispatched_at"],
                "sched": r["dispatched_at"] + queue,
                "end": r["dispatched_at"] + engine,
                "tool": tool_s[task, n],
                "done": r["finished_at"],
            }
        )
    return out, agent["tct_s"]


def line(label: str, calls: list[Call]) -> str:
    n = len(calls)
    parts = " ".join(f"{1000 * sum(c[p] for c in calls) / n:8.1f}" for p in (*PARTS, "turn"))
    hit = sum(c["cached"] for c in calls) / sum(c["prompt"] for c in calls)
    pre = sum(c["preemptions"] for c in calls)
    return f"{label:18s} {n:5d} {parts} {pre:5d} {hit:6.3f}"


def returning(calls: list[Call]) -> tuple[list[Call], list[Call]]:
    """A run's calls after a workflow's first: (moved to another worker, stayed)."""
    last: dict[str, str] = {}
    moved: list[Call] = []
    stayed: list[Call] = []
    for c in sorted(calls, key=lambda c: c["at"]):
        if c["task"] in last:
            (moved if last[c["task"]] != c["worker"] else stayed).append(c)
        last[c["task"]] = c["worker"]
    return moved, stayed


def service_ratio(
    runs: dict[tuple[str, str], list[Call]], rounds: list[str], a: str, b: str
) -> str:
    """Per task, the service's part of its TCT (head queue to answer, plus tools):
    geomean of a/b, share of tasks b is faster on, Wilcoxon p over the pairs."""
    from scipy.stats import wilcoxon

    logs = []
    for r in rounds:
        own = {}
        for s in (a, b):
            t: dict[str, float] = defaultdict(float)
            for c in runs[r, s]:
                t[c["task"]] += c["turn"] - c["late"] - c["agent_rest"] + c["tool"]
            own[s] = t
        logs += [math.log(own[a][k] / own[b][k]) for k in own[a]]
    return (
        f"service part of the TCT per task, geomean {a}/{b} "
        f"{math.exp(statistics.fmean(logs)):.3f}, {b} faster on "
        f"{sum(x > 0 for x in logs) / len(logs):.0%}, Wilcoxon p {wilcoxon(logs).pvalue:.2g}"
    )


def waits(calls: list[Call], slots: int) -> tuple[int, int]:
    """Calls that waited > 10 ms in the head's queue: (with a free slot on their
    worker, i.e. held for memory or order; with every slot taken)."""
    free = full = 0
    for c in calls:
        if c["head_q"] > 0.01:
            busy = sum(
                o["worker"] == c["worker"] and o["sent"] <= c["at"] < o["done"] for o in calls
            )
            free += busy < slots
            full += busy >= slots
    return free, full


def batch(calls: list[Call], worker: str, step: float = 0.005) -> float:
    """Mean calls in the engine (prefill or decode) while it had any."""
    spans = [(c["sched"], c["end"]) for c in calls if c["worker"] == worker]
    t0, t1 = min(a for a, _ in spans), max(b for _, b in spans)
    counts = [sum(a <= t0 + i * step < b for a, b in spans) for i in range(int((t1 - t0) / step))]
    busy = [n for n in counts if n]
    return statistics.fmean(busy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="bench --real --run-dir (roundR/SYSTEM/ inside)")
    ap.add_argument("--workload", default="swe-bench")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", type=int, default=24)
    ap.add_argument("--slots", type=int, default=8, help="the bench's --max-num-seqs")
    args = ap.parse_args()
    tasks = scaled_trace(args.workload, args.seed, DEFAULT_TENANTS, TraceScale(tasks=args.tasks))
    rounds = sorted(args.run_dir.glob("round*"), key=lambda p: int(p.name[5:]))
    systems = sorted({p.name for r in rounds for p in r.iterdir() if p.is_dir()}, reverse=True)
    loaded = {(r.name, s): load(r / s, tasks) for r in rounds for s in systems}
    runs = {k: calls for k, (calls, _) in loaded.items()}
    head = " ".join(f"{p:>8s}" for p in (*PARTS, "turn"))
    print(f"per call, ms          calls {head}  pre.   hit")
    for s in systems:
        for r in rounds:
            print(line(f"{s} {r.name}", runs[r.name, s]))
        every = [c for r in rounds for c in runs[r.name, s]]
        print(line(f"{s} pooled", every))
        for tenant in sorted({c["tenant"] for c in every}):
            print(line(f"{s} {tenant}", [c for c in every if c["tenant"] == tenant]))
        for k in sorted({c["turn_index"] for c in every}):
            print(line(f"{s} turn {k}", [c for c in every if c["turn_index"] == k]))
    for s in systems:
        per_round = len(rounds)
        every = [c for r in rounds for c in runs[r.name, s]]
        split = [returning(runs[r.name, s]) for r in rounds]
        moved = [c for m, _ in split for c in m]
        stay = [c for _, st in split for c in st]
        print(
            f"{s}: per round, head queue {sum(c['head_q'] for c in every) / per_round:.2f} s, "
            f"engine queue {sum(c['engine_q'] for c in every) / per_round:.2f} s, "
            f"workflows moved between workers {len(moved)} "
            f"in {per_round} rounds"
        )
        for tenant in sorted({c["tenant"] for c in every}):
            mine = [c for c in every if c["tenant"] == tenant]
            tct = [loaded[r.name, s][1][t] for r in rounds for t in {c["task"] for c in mine}]
            print(
                f"  {tenant}: TCT mean {statistics.fmean(tct):.2f} s, preempted "
                f"{sum(c['preemptions'] for c in mine)}, engine queue "
                f"{sum(c['engine_q'] for c in mine) / per_round:.2f} s a round"
            )
        for r in rounds:
            count: dict[str, int] = defaultdict(int)
            for c in runs[r.name, s]:
                count[c["worker"]] += 1
            sizes = {w: round(batch(runs[r.name, s], w), 2) for w in sorted(count)}
            free, full = waits(runs[r.name, s], args.slots)
            print(
                f"  {r.name} calls per worker {dict(sorted(count.items()))}, mean batch "
                f"{sizes}, head waits > 10 ms with a free slot {free}, slots full {full}"
            )
        for label, group in (("moved", moved), ("stayed", stay)):
            if group:
                hit = statistics.fmean(c["cached"] / c["prompt"] for c in group)
                print(f"  returning calls that {label}: {len(group)}, mean hit {hit:.2f}")
    if len(systems) == 2:
        print(service_ratio(runs, [r.name for r in rounds], *systems))


if __name__ == "__main__":
    main()
