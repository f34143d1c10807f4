"""Walltime handover: a service job near its end passes the service to its successor.

1. The batch script traps Slurm's warning signal (`--signal=B:USR1@300`), finds
   or queues the successor job, and sends SIGUSR1 to the head.
2. The head stops taking new workflows (503 `service_moving`, retry) but keeps
   serving the live ones; every call is already in the store, so the AEGs
   continue in the successor.
3. The successor starts (it may overlap this job), then publishes its endpoint
   by replacing the endpoint file.
4. This head sees the new endpoint, answers every further request with 503
   `service_moved` and the new URL in `X-Saga-Endpoint`, lets in-flight calls
   finish, and exits. Clients that follow the endpoint file retry there.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Handover:
    started_at: float | None = None  # when the warning signal arrived
    moved_to: str | None = None  # the successor's URL, once it has published

    @property
    def moving(self) -> bool:
        return self.started_at is not None


def successor_url(endpoint_file: str | None, own_pid: int | None = None) -> str | None:
    """The URL in the endpoint file if another head has published it, else None."""
    if not endpoint_file:
        return None
    try:
        info = json.loads(Path(endpoint_file).read_text())
    except (OSError, ValueError):
        return None
    same_head = (
        info.get("pid") == (own_pid or os.getpid()) and info.get("host") == os.uname().nodename
    )
    url = info.get("url")
    return None if same_head or not isinstance(url, str) else url
