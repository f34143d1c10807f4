"""`saga-hpc model tiny --out DIR`: generate the embedded default model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from saga_hpc.errors import UsageError
from saga_hpc.model.tiny import TinyModelSpec, generate


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    model = sub.add_parser("model", help="generate a local model (no hub needed)")
    kinds = model.add_subparsers(dest="kind", required=True)
    tiny = kinds.add_parser("tiny", help="deterministic random-weight Llama + BPE tokenizer")
    tiny.add_argument("--out", type=Path, required=True, help="directory to write")
    tiny.add_argument("--hidden", type=int, default=128, help="hidden size (default 128)")
    tiny.add_argument("--layers", type=int, default=2, help="decoder layers (default 2)")
    tiny.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    tiny.set_defaults(func=_tiny)


def _tiny(args: argparse.Namespace) -> int:
    if args.hidden <= 0 or args.layers <= 0 or args.heads <= 0:
        raise UsageError("--hidden, --layers and --heads must be positive")
    if args.hidden % args.heads:
        raise UsageError(f"--hidden {args.hidden} is not divisible by --heads {args.heads}")
    t0 = time.monotonic()
    spec = TinyModelSpec(hidden=args.hidden, layers=args.layers, heads=args.heads)
    out = generate(args.out, spec)
    print(f"model written to {out} in {time.monotonic() - t0:.1f} s")
    return 0
