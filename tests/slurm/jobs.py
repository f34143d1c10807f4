"""What the service-job tests share: a shared directory as the service's, a
job's state as sacct reports it, waiting for a job to end, and the queued jobs of a name."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def shared_dir(prefix: str, cancel_name: str | None = None) -> Iterator[Path]:
    """A directory under /tmp that the agents' users can reach; on the way out,
    the jobs named `cancel_name` (a successor may still run) are cancelled."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        if cancel_name is not None:
            subprocess.run(["scancel", "-n", cancel_name], capture_output=True)
        if os.environ.get("SAGA_TEST_KEEP"):  # for a post-mortem of the service's logs
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def job_state(job: int | str) -> str:
    """The job's state (RUNNING, COMPLETED, FAILED...), "" before sacct knows it."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", str(job), "--format=State"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    return out[0] if out else ""


def wait_job_end(job: int | str, timeout_s: float) -> str:
    """The job's state once it is no longer queued or running ("" before sacct
    knows it counts as queued); its state then if `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while (state := job_state(job)) in ("", "PENDING", "RUNNING", "COMPLETING"):
        if time.monotonic() >= deadline:
            break
        time.sleep(1)
    return state


def queued_jobs(name: str) -> list[int]:
    """Ids of the jobs named `name` that squeue lists, oldest first."""
    out = subprocess.run(
        ["squeue", "-h", "-n", name, "-o", "%i"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    return sorted(int(j) for j in out)
