"""`saga-hpc fit-profile`: a simulator cost profile fitted to the calls a service served.

Reads the ledger's per-call engine timings (`bench.fit_profile`) over a period
and writes a GPU profile for `saga-hpc sim/bench --profile`: the prefill rate,
the decode step and its growth with the batch, and the time per call outside
the engine, as the service measured them under its real load.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from saga_hpc.cli._store import open_store
from saga_hpc.cli.bench import check_outputs
from saga_hpc.cli.report import parse_time
from saga_hpc.config import add_db_argument, db_url
from saga_hpc.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "fit-profile", help="fit a simulator GPU profile to the engine timings in the ledger"
    )
    p.add_argument("--json", type=Path, required=True, metavar="PROFILE.json", help="write here")
    p.add_argument(
        "--kv-tokens",
        type=int,
        required=True,
        help="KV pool per worker, tokens (vLLM's log: 'KV cache size: N tokens')",
    )
    p.add_argument(
        "--max-batch", type=int, default=16, help="the workers' --max-num-seqs (default 16)"
    )
    p.add_argument("--block-size", type=int, default=32, help="KV block size (default 32)")
    p.add_argument("--start", help="calls that finished from (ISO time, unix s, now-N{hours,days})")
    p.add_argument("--end", default="now", help="... until (default now)")
    p.add_argument("--name", help="profile name (default: the file's stem)")
    add_db_argument(p)
    p.set_defaults(func=_fit)


def _fit(args: argparse.Namespace) -> int:
    from saga_hpc.bench.fit_profile import call_timings, fit

    check_outputs(args)
    if min(args.kv_tokens, args.max_batch, args.block_size) < 1:
        raise UsageError("--kv-tokens, --max-batch and --block-size must be positive")
    now = time.time()
    start = parse_time(args.start, now) if args.start else None
    end = parse_time(args.end, now)
    store = open_store(args)
    try:
        calls = store.list_calls(start, end)
    finally:
        store.close()
    try:
        fitted = fit(call_timings(calls))
    except ValueError as exc:
        raise UsageError(f"{exc} ({len(calls)} calls in the period)") from exc
    name = args.name or args.json.stem
    profile = fitted.profile(
        name=name,
        kv_tokens=args.kv_tokens // args.block_size * args.block_size,
        block_tokens=args.block_size,
        max_batch=args.max_batch,
        description=f"fitted by saga-hpc fit-profile to {fitted.calls} calls of {db_url(args)}",
    )
    args.json.write_text(json.dumps(asdict(profile), indent=2) + "\n")
    print(
        f"{fitted.calls} calls: prefill {fitted.prefill_tokens_per_s:.0f} tokens/s, decode step "
        f"{1000 * fitted.decode_step_s:.1f} ms + {1000 * fitted.decode_step_per_seq_s:.2f} ms per "
        f"further sequence, {1000 * fitted.call_overhead_s:.0f} ms per call outside the engine "
        f"(the head's view; agents see the network too) -> {args.json}"
    )
    return 0
