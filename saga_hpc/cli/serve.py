"""`saga-hpc serve`: the service. Rank 0 = head (HTTP + ZeroMQ), other ranks = vLLM workers."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import ssl
import sys
from pathlib import Path

from saga_hpc import launch
from saga_hpc.config import add_db_argument, db_url
from saga_hpc.core.cost import CostModel
from saga_hpc.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the service (head + workers) under MPI",
        description=launch.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", required=True, help="local model directory (e.g. from `saga-hpc model tiny`)"
    )
    p.add_argument("--served-name", default="tiny", help="model name clients send (default tiny)")
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=8000, help="HTTP port, 0 = any free port (default 8000)"
    )
    p.add_argument("--endpoint-file", help="write the endpoint JSON here once the workers are up")
    p.add_argument(
        "--join-file",
        help="write here (mode 0600) what `saga-hpc worker` needs to add a worker later: "
        "the endpoint, the workers' keys, the engine settings",
    )
    p.add_argument(
        "--workers", type=int, help="without an MPI launcher: start mpirun with this many workers"
    )
    p.add_argument(
        "--system",
        default="saga",
        help="scheduling system: saga, vllm, sglang, continuum, autellix",
    )
    p.add_argument(
        "--kv-cache-mb",
        type=float,
        help="KV cache per worker in MB; 0 = size from memory utilisation "
        "(default: 64 on the CPU build, 0 on GPUs)",
    )
    p.add_argument(
        "--hold-budget",
        type=float,
        default=0.5,
        help="fraction of each worker's KV pool that retention hints may hold (default 0.5)",
    )
    p.add_argument(
        "--prefill-tokens-per-s",
        type=float,
        help="prompt tokens a worker computes per second, for steal decisions "
        "(default: the core's 20000; measure it: docs/deploy.md)",
    )
    p.add_argument(
        "--decode-tokens-per-s",
        type=float,
        help="output tokens per second of one sequence in a busy batch (default: the core's 40)",
    )
    p.add_argument("--max-model-len", type=int, default=4096, help="context length (default 4096)")
    p.add_argument(
        "--max-num-seqs", type=int, default=16, help="concurrent calls per worker (default 16)"
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=600.0,
        help="seconds to wait for all workers to register (default 600)",
    )
    p.add_argument(
        "--slurm-sync",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="mirror Slurm accounts, users and fair-share weights this often (0 = off)",
    )
    p.add_argument(
        "--tls-cert",
        metavar="PEM",
        help="serve the API over HTTPS with this certificate (chain); needs --tls-key",
    )
    p.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add_db_argument(p)
    p.set_defaults(func=_serve)


def _check(args: argparse.Namespace) -> None:
    if not Path(args.model, "config.json").is_file():
        raise UsageError(
            f"--model {args.model}: no config.json there "
            "(generate one: saga-hpc model tiny --out DIR)"
        )
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a TCP port")
    if args.workers is not None and not 1 <= args.workers <= 256:
        raise UsageError("--workers must be between 1 and 256")
    if not 0 <= args.hold_budget <= 1:
        raise UsageError(f"--hold-budget {args.hold_budget}: a fraction between 0 and 1")
    if args.max_model_len < 64 or args.max_num_seqs < 1 or (args.kv_cache_mb or 0) < 0:
        raise UsageError("--max-model-len must be >= 64, --max-num-seqs >= 1, --kv-cache-mb >= 0")
    from saga_hpc.core.systems import SYSTEMS

    for flag in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be positive")
    if args.system not in SYSTEMS:
        raise UsageError(f"--system {args.system!r}: choose one of {', '.join(sorted(SYSTEMS))}")
    _check_tls(args.tls_cert, args.tls_key)


def _check_tls(cert: str | None, key: str | None) -> None:
    """Both or neither, and a pair that loads: found now, not by the head after
    the engines have started."""
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if cert is None or key is None:
        return
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file() or not os.access(path, os.R_OK):
            raise UsageError(f"{flag} {path}: not a readable file")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        raise UsageError(f"--tls-cert/--tls-key: not a matching PEM pair ({exc})") from exc


def _preflight(args: argparse.Namespace) -> None:
    """What only the head would find out, checked before mpirun starts any rank:
    a failing head aborts the MPI job, and Open MPI explains that over a page."""
    from saga_hpc.cli._store import open_store

    open_store(args).close()
    try:
        with socket.create_server((args.host, args.port)):
            pass
    except OSError as exc:
        reason = exc.strerror or exc
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {reason}") from exc
    for flag, path in (("--endpoint-file", args.endpoint_file), ("--join-file", args.join_file)):
        if path:
            _check_writable_dir(flag, path)


def _check_writable_dir(flag: str, path: str) -> None:
    where = Path(path).expanduser().resolve().parent
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{flag}: cannot create {where}: {exc.strerror}") from exc
    if not os.access(where, os.W_OK):
        raise UsageError(f"{flag}: {where} is not writable")


def _serve(args: argparse.Namespace) -> int:
    _check(args)
    if not launch.under_mpi_launcher():
        if args.workers is None:
            raise UsageError(launch.how_to_launch(f"--model {args.model}"))
        _preflight(args)
        launch.exec_under_mpirun(args.workers + 1, sys.argv[1:])
    # Slurm's walltime warning is for the head (which installs its handler); until
    # then, and on every worker rank and engine process, it must not kill anything.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    rank, size, comm = launch.world()
    if size < 2:
        raise UsageError(
            "this MPI job has 1 rank: the head needs at least one worker rank (-n 2 or more)"
        )
    if args.workers is not None and args.workers != size - 1:
        logging.getLogger("saga_hpc").warning(
            "--workers %d ignored: the MPI job has %d worker ranks", args.workers, size - 1
        )
    hosts: list[str] = comm.allgather(socket.gethostname())  # type: ignore[attr-defined]
    if rank == 0:
        return _head(args, comm, size, single_host=len(set(hosts)) == 1)
    return _worker(args, comm, rank, hosts)


def _head(args: argparse.Namespace, comm: object, size: int, single_host: bool) -> int:
    from saga_hpc.head.server import HeadRuntime, ServeOptions

    opts = ServeOptions(
        model_dir=str(Path(args.model).resolve()),
        served_name=args.served_name,
        db_url=db_url(args),
        host=args.host,
        port=args.port,
        endpoint_file=args.endpoint_file,
        expected_workers=size - 1,
        system=args.system,
        max_model_len=args.max_model_len,
        ready_timeout_s=args.ready_timeout,
        slurm_sync_s=args.slurm_sync,
        cost=_cost(args),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    from saga_hpc.cli._join import Rendezvous, engine_args, write_join_file
    from saga_hpc.protocol.curve import ChannelKeys, WorkerGate

    # Workers on other nodes need a routable address; on one node loopback is enough.
    zmq_bind = "tcp://127.0.0.1:*" if single_host else "tcp://*:*"
    # Either way other users' processes can reach the port: only holders of
    # this job's keys get in (protocol/curve.py); the keys go by MPI only.
    keys = ChannelKeys.generate()

    def bind(head: object) -> str:
        endpoint: str = head.bind(zmq_bind, WorkerGate(keys))  # type: ignore[attr-defined]
        return endpoint if single_host else endpoint.replace("0.0.0.0", socket.getfqdn())

    def announce(endpoint: str) -> None:
        rendezvous = Rendezvous(endpoint, keys.workers, engine_args(args))
        if args.join_file:
            write_join_file(args.join_file, rendezvous)
        comm.bcast(rendezvous.to_dict(), root=0)  # type: ignore[attr-defined]
        announced.append(endpoint)
        launch.leave_mpi()

    announced: list[str] = []
    try:
        return asyncio.run(HeadRuntime(opts, bind, announce).run())
    except UsageError:
        if not announced:  # the workers wait in bcast forever otherwise
            comm.Abort(2)  # type: ignore[attr-defined]
        raise


def _cost(args: argparse.Namespace) -> CostModel | None:
    if args.prefill_tokens_per_s is None and args.decode_tokens_per_s is None:
        return None
    default = CostModel()
    return CostModel(
        prefill_tokens_per_s=args.prefill_tokens_per_s or default.prefill_tokens_per_s,
        decode_tokens_per_s=args.decode_tokens_per_s or default.decode_tokens_per_s,
    )


def _worker(args: argparse.Namespace, comm: object, rank: int, hosts: list[str]) -> int:
    from saga_hpc.cli._join import Rendezvous
    from saga_hpc.worker.engine import device_for_worker, with_cpu_budget
    from saga_hpc.worker.runner import run_worker

    # Several worker ranks on one GPU node see all its GPUs: each takes its own.
    here = [r for r, h in enumerate(hosts) if h == hosts[rank] and r != 0]
    device = device_for_worker(here.index(rank), os.environ.get("CUDA_VISIBLE_DEVICES"))
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device

    # Every rank parses the same command line, but the head's word is what counts.
    rendezvous = Rendezvous.from_dict(comm.bcast(None, root=0))  # type: ignore[attr-defined]
    launch.leave_mpi()
    os.environ.setdefault("SAGA_WORKER_RANK", str(rank))
    # On the CPU build the node's cores are split among its engines.
    settings = with_cpu_budget(rendezvous.settings(), len(here))
    run_worker(rendezvous.endpoint, rank, settings, rendezvous.credentials)
    return 0
