"""`saga-hpc report` agrees with the ledger, in every output format."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest

from saga_hpc.cli.main import main
from saga_hpc.cli.report import parse_time
from saga_hpc.errors import UsageError
from saga_hpc.store.store import CallRecord, Store


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'saga.db'}"
    store = Store.open(url)
    store.upgrade()
    store.ensure_account("physics", fairshare=3)
    store.ensure_account("chem", fairshare=1)
    now = time.time() - 60
    for i, (acct, user, n_calls) in enumerate(
        [("physics", "alice", 3), ("physics", "carol", 2), ("chem", "bob", 4)]
    ):
        wf = f"wf{i}"
        for c in range(n_calls):
            t = now + 10 * c
            store.record_call(
                CallRecord(
                    f"{wf}-{c}",
                    wf,
                    acct,
                    user,
                    "tiny",
                    "w1",
                    100 + c,
                    32 * c,
                    10,
                    t,
                    t,
                    None,
                    t + 2.0,
                    1.5,
                    "bash" if c < n_calls - 1 else None,
                )
            )
        store.finish_workflow(wf, now + 10 * (n_calls - 1) + 2.0)
    store.close()
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_parsable_report_matches_the_ledger(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "report", "-P", "--db", db, "--start", "now-1hour")
    rows = list(csv.DictReader(io.StringIO(out), delimiter="|"))
    accounts = {r["Account"]: r for r in rows if not r["User"]}
    users = {(r["Account"], r["User"]): r for r in rows if r["User"]}
    assert int(accounts["physics"]["Calls"]) == 5 and int(accounts["chem"]["Calls"]) == 4
    assert int(users[("physics", "alice")]["PromptTokens"]) == 100 + 101 + 102
    assert int(users[("chem", "bob")]["CachedTokens"]) == 32 * (0 + 1 + 2 + 3)
    assert float(accounts["chem"]["GpuSeconds"]) == pytest.approx(6.0)
    assert float(accounts["physics"]["ShareEntitled"]) == pytest.approx(0.75)
    assert float(accounts["physics"]["ShareUsed"]) == pytest.approx(7.5 / 13.5, abs=1e-3)
    assert float(users[("chem", "bob")]["TctMedianS"]) == pytest.approx(32.0)


def test_json_csv_and_filters(db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    doc = json.loads(run(capsys, "report", "--format", "json", "--db", db, "--account", "chem"))
    assert {r["account"] for r in doc["rows"]} == {"chem"}
    out = run(capsys, "report", "--format", "csv", "--db", db, "--user", "carol")
    assert out.splitlines()[0].startswith("Account,User,Tasks")
    assert {line.split(",")[1] for line in out.splitlines()[1:]} == {"", "carol"}
    run(capsys, "report", "--db", db, "--plot", str(tmp_path / "shares.png"))
    assert (tmp_path / "shares.png").stat().st_size > 1000


def test_empty_period(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "report", "--db", db, "--start", "2020-01-01", "--end", "2020-01-02")
    assert "no usage" in out


def test_times() -> None:
    assert parse_time("now-2hours", 10_000.0) == 10_000.0 - 7200
    assert parse_time("123.5", 0.0) == 123.5
    for bad in ("yesterday", "now-3weeks", ""):
        with pytest.raises(UsageError):
            parse_time(bad, 0.0)
