"""How `saga-hpc serve` becomes a head and N workers.

Under an MPI launcher (`mpirun -n N`, `srun --mpi=pmix -n N`) rank 0 is the
head and ranks 1..N-1 are workers: the head binds its ZeroMQ ROUTER and sends
the endpoint to every rank by MPI broadcast. MPI is used only for that
rendezvous (and to learn ranks and hosts); all traffic afterwards is ZeroMQ, so
a worker dying does not need MPI to survive it.

Without a launcher, `saga-hpc serve --workers N` re-executes itself under
`mpirun -n N+1` for local use (the embedded default); without `--workers` it
says how to launch it.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence

from saga_hpc.errors import UsageError

_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE")


def under_mpi_launcher() -> bool:
    return any(v in os.environ for v in _LAUNCHER_VARS)


def mpirun_prefix(n_ranks: int) -> list[str]:
    """mpirun and its options for a job of `n_ranks` that outlives any one worker rank."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise UsageError(
            "mpirun not found: install Open MPI (scripts/setup.sh does) or launch with srun"
        )
    cmd = [mpirun, "-n", str(n_ranks), "--oversubscribe", "--bind-to", "none"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    # Keep a rank's death (a non-zero exit or a signal, SIGKILL included) from
    # tearing down the others, which Open MPI 4 does by default; the head notices
    # the silence and re-queues (docs/reliability.md). Without recovery on,
    # mpirun never counts a rank killed by a signal as ended, so it would hang
    # after the surviving ranks exit (and ignore SIGTERM then); with it, and no
    # restarts, the job ends when the last rank does.
    cmd += ["--mca", "orte_abort_on_non_zero_status", "0"]
    cmd += ["--mca", "orte_enable_recovery", "1", "--mca", "orte_max_restarts", "0"]
    return cmd


def mpirun_command(n_ranks: int, argv: Sequence[str]) -> list[str]:
    return [*mpirun_prefix(n_ranks), sys.executable, "-m", "saga_hpc.cli.main", *argv]


def exec_under_mpirun(n_ranks: int, argv: Sequence[str]) -> None:
    cmd = mpirun_command(n_ranks, argv)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)


def how_to_launch(example_args: str) -> str:
    return (
        "saga-hpc serve runs as rank 0 (head) + ranks 1..N-1 (workers) of an MPI job: "
        "launch it with "
        f"`mpirun -n 3 saga-hpc serve {example_args}` or "
        "`srun --mpi=pmix -n 3 saga-hpc serve ...`, "
        "or add `--workers 2` to start mpirun locally"
    )


def world() -> tuple[int, int, object]:
    """(rank, size, comm); importing mpi4py initialises MPI, so only under a launcher."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return comm.Get_rank(), comm.Get_size(), comm


def leave_mpi() -> None:
    """End this rank's part in MPI once the rendezvous is done; every rank calls
    it right after the endpoint broadcast, while all ranks are still alive.

    MPI_Finalize is a collective over the whole job (Open MPI 4 fences through
    PMIx). Left to the interpreter's exit (mpi4py's default), it would run
    after a worker rank may have been SIGKILLed, and then the survivors can
    wait in it forever for the dead rank: the job would hold its nodes until
    walltime. Nothing after the rendezvous needs MPI (all traffic is ZeroMQ),
    and a finalized process is an ordinary one to the launcher."""
    from mpi4py import MPI

    if not MPI.Is_finalized():
        MPI.Finalize()
