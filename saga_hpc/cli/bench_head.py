"""`saga-hpc bench-head`: load the real head (HTTP, auth, tokenizer, core, ledger)
with echo workers and print calls/s, head-added latency and where the CPU went."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from saga_hpc.bench import jsondoc
from saga_hpc.config import saga_home
from saga_hpc.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench-head",
        help="measure the head alone under load (echo workers, real HTTP API and store)",
    )
    p.add_argument("--db", metavar="URL", help="store URL (default: a fresh SQLite file)")
    p.add_argument("--model", type=Path, help="tokenizer's model dir (default: the tiny model)")
    p.add_argument("--workflows", type=int, default=500, help="concurrent agents (default 500)")
    p.add_argument("--calls", type=int, default=30_000, help="calls measured (default 30000)")
    p.add_argument("--warmup", type=int, default=2_000, help="calls before measuring (2000)")
    p.add_argument("--turns", type=int, default=8, help="calls per workflow (default 8)")
    p.add_argument("--max-tokens", type=int, default=16, help="output tokens per call (16)")
    p.add_argument(
        "--tool-seconds",
        type=float,
        default=0.2,
        help="mean tool time between a workflow's calls (default 0.2)",
    )
    p.add_argument(
        "--token-seconds", type=float, default=0.001, help="echo engine time per token (0.001)"
    )
    p.add_argument(
        "--stream-every", type=int, default=4, help="tokens per worker Tokens frame (default 4)"
    )
    p.add_argument("--workers", type=int, default=2, help="echo workers (default 2)")
    p.add_argument(
        "--kv-tokens",
        type=int,
        default=8_000_000,
        help="KV capacity each echo worker reports (default 8000000: the head, not "
        "memory, is measured)",
    )
    p.add_argument("--deadline", type=float, default=300.0, help="seconds at most (default 300)")
    p.add_argument("--json", type=Path, help="also write the result here")
    p.set_defaults(func=_bench_head)


def _bench_head(args: argparse.Namespace) -> int:
    from saga_hpc.bench.head_bench import EchoHeadOptions, run_bench
    from saga_hpc.bench.rawload import RawLoadSpec
    from saga_hpc.cli._store import open_store

    counts = (args.workflows, args.calls, args.turns, args.max_tokens, args.workers)
    if min(*counts, args.kv_tokens) < 1 or args.stream_every < 1 or args.deadline <= 0:
        raise UsageError(
            "--workflows, --calls, --turns, --max-tokens, --workers, --stream-every "
            "and --deadline must be positive"
        )
    if args.warmup < 0 or args.tool_seconds < 0 or args.token_seconds < 0:
        raise UsageError("--warmup, --tool-seconds and --token-seconds must not be negative")
    if args.db:
        open_store(args).close()  # a bad URL fails here, in one line
    model = args.model or saga_home() / "models" / "tiny"
    if args.model is None and not (model / "tokenizer.json").is_file():
        from saga_hpc.model.tiny import generate

        generate(model)
    if not (model / "tokenizer.json").is_file():
        raise UsageError(f"--model {model}: no tokenizer.json there")
    opts = EchoHeadOptions(
        model_dir=str(model),
        db_url=args.db or "",
        workers=args.workers,
        slots=max(64, 2 * args.workflows // args.workers),
        stream_every=args.stream_every,
        delay_s=args.token_seconds,
        kv_tokens=args.kv_tokens,
    )
    spec = RawLoadSpec(
        base_url="",
        keys=(),
        workflows=args.workflows,
        calls=args.calls,
        turns=args.turns,
        max_tokens=args.max_tokens,
        deadline_s=args.deadline,
        tool_s=args.tool_seconds,
        tag=f"bench-{int(time.time())}",  # fresh call ids on a reused store
    )
    doc = run_bench(opts, spec, warmup_calls=args.warmup)
    text = jsondoc.dumps(doc)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if not doc["errors"] and doc["ledger_missing"] == 0 else 1
