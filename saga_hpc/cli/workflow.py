"""`saga-hpc workflow show ID | list`: the story of an agent workflow (its AEG)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

from saga_hpc.cli._store import open_store
from saga_hpc.config import add_db_argument
from saga_hpc.errors import NotFound, UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wf = sub.add_parser("workflow", help="inspect recorded workflows (Agent Execution Graphs)")
    verbs = wf.add_subparsers(dest="verb", required=True)
    show = verbs.add_parser("show", help="each call, where it ran, what was cached, the tool gaps")
    show.add_argument("workflow_id")
    show.add_argument("--json", action="store_true", help="print the AEG as JSON")
    show.set_defaults(func=_show)
    lst = verbs.add_parser("list", help="recent workflows")
    lst.add_argument("--account")
    lst.add_argument("--limit", type=int, default=20)
    lst.set_defaults(func=_list)
    for p in (show, lst):
        add_db_argument(p)


def _show(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        story = store.workflow_story(args.workflow_id)
    except NotFound as exc:
        raise UsageError(str(exc)) from exc
    finally:
        store.close()
    if args.json:
        print(
            json.dumps(
                {
                    "workflow": asdict(story.workflow),
                    "calls": [asdict(c) for c in story.calls],
                    "edges": [asdict(e) for e in story.edges],
                },
                indent=2,
            )
        )
        return 0
    w = story.workflow
    t0 = min([w.started_at, *(c.arrived_at for c in story.calls)])
    state = f"finished after {w.finished_at - t0:.2f} s" if w.finished_at else "open"
    print(
        f"workflow {w.workflow_id}  account {w.account}  user {w.user}  "
        f"started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(t0))}  {state}"
    )
    edges = {e.from_call: e for e in story.edges}
    for c in story.calls:
        pct = 100 * c.cached_tokens / c.prompt_tokens if c.prompt_tokens else 0.0
        print(
            f"  call {c.seq + 1:3d}  +{c.arrived_at - t0:7.2f}s  on {c.worker:4s}  "
            f"prompt {c.prompt_tokens:6d} (cached {c.cached_tokens:6d}, {pct:3.0f}%)  "
            f"out {c.output_tokens:5d}  "
            f"{c.finished_at - c.arrived_at:6.2f}s  {c.call_id}"
        )
        edge = edges.get(c.call_id)
        if edge is not None:
            print(f"     └─ tool {edge.tool}: {edge.duration_s:.2f} s")
        elif c.next_tool:
            print(f"     └─ tool {c.next_tool}: (no call since)")
    prompt = sum(c.prompt_tokens for c in story.calls)
    cached = sum(c.cached_tokens for c in story.calls)
    print(
        f"  {len(story.calls)} calls, {prompt} prompt tokens ({cached} from cache), "
        f"{sum(c.output_tokens for c in story.calls)} output, "
        f"{sum(e.duration_s for e in story.edges):.2f} s in tools"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be positive")
    store = open_store(args)
    try:
        rows = store.list_workflows(args.account, args.limit)
    finally:
        store.close()
    print(f"{'WORKFLOW':40s} {'ACCOUNT':12s} {'USER':10s} {'CALLS':>5s} {'STARTED':19s} STATE")
    for w, n in rows:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(w.started_at))
        print(
            f"{w.workflow_id:40s} {w.account:12s} {w.user:10s} {n:5d} {started:19s} "
            f"{'done' if w.finished_at else 'open'}"
        )
    return 0
