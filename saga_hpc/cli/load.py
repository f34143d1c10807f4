"""`saga-hpc load`: a bounded load test against a running service."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from saga_hpc.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "load", help="bounded load test of a running service (requests/s, head latency)"
    )
    p.add_argument("--url", required=True, help="service base URL, e.g. http://127.0.0.1:8000")
    p.add_argument(
        "--key", action="append", required=True, help="API key (repeat for several accounts)"
    )
    p.add_argument("--workflows", type=int, default=32, help="concurrent workflows (default 32)")
    p.add_argument("--calls", type=int, default=256, help="calls in all (default 256)")
    p.add_argument("--turns", type=int, default=4, help="calls per workflow (default 4)")
    p.add_argument("--max-tokens", type=int, default=16, help="output tokens per call (default 16)")
    p.add_argument(
        "--deadline", type=float, default=300.0, help="stop after this many seconds (default 300)"
    )
    p.add_argument("--json", type=Path, help="write the summary here too")
    p.set_defaults(func=_load)


def _load(args: argparse.Namespace) -> int:
    from saga_hpc.client.loadgen import LoadSpec, run_load

    if not args.url.startswith(("http://", "https://")):
        raise UsageError(f"--url {args.url!r} must start with http:// or https://")
    if (
        args.workflows < 1
        or args.calls < 1
        or args.turns < 1
        or args.max_tokens < 1
        or args.deadline <= 0
    ):
        raise UsageError(
            "--workflows, --calls, --turns, --max-tokens and --deadline must be positive"
        )
    spec = LoadSpec(
        base_url=args.url.rstrip("/").removesuffix("/v1"),
        keys=tuple(args.key),
        workflows=args.workflows,
        calls=args.calls,
        turns=args.turns,
        max_tokens=args.max_tokens,
        deadline_s=args.deadline,
    )
    summary = asyncio.run(run_load(spec)).summary()
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if not summary["errors"] else 1
