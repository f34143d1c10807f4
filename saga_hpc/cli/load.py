"""`saga-hpc load`: a bounded load test against a running service."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from urllib.parse import urlsplit

from saga_hpc.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "load", help="bounded load test of a running service (requests/s, head latency)"
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="service base URL, e.g. http://127.0.0.1:8000")
    where.add_argument("--endpoint-file", type=Path, help="the endpoint JSON the service publishes")
    p.add_argument(
        "--key", action="append", default=[], help="API key (repeat for several accounts)"
    )
    p.add_argument("--key-file", type=Path, help="read the API key from this file")
    p.add_argument("--workflows", type=int, default=32, help="concurrent workflows (default 32)")
    p.add_argument("--calls", type=int, default=256, help="calls in all (default 256)")
    p.add_argument("--turns", type=int, default=4, help="calls per workflow (default 4)")
    p.add_argument("--max-tokens", type=int, default=16, help="output tokens per call (default 16)")
    p.add_argument(
        "--deadline", type=float, default=300.0, help="stop after this many seconds (default 300)"
    )
    p.add_argument(
        "--tool-seconds", type=float, default=0.0, help="pause between a workflow's calls"
    )
    p.add_argument("--prompt-words", type=int, default=60, help="words each turn adds (default 60)")
    p.add_argument(
        "--retry",
        type=float,
        default=120.0,
        help="seconds one call keeps retrying 503s and refused connections (default 120)",
    )
    p.add_argument("--json", type=Path, help="write the summary here too")
    p.set_defaults(func=_load)


def endpoint_url(path: Path) -> str:
    """The URL in a service's published endpoint file."""
    try:
        return str(json.loads(path.read_text())["url"])
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"cannot read the endpoint from {path}: {exc}") from exc


def check_url(url: str) -> str:
    """A service URL with a scheme, a host and a valid port (or none)."""
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--url {url!r} must start with http:// or https://")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise UsageError(f"--url {url!r}: {exc}") from exc
    if not parts.hostname:
        raise UsageError(f"--url {url!r} names no host")
    return url


def _load(args: argparse.Namespace) -> int:
    from saga_hpc.client.loadgen import LoadSpec, run_load

    url = check_url(args.url or endpoint_url(args.endpoint_file))
    keys = list(args.key)
    if args.key_file:
        try:
            keys.append(args.key_file.read_text().strip())
        except OSError as exc:
            raise UsageError(f"cannot read --key-file: {exc.strerror}") from exc
    if args.prompt_words < 0 or args.retry < 0 or args.tool_seconds < 0:
        raise UsageError("--prompt-words, --retry and --tool-seconds must not be negative")
    if not keys:
        raise UsageError("give an API key with --key or --key-file")
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
        base_url=url.rstrip("/").removesuffix("/v1"),
        endpoint_file=str(args.endpoint_file) if args.endpoint_file else None,
        tool_s=args.tool_seconds,
        prompt_words=args.prompt_words,
        retry_s=args.retry,
        keys=tuple(keys),
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
