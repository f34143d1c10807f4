"""A SIGTERM to a process running a ServiceProcess stops the service's whole
session first (it runs in a session of its own and would outlive its parent)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from saga_hpc.client.service import session_members

# A stand-in for `saga-hpc serve`: announces itself, then runs with a child of its
# own (as mpirun runs ranks) until it is stopped.
FAKE_SERVICE = textwrap.dedent(
    """
    import json, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(sys.argv[1], "w") as f:
        json.dump({"url": "http://127.0.0.1:1/v1"}, f)
    time.sleep(600)
    """
)

# The bench's side: start the service, report its session, then wait to be killed.
PARENT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from saga_hpc.client.service import ServiceProcess
    run_dir = Path(sys.argv[1])
    svc = ServiceProcess(Path("unused"), "sqlite://", run_dir)
    svc.cmd = [sys.executable, "-c", sys.argv[2], str(svc.endpoint_file)]
    with svc:
        print(svc.session, flush=True)
        time.sleep(600)
    """
)


def test_sigterm_to_the_parent_stops_the_service_session(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path), FAKE_SERVICE],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    sid = int(parent.stdout.readline())
    deadline = time.monotonic() + 10
    while len(session_members(sid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the service and its child
    assert len(session_members(sid)) == 2
    os.kill(parent.pid, signal.SIGTERM)
    assert parent.wait(30) == 128 + signal.SIGTERM
    assert session_members(sid) == []
