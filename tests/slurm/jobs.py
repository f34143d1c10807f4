"""What the service-job tests share: a shared directory as the service's, and a
job's state as sacct reports it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
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
