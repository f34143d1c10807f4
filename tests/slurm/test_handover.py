"""Walltime handover: a service job with a short --time hands over to its successor
while agents are mid-workflow; no workflow is lost and each AEG continues."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from saga_hpc.slurm.client import SlurmClient
from saga_hpc.slurm.sync import sync_accounts
from tests.slurm.jobs import queued_jobs, shared_dir, wait_job_end
from tests.support.store import migrated_store

pytestmark = [pytest.mark.slurm, pytest.mark.vllm, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]
# The agents must still be running when the successor is up: the warning comes
# up to 65 s after the cut, an engine starts in 25-155 s (quiet - busy machine).
TURNS, WORKFLOWS = 80, 3


@pytest.fixture
def shared(tiny_model: Path) -> Iterator[Path]:
    with shared_dir("saga-handover-", cancel_name="saga-service") as path:
        yield path


def test_running_workflows_survive_the_walltime_handover(shared: Path, tiny_model: Path) -> None:
    db = f"sqlite:///{shared / 'saga.db'}"
    store = migrated_store(db)
    client = SlurmClient()
    sync_accounts(client, store)
    (shared / "key").write_text(store.create_api_key("alice", "physics")[1])
    env = f"ALL,SAGA_SHARED={shared},SAGA_MODEL={tiny_model},SAGA_DB={db},SAGA_HOST=127.0.0.1"
    # A generous limit to start with: how long an engine takes to start depends
    # on the machine's load. Once the agents are being served, the limit is cut
    # so the warning comes 5-65 s later (limits are whole minutes), and the
    # successor has the warning's 170 s to come up (155 s seen on a busy machine).
    first = client.submit(
        REPO / "slurm" / "saga-service.sbatch",
        account="physics",
        extra=[
            "-n",
            "2",
            "--overcommit",
            "--time=10",
            "--signal=B:USR1@170",
            f"--output={shared / 'first.log'}",
            # The successor's own warning must not come during the test.
            f"--export={env},SAGA_HANDOVER_SIGNAL=B:USR1@5",
        ],
    )
    endpoint = shared / "endpoint.json"
    deadline = time.monotonic() + 300
    while not endpoint.exists():
        assert time.monotonic() < deadline, (shared / "first.log").read_text()[-3000:]
        time.sleep(1)
    # The agents run until after the successor took over (80 turns x 3 s of tools).
    load = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "saga_hpc.cli.main",
            "load",
            "--endpoint-file",
            str(endpoint),
            "--key-file",
            str(shared / "key"),
            "--workflows",
            str(WORKFLOWS),
            "--turns",
            str(TURNS),
            "--calls",
            str(WORKFLOWS * TURNS),
            "--tool-seconds",
            "3",
            "--prompt-words",
            "4",
            "--max-tokens",
            "4",
            "--retry",
            "200",
            "--deadline",
            "600",
            "--json",
            str(shared / "load.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while store.count_calls() < WORKFLOWS:  # the first job serves the first turns
        assert time.monotonic() < deadline and load.poll() is None, load.stderr
        time.sleep(1)
    elapsed_s = _elapsed_s(first)
    subprocess.run(
        ["scontrol", "update", f"JobId={first}", f"TimeLimit={math.ceil((elapsed_s + 175) / 60)}"],
        check=True,
        timeout=30,
    )
    # The successor inherits the cut limit: give it room, so that its own
    # warning does not come during the test.
    successor = None
    while successor is None and load.poll() is None:
        successor = _successor(first)
        time.sleep(1)
    if successor is not None:
        subprocess.run(
            ["scontrol", "update", f"JobId={successor}", "TimeLimit=15"], check=True, timeout=30
        )
    _, stderr = load.communicate(timeout=700)
    result = json.loads((shared / "load.json").read_text())
    logs = "\n".join(p.read_text()[-1500:] for p in shared.glob("*.log"))
    assert result["errors"] == {}, (result, stderr[-2000:], logs)
    assert result["calls_ok"] == WORKFLOWS * TURNS
    jobs = result["service_jobs"]
    assert jobs[0] == str(first) and len(jobs) == 2, (result, logs)
    assert result["workflows_across_jobs"] == WORKFLOWS
    # Every workflow's AEG is whole: all calls, one tool edge between each two.
    for wf, _ in store.list_workflows(limit=100):
        story = store.workflow_story(wf.workflow_id)
        assert len(story.calls) == TURNS and len(story.edges) == TURNS - 1
    assert store.count_calls() == WORKFLOWS * TURNS
    # The first job leaves on its own after the successor published (not killed at
    # the limit). Its engines may still be shutting down when the agents are done on
    # a busy machine, so wait, past the limit it had, for sacct to say how it ended.
    state = wait_job_end(first, 200)
    assert state == "COMPLETED", (state, logs)
    store.close()


def _successor(job_id: int) -> int | None:
    """The service job queued after `job_id`, if there is one yet."""
    return next((j for j in queued_jobs("saga-service") if j > job_id), None)


def _elapsed_s(job_id: int) -> int:
    """Seconds the job has run (squeue's [D-][H:]M:SS)."""
    out = subprocess.run(
        ["squeue", "-h", "-j", str(job_id), "-o", "%M"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    days, _, clock = out.rpartition("-")
    seconds = 0
    for part in clock.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds + 86400 * int(days or 0)
