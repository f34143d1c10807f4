"""The head's SIGKILL does not leave its workers holding the node: a real
`saga-hpc serve --workers 1` (mpirun, a vLLM-CPU worker) ends by itself, engine
processes included (worker/headwatch.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from saga_hpc.client.service import ServiceProcess, session_members
from saga_hpc.worker.headwatch import LOST_AFTER_ENV
from tests.support.ranks import rank_pids
from tests.support.store import migrated_store

pytestmark = [pytest.mark.vllm, pytest.mark.mpi, pytest.mark.timeout(600)]

LOST_AFTER_S = 3.0


def test_workers_leave_when_their_head_is_killed(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOST_AFTER_ENV, str(LOST_AFTER_S))  # mpirun passes it to the ranks
    db = f"sqlite:///{tmp_path / 'saga.db'}"
    migrated_store(db).close()  # the service's store; no call is made
    svc = ServiceProcess(tiny_model, db, tmp_path / "run", workers=1, ready_timeout_s=400)
    with svc:
        assert svc.proc is not None
        ranks = rank_pids(svc.session)
        assert sorted(ranks) == [0, 1], ranks
        os.kill(ranks[0], signal.SIGKILL)
        killed_at = time.monotonic()
        try:
            svc.proc.wait(timeout=LOST_AFTER_S + 60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the job outlived its head by 60 s:\n{svc.log_tail()}")
        ended_s = time.monotonic() - killed_at
        left = []
        for _ in range(50):  # engine processes exit just after their worker
            left = session_members(svc.session)
            if not left:
                break
            time.sleep(0.2)
        log = svc.log_tail(80)
        assert left == [], f"left behind: {left}\n{log}"
        assert "unreachable for" in log, log
        # Not before the head was given its time, and not much after it.
        assert LOST_AFTER_S <= ended_s < LOST_AFTER_S + 45, (ended_s, log)
        print(f"job ended {ended_s:.1f} s after the head's SIGKILL")
