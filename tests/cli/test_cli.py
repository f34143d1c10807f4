"""The CLI: happy paths print what was done; bad input exits 2 with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from saga_hpc.cli.main import main
from saga_hpc.store.store import CallRecord, Store


@pytest.fixture(autouse=True)
def no_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests manage accounts by hand; a live Slurm would be synced in (tests/slurm)."""
    from saga_hpc.slurm.client import SlurmClient

    monkeypatch.setattr(SlurmClient, "available", staticmethod(lambda: "disabled in this test"))


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'saga.db'}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_accounts_keys_round_trip(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "accounts", "add", "physics", "--fairshare", "3", "--db", db)[0] == 0
    assert run(capsys, "accounts", "add-user", "alice", "--account", "physics", "--db", db)[0] == 0
    code, out, _ = run(
        capsys, "keys", "create", "--user", "alice", "--account", "physics", "--db", db
    )
    assert code == 0
    secret = out.splitlines()[-1]
    assert secret.startswith("saga-")
    code, out, _ = run(capsys, "keys", "list", "--db", db)
    assert "alice" in out and secret not in out and "active" in out
    key_id = secret.split("-")[1]
    assert run(capsys, "keys", "revoke", key_id, "--db", db)[0] == 0
    assert "revoked" in run(capsys, "keys", "list", "--db", db)[1]
    code, out, _ = run(capsys, "accounts", "list", "--db", db)
    assert "physics" in out and "alice" in out and "1.000" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["keys", "create", "--user", "zed", "--account", "physics"], "no association"),
        (["keys", "revoke", "nope"], "no API key"),
        (["accounts", "add-user", "zed", "--account", "nowhere"], "no account"),
        (["accounts", "remove-user", "zed", "--account", "physics"], "no association"),
        (["accounts", "add", "bad name!"], "must be 1-64"),
        (["workflow", "show", "nope"], "no workflow 'nope'"),
        (["workflow", "list", "--limit", "0"], "--limit"),
        (["keys", "create", "--user", "a", "--account", "b", "--ttl-days", "-1"], "--ttl-days"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    db: str, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, _, err = run(capsys, *argv, "--db", db)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err, err


@pytest.mark.parametrize(
    "argv", [["nonsense"], ["keys"], ["keys", "create"], ["demo", "--workflows", "x"]]
)
def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("saga-hpc: error:")


def test_serve_without_launcher_says_how(
    tmp_path: Path,
    tiny_model: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"):
        monkeypatch.delenv(var, raising=False)
    code, _, err = run(capsys, "serve", "--model", str(tiny_model))
    assert code == 2 and "mpirun -n 3 saga-hpc serve" in err
    code, _, err = run(capsys, "serve", "--model", str(tmp_path))
    assert code == 2 and "no config.json" in err
    code, _, err = run(capsys, "serve", "--model", str(tiny_model), "--system", "magic")
    assert code == 2 and "choose one of" in err


def test_workflow_show_tells_the_story(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store.open(db)
    store.upgrade()
    for i, tool in enumerate(["pytest", None]):
        store.record_call(
            CallRecord(
                call_id=f"c{i}",
                workflow_id="wf-story",
                account="physics",
                user="alice",
                model="tiny",
                worker="w2",
                prompt_tokens=640,
                cached_tokens=320 * i,
                output_tokens=20,
                arrived_at=100.0 + 5 * i,
                dispatched_at=100.0 + 5 * i,
                first_token_at=None,
                finished_at=101.0 + 5 * i,
                worker_time_s=0.9,
                next_tool=tool,
            )
        )
    store.close()
    code, out, _ = run(capsys, "workflow", "show", "wf-story", "--db", db)
    assert code == 0
    assert "on w2" in out and "cached    320,  50%" in out and "tool pytest: 4.00 s" in out
    code, out, _ = run(capsys, "workflow", "show", "wf-story", "--json", "--db", db)
    assert '"tool": "pytest"' in out
