"""`saga-hpc worker`: one more worker for a running service, outside its MPI job.

A service started with `serve --join-file F` writes there its endpoint, its
workers' keys and its engine settings. Any process of the same user that can
read F (on any node that reaches the head) can then add an engine: to replace
a worker that died, or to grow the service, e.g. as a Slurm job of its own:

    srun -n 1 --gpus 1 saga-hpc worker --join-file /shared/saga/join.json

The worker registers with the head under its own name (`<host>-<pid>`), takes
calls like the MPI ranks, and leaves when the head stops or on SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
from pathlib import Path

from saga_hpc.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "worker",
        help="add a worker to a running service (serve --join-file)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--join-file", required=True, help="the service's join file (mode 0600)")
    p.add_argument("--model", help="model directory on this node (default: the service's own path)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=_worker)


def _worker(args: argparse.Namespace) -> int:
    from saga_hpc.cli._join import read_join_file

    rendezvous = read_join_file(args.join_file)
    if args.model is not None:
        rendezvous.engine["model"] = args.model
    if not Path(rendezvous.engine["model"], "config.json").is_file():
        raise UsageError(f"model {rendezvous.engine['model']}: no config.json there (--model DIR)")
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # a walltime warning is the head's business
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    from saga_hpc.worker.engine import with_cpu_budget
    from saga_hpc.worker.runner import run_worker

    name = f"{socket.gethostname()}-{os.getpid()}"
    # One engine of its own: the CPUs this process may use (srun binds the step's).
    settings = with_cpu_budget(rendezvous.settings(), 1)
    run_worker(rendezvous.endpoint, 0, settings, rendezvous.credentials, name)
    return 0
