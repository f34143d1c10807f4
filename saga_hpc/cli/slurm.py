"""`saga-hpc slurm render`: a job script filled in for this site."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from saga_hpc.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("slurm", help="Slurm job scripts")
    verbs = p.add_subparsers(dest="verb", required=True)
    r = verbs.add_parser("render", help="fill a job script template (service or agent)")
    r.add_argument("--template", choices=["service", "agent"], default="service")
    r.add_argument("--partition")
    r.add_argument("--nodes", type=int, default=1)
    r.add_argument("--gpus-per-node", type=int, default=0, help="0 = CPU nodes (vLLM-CPU workers)")
    r.add_argument("--model", help="model directory on a shared file system")
    r.add_argument("--time", help="walltime, e.g. 12:00:00")
    r.add_argument("--account")
    r.add_argument("--shared", help="shared directory for the endpoint file")
    r.add_argument("--db", help="database URL for the service")
    r.add_argument("--out", type=Path, help="write here (default: print)")
    r.set_defaults(func=_render)


_TIME = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$|^\d+$")


def _render(args: argparse.Namespace) -> int:
    from saga_hpc.slurm.render import SiteSettings, render

    if args.nodes < 1 or args.gpus_per_node < 0:
        raise UsageError("--nodes must be >= 1 and --gpus-per-node >= 0")
    if args.time and not _TIME.match(args.time):
        raise UsageError(f"--time {args.time!r} is not a Slurm time (e.g. 12:00:00 or 1-00:00:00)")
    text = render(
        args.template,
        SiteSettings(
            partition=args.partition,
            nodes=args.nodes,
            gpus_per_node=args.gpus_per_node,
            model=args.model,
            time=args.time,
            account=args.account,
            shared=args.shared,
            db=args.db,
        ),
    )
    if args.out:
        args.out.write_text(text)
        args.out.chmod(0o755)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0
