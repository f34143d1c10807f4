"""Every sub-command refuses bad arguments and bad config with exit code 2 and
one line on stderr naming what is wrong: no traceback, no page of MPI output."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from saga_hpc.cli.main import main

# A directory that cannot be created, even by root.
NOWHERE = "/proc/saga-no-such-dir"
REFUSED_PG = "postgresql+psycopg://saga@127.0.0.1:1/saga"


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield int(sock.getsockname()[1])


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("saga-hpc: error:"), err
    assert needle in lines[0], err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["accounts", "list", "--db", "notaurl"], "notaurl"),
        (["accounts", "list", "--db", "nosuchdriver://x/y"], "nosuchdriver"),
        (["accounts", "list", "--db", REFUSED_PG], "Connection refused"),
        (["keys", "list", "--db", REFUSED_PG], "cannot open database"),
        (["workflow", "list", "--db", f"sqlite:///{NOWHERE}/saga.db"], NOWHERE),
        (["report", "--db", "notaurl"], "notaurl"),
        (["accounts", "add", "physics", "--fairshare", "-3"], "--fairshare"),
        (["accounts", "add", "physics", "--fairshare", "lots"], "invalid int"),
        (["keys", "create", "--user", "a", "--account", "b", "--ttl-days", "x"], "--ttl-days"),
        (["workflow", "list", "--limit", "-1"], "--limit"),
        (["report", "--start", "yesterdayish"], "yesterdayish"),
        (["report", "--start", "now", "--end", "now-1day"], "--end"),
        (["report", "--format", "xml"], "invalid choice"),
        (["report", "--slo-tct", "-1"], "--slo-tct"),
    ],
)
def test_store_commands(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], needle: str
) -> None:
    db = [] if "--db" in argv else ["--db", f"sqlite:///{tmp_path / 'saga.db'}"]
    assert_one_line(*run(capsys, [*argv, *db]), needle)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["sim", "--system", "nope"], "--system"),
        (["sim", "--workload", "nope"], "--workload"),
        (["sim", "--retention", "nope"], "--retention"),
        (["sim", "--gpus", "0"], "positive"),
        (["sim", "--duration", "-1"], "positive"),
        (["sim", "--load", "abc"], "invalid float"),
        (["sim", "--trace", f"{NOWHERE}/t.jsonl"], "--trace"),
        (["sim", "--trace", "/etc/hostname"], "--trace"),
        (["sim", "--profile", "nope"], "nope"),
        (["sim", "--burst", "0.5"], "--burst"),
        (["bench", "--burst", "nan"], "--burst"),
        (["bench", "--systems", "vllm,nope"], "unknown system nope"),
        (["bench", "--workloads", "nope"], "unknown workload nope"),
        (["bench", "--gpus", "-1"], "positive"),
        (["bench", "--profile", f"{NOWHERE}/p.json"], NOWHERE),
        (["model", "tiny", "--out", f"{NOWHERE}/m"], NOWHERE),
        (["model", "tiny", "--out", "/etc/hostname"], "/etc/hostname"),
        (["model", "tiny", "--out", "m", "--hidden", "0"], "positive"),
        (["model", "tiny", "--out", "m", "--hidden", "10", "--heads", "3"], "divisible"),
        (["slurm", "render", "--nodes", "0"], "--nodes"),
        (["slurm", "render", "--time", "soon"], "--time"),
        (["slurm", "render", "--out", f"{NOWHERE}/job.sbatch"], NOWHERE),
        (["bench-head", "--workflows", "0"], "positive"),
        (["bench-head", "--tool-seconds", "-1"], "negative"),
        (["bench-head", "--model", NOWHERE], "tokenizer.json"),
        (["bench-head", "--db", "notaurl"], "notaurl"),
        (["demo", "--workflows", "0"], "--workflows"),
        (["demo", "--workers", "99"], "--workers"),
        (["demo", "--home", NOWHERE], NOWHERE),
        (["worker", "--join-file", f"{NOWHERE}/join.json"], "No such file"),
        (["worker", "--join-file", "/etc/hostname"], "not a saga-hpc join file"),
    ],
)
def test_offline_commands(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert_one_line(*run(capsys, argv), needle)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--url", "ftp://127.0.0.1", "--key", "k"], "http://"),
        (["--url", "http://", "--key", "k"], "no host"),
        (["--url", "http://127.0.0.1:99999", "--key", "k"], "Port out of range"),
        (["--url", "http://[::1", "--key", "k"], "--url"),
        (["--url", "http://127.0.0.1:8000"], "--key"),
        (["--url", "http://127.0.0.1:8000", "--key-file", f"{NOWHERE}/key"], "--key-file"),
        (["--endpoint-file", f"{NOWHERE}/endpoint.json", "--key", "k"], "endpoint"),
        (["--url", "http://127.0.0.1:8000", "--key", "k", "--workflows", "0"], "positive"),
        (["--url", "http://127.0.0.1:8000", "--key", "k", "--retry", "-1"], "negative"),
    ],
)
def test_load(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert_one_line(*run(capsys, ["load", *argv]), needle)


def serve_cases(model: str, taken: int, db: str) -> list[tuple[list[str], str]]:
    """Each fails before mpirun would start (a passing case would exec it)."""
    conf = f"{model}/config.json"  # a readable file that is no PEM
    return [
        (["--model", NOWHERE], "config.json"),
        (["--model", model, "--port", "70000"], "--port"),
        (["--model", model, "--system", "nope"], "--system"),
        (["--model", model, "--workers", "0"], "--workers"),
        (["--model", model, "--hold-budget", "2"], "--hold-budget"),
        (["--model", model, "--tls-cert", conf], "go together"),
        (
            ["--model", model, "--workers", "1", "--db", db, "--join-file", f"{NOWHERE}/j"],
            "--join-file",
        ),
        (["--model", model, "--tls-cert", NOWHERE, "--tls-key", NOWHERE], "--tls-cert"),
        (["--model", model, "--tls-cert", conf, "--tls-key", conf], "not a matching PEM pair"),
        (["--model", model, "--workers", "1", "--db", "notaurl"], "notaurl"),
        (["--model", model, "--workers", "1", "--db", REFUSED_PG], "Connection refused"),
        (["--model", model, "--workers", "1", "--db", db, "--host", "999.1.1.1"], "999.1.1.1"),
        (["--model", model, "--workers", "1", "--db", db, "--port", str(taken)], "in use"),
        (
            ["--model", model, "--workers", "1", "--db", db, "--endpoint-file", f"{NOWHERE}/e"],
            "--endpoint-file",
        ),
    ]


def test_serve(
    capsys: pytest.CaptureFixture[str], tiny_model: Path, tmp_path: Path, taken_port: int
) -> None:
    db = f"sqlite:///{tmp_path / 'saga.db'}"
    for argv, needle in serve_cases(str(tiny_model), taken_port, db):
        assert_one_line(*run(capsys, ["serve", *argv]), needle)


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("SAGA_DB", "notaurl", "notaurl"),
        ("SAGA_DB", REFUSED_PG, "Connection refused"),
        ("SAGA_HOME", NOWHERE, NOWHERE),
    ],
)
def test_bad_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: str,
    value: str,
    needle: str,
) -> None:
    """The config that is not on the command line: the store's URL and home."""
    monkeypatch.delenv("SAGA_DB", raising=False)
    monkeypatch.setenv(env, value)
    assert_one_line(*run(capsys, ["accounts", "list"]), needle)
