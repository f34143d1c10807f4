"""Against the real test cluster (scripts/slurm-up.sh): accounts, shares, jobs, sync, keys."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from saga_hpc.cli.main import main
from saga_hpc.slurm.client import SlurmClient, SlurmError
from saga_hpc.slurm.sync import sync_accounts
from saga_hpc.store.store import Store
from tests.support.store import migrated_store

pytestmark = pytest.mark.slurm


def sacctmgr(*args: str) -> None:
    subprocess.run(["sacctmgr", "-i", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def temp_account() -> object:
    """A fresh account with fairshare 5 and user bob in it, removed afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}"
    sacctmgr("add", "account", name, "parent=root", "fairshare=5", "cluster=saga")
    sacctmgr("add", "user", "bob", f"account={name}", "cluster=saga")
    yield name
    subprocess.run(
        ["sacctmgr", "-i", "delete", "user", "bob", f"account={name}"], capture_output=True
    )
    subprocess.run(["sacctmgr", "-i", "delete", "account", name], capture_output=True)


def test_client_sees_associations_and_shares(temp_account: str) -> None:
    client = SlurmClient()
    assert client.backend == "cli" and client.backend_reason
    assocs = client.associations()
    assert any(a.account == temp_account and a.user is None and a.fairshare == 5 for a in assocs)
    assert any(a.account == temp_account and a.user == "bob" for a in assocs)
    shares = client.shares()
    assert any(r.account == temp_account and r.raw_shares == 5 for r in shares)


def test_sync_mirrors_slurm_and_removal_revokes(temp_account: str, tmp_path: Path) -> None:
    store = migrated_store(f"sqlite:///{tmp_path / 'saga.db'}")
    summary = sync_accounts(SlurmClient(), store)
    assert summary.associations >= 1
    assert store.has_association("bob", temp_account)
    assert (
        store.list_accounts()
        and dict((a, f) for a, _, f in store.list_accounts())[temp_account] == 5
    )
    _, key = store.create_api_key("bob", temp_account)
    assert store.authenticate(key).principal is not None
    sacctmgr("delete", "user", "bob", f"account={temp_account}")
    assert sync_accounts(SlurmClient(), store).removed == 1
    assert store.authenticate(key).forbidden  # the API answers 403 from now on
    store.close()


def test_keys_create_checks_slurm(
    temp_account: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'saga.db'}"
    code = main(["keys", "create", "--user", "bob", "--account", temp_account, "--db", db])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith("saga-")
    assert main(["keys", "create", "--user", "alice", "--account", temp_account, "--db", db]) == 2


@pytest.fixture
def shared_dir() -> object:
    """A directory other Linux users can read (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="saga-slurm-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_submit_list_cancel_as_another_user(shared_dir: Path) -> None:
    script = shared_dir / "sleep.sbatch"
    script.write_text("#!/bin/bash\n#SBATCH --time=2\n#SBATCH --output=/dev/null\nsleep 60\n")
    script.chmod(0o755)
    client = SlurmClient()
    job_id = client.submit(script, account="physics", user="alice")
    other_id = client.submit(script, account="chem", user="bob")  # must not be listed as alice's
    try:
        job = None
        for _ in range(40):
            job = client.job(job_id)
            if job is not None and job.state in ("RUNNING", "PENDING"):
                break
            time.sleep(0.25)
        assert job is not None and (job.user, job.account) == ("alice", "physics")
        # By id: the job's state may move on between the two queries.
        listed = client.jobs(user="alice")
        assert job_id in [j.job_id for j in listed]
        assert {j.user for j in listed} == {"alice"}, listed
    finally:
        client.cancel(job_id)
        client.cancel(other_id)
    with pytest.raises(SlurmError, match="Invalid account"):
        client.submit(script, account="physics", user="bob")


def test_head_follows_slurm_accounts_and_shares(
    temp_account: str, tiny_model: Path, tmp_path: Path
) -> None:
    from tests.support.harness import HeadHarness

    db = f"sqlite:///{tmp_path / 'saga.db'}"
    with HeadHarness(tiny_model, db, workers=1, slurm_sync_s=0.5) as h:
        store = Store.open(db)
        deadline = time.monotonic() + 20
        while not store.has_association("bob", temp_account) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.has_association("bob", temp_account)
        assert h.runtime.head is not None
        ordering = h.runtime.head.scheduler.ordering
        # The sync writes the store, then hands the shares to the scheduler (a new dict).
        while temp_account not in ordering.weights and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)
        weights = ordering.weights  # type: ignore[attr-defined]
        assert weights[temp_account] == pytest.approx(store.shares()[temp_account])
        sacctmgr("delete", "user", "bob", f"account={temp_account}")
        deadline = time.monotonic() + 20
        while store.has_association("bob", temp_account) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not store.has_association("bob", temp_account)  # removed in Slurm: gone here
        store.close()
