"""The MPI job `saga-hpc serve --workers N` starts survives a worker rank's
SIGKILL, and still ends when its other ranks do (launch.mpirun_prefix)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from saga_hpc.launch import mpirun_prefix
from tests.support.ranks import alive, rank_pids

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(120)]

# Every rank meets the others once and leaves MPI (as `serve` does after the
# endpoint broadcast), says it is up, then waits for the go file; rank 1 never
# gets that far.
RANK = """
import os, sys, time
from pathlib import Path
from mpi4py import MPI
from saga_hpc.launch import leave_mpi
comm = MPI.COMM_WORLD
rank = comm.Get_rank()
comm.bcast("endpoint", root=0)
leave_mpi()
print("up", rank, flush=True)
go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.05)
print("done", rank, flush=True)
"""


def test_sigkill_of_a_rank_leaves_the_others_and_mpirun_ends_with_them(tmp_path: Path) -> None:
    script, go = tmp_path / "rank.py", tmp_path / "go"
    script.write_text(RANK)
    out = tmp_path / "out.txt"
    with out.open("w") as log:
        job = subprocess.Popen(
            [*mpirun_prefix(3), sys.executable, str(script), str(go)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while out.read_text().count("up") < 3:
            assert job.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        ranks = rank_pids(job.pid)
        assert sorted(ranks) == [0, 1, 2]
        os.kill(ranks[1], signal.SIGKILL)
        time.sleep(2)  # Open MPI's default would have torn the job down by now
        assert job.poll() is None, out.read_text()
        assert alive(ranks[0]) and alive(ranks[2])
        go.touch()
        # Without recovery on, mpirun never counts the killed rank as ended and
        # waits forever here; so do the survivors if they finalize MPI only at
        # exit, in a fence with the dead rank (2 of 15 runs on a busy machine).
        job.wait(timeout=20)
        text = out.read_text()
        assert "done 0" in text and "done 2" in text, text
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
