"""A service job whose head is SIGKILLed ends (its workers leave: worker/headwatch.py)
and queues its own restart, which serves on the same store; the ledger keeps
every call of both."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from saga_hpc.slurm.client import SlurmClient
from saga_hpc.slurm.sync import sync_accounts
from tests.slurm.jobs import queued_jobs, shared_dir, wait_job_end
from tests.support.store import migrated_store

pytestmark = [pytest.mark.slurm, pytest.mark.vllm, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def shared(tiny_model: Path) -> Iterator[Path]:
    with shared_dir("saga-restart-", cancel_name="saga-restart") as path:
        yield path


def _endpoint_of(path: Path, job: str, logs: Path, timeout_s: float = 300) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            info = json.loads(path.read_text())
            if str(info["slurm_job_id"]) == job:
                return info  # type: ignore[no-any-return]
        except (OSError, ValueError, KeyError):
            pass
        assert time.monotonic() < deadline, _tails(logs)
        time.sleep(1)


def _tails(logs: Path) -> str:
    return "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in sorted(logs.glob("*.log")))


def _call(info: dict[str, str], key: str, workflow: str) -> None:
    r = httpx.post(
        f"{info['url']}/chat/completions",
        headers={"Authorization": f"Bearer {key}", "X-Saga-Workflow": workflow},
        json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        timeout=60,
    )
    assert r.status_code == 200, r.text


def test_a_service_whose_head_dies_restarts_itself(shared: Path, tiny_model: Path) -> None:
    db = f"sqlite:///{shared / 'saga.db'}"
    store = migrated_store(db)
    sync_accounts(SlurmClient(), store)
    key = store.create_api_key("alice", "physics")[1]
    env = (
        f"ALL,SAGA_SHARED={shared},SAGA_MODEL={tiny_model},SAGA_DB={db},"
        "SAGA_HOST=127.0.0.1,SAGA_HEAD_LOST_S=3"
    )
    first = str(
        SlurmClient().submit(
            REPO / "slurm" / "saga-service.sbatch",
            account="physics",
            extra=[
                "--job-name=saga-restart",
                "-n",
                "2",
                "--overcommit",
                f"--output={shared / 'first.log'}",
                f"--export={env}",
            ],
        )
    )
    endpoint = shared / "endpoint.json"
    info = _endpoint_of(endpoint, first, shared)
    _call(info, key, "before")
    os.kill(int(info["pid"]), signal.SIGKILL)  # the head; the test runs on the job's node

    # The first job ends by itself (its worker leaves) and queues the restart.
    assert wait_job_end(first, 120) == "FAILED", _tails(shared)
    assert "restart 1 of 3" in (shared / "first.log").read_text(), _tails(shared)
    successors = [job for job in queued_jobs("saga-restart") if job > int(first)]
    assert len(successors) == 1, (successors, _tails(shared))

    info = _endpoint_of(endpoint, str(successors[0]), shared)
    _call(info, key, "after")
    assert store.count_calls() == 2  # the first job's call is still billed, once
    assert len(store.list_workflows(limit=10)) == 2
    store.close()
