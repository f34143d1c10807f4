"""The service as a Slurm job: sbatch starts it, agents of two users and two
accounts call it from their own jobs, scancel ends it cleanly."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from saga_hpc.slurm.client import SlurmClient
from saga_hpc.slurm.sync import sync_accounts
from tests.slurm.jobs import shared_dir, wait_job_end
from tests.support.store import migrated_store

pytestmark = [pytest.mark.slurm, pytest.mark.vllm, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[2]
USERS = {"alice": "physics", "bob": "chem"}


@pytest.fixture
def shared(tiny_model: Path) -> Iterator[Path]:
    with shared_dir("saga-service-") as path:
        yield path


def test_service_job_serves_two_accounts_and_ends_cleanly(shared: Path, tiny_model: Path) -> None:
    db = f"sqlite:///{shared / 'saga.db'}"
    store = migrated_store(db)
    sync_accounts(SlurmClient(), store)
    client = SlurmClient()
    for user, account in USERS.items():
        home = shared / user
        home.mkdir()
        (home / "key").write_text(store.create_api_key(user, account)[1])
        shutil.chown(home, user)
        shutil.chown(home / "key", user)
        home.chmod(0o700)
    service = client.submit(
        REPO / "slurm" / "saga-service.sbatch",
        account="physics",
        extra=[
            "-n",
            "3",
            "--overcommit",
            f"--output={shared / 'service.log'}",
            f"--export=ALL,SAGA_SHARED={shared},SAGA_MODEL={tiny_model},SAGA_DB={db},SAGA_HOST=127.0.0.1",
        ],
    )
    try:
        endpoint = shared / "endpoint.json"
        deadline = time.monotonic() + 300
        while not endpoint.exists():
            assert time.monotonic() < deadline, (shared / "service.log").read_text()[-3000:]
            time.sleep(1)
        assert json.loads(endpoint.read_text())["slurm_job_id"] == str(service)
        agents = {
            user: client.submit(
                REPO / "slurm" / "agent-job.sbatch",
                account=account,
                user=user,
                extra=[
                    f"--output={shared / user / 'agent.log'}",
                    f"--export=ALL,SAGA_ENDPOINT_FILE={endpoint},"
                    f"SAGA_KEY_FILE={shared / user / 'key'},"
                    f"SAGA_RESULT={shared / user / 'result.json'},SAGA_CALLS=8",
                ],
            )
            for user, account in USERS.items()
        }
        for user, job in agents.items():
            log = shared / user / "agent.log"
            assert wait_job_end(job, 180) == "COMPLETED", log.read_text()[-2000:]
            result = json.loads((shared / user / "result.json").read_text())
            assert result["calls_ok"] == 8 and result["errors"] == {}
    finally:
        client.cancel(service)
    assert wait_job_end(service, 120) in ("CANCELLED", "COMPLETED", "FAILED")
    # Ended cleanly: the srun step exited 0 (the head drained, workers said goodbye)
    # and no process of the service is left on the node.
    deadline = time.monotonic() + 60
    while True:
        steps = subprocess.run(
            ["sacct", "-n", "-P", "-j", f"{service}.0", "--format=JobID,State,ExitCode"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        left = subprocess.run(
            ["pgrep", "-f", f"endpoint-file {shared}"], capture_output=True
        ).stdout
        if ("RUNNING" not in steps and not left) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert steps.endswith("|0:0") and not left, (steps, left)
    usage = {u.account: u for u in store.account_usage()}
    assert usage["physics"].calls == 8 and usage["chem"].calls == 8
    store.close()
