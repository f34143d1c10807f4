"""Parsers on output captured from the real test cluster (Slurm 22.05.8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saga_hpc.slurm.parsers import (
    SlurmParseError,
    parse_assoc,
    parse_squeue_json,
    parse_sshare,
    parse_version,
)

FIX = Path(__file__).parent / "fixtures"


def test_assoc() -> None:
    rows = parse_assoc((FIX / "sacctmgr_assoc.txt").read_text())
    accounts = {r.account: r for r in rows if r.user is None}
    assert accounts["physics"].fairshare == 3 and accounts["physics"].parent == "root"
    assert accounts["chem"].fairshare == 1
    assert ("physics", "alice") in {(r.account, r.user) for r in rows}
    assert {r.cluster for r in rows} == {"saga"}


def test_sshare_strips_tree_indent() -> None:
    rows = parse_sshare((FIX / "sshare_all.txt").read_text())
    physics = next(r for r in rows if r.account == "physics" and r.user is None)
    assert (
        physics.depth == 1 and physics.raw_shares == 3 and physics.norm_shares == pytest.approx(0.6)
    )
    alice = next(r for r in rows if r.user == "alice")
    assert alice.depth == 2 and alice.fairshare is not None
    assert physics.fairshare is None  # empty on account rows


def test_squeue_json_running_job() -> None:
    (job,) = parse_squeue_json((FIX / "squeue.json").read_text())
    assert (job.user, job.account, job.state) == ("alice", "physics", "RUNNING")
    assert job.time_limit_s == 120
    assert job.end_time is not None and job.start_time is not None
    assert job.end_time - job.start_time == 120
    assert job.remaining_s(job.start_time + 100) == pytest.approx(20)


def test_squeue_json_newer_number_objects() -> None:
    doc = {
        "jobs": [
            {
                "job_id": {"set": True, "infinite": False, "number": 7},
                "job_state": ["PENDING"],
                "time_limit": {"set": True, "infinite": True, "number": 0},
                "user_name": "bob",
            }
        ]
    }
    (job,) = parse_squeue_json(json.dumps(doc))
    assert (job.job_id, job.state, job.time_limit_s) == (7, "PENDING", None)


def test_version() -> None:
    assert parse_version((FIX / "sinfo_version.txt").read_text()) == (22, 5)


@pytest.mark.parametrize(
    ("fn", "text"),
    [
        (parse_assoc, "a|b|c"),
        (parse_assoc, "saga|x||root|many"),
        (parse_sshare, "garbage"),
        (parse_squeue_json, "{}"),
        (parse_squeue_json, "not json"),
        (parse_version, "slurm"),
    ],
)
def test_garbage_is_a_parse_error(fn: object, text: str) -> None:
    with pytest.raises(SlurmParseError):
        fn(text)  # type: ignore[operator]
