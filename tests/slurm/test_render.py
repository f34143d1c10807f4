"""`saga-hpc slurm render` fills the job scripts for a site."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from saga_hpc.cli.main import main


def test_render_service_for_gpu_nodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "svc.sbatch"
    assert (
        main(
            [
                "slurm",
                "render",
                "--nodes",
                "2",
                "--gpus-per-node",
                "4",
                "--partition",
                "gpu",
                "--time",
                "1-00:00:00",
                "--account",
                "services",
                "--model",
                "/shared/llama",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = out.read_text()
    assert "#SBATCH --ntasks=9" in text and "#SBATCH --ntasks=3" not in text
    assert "#SBATCH --gpus-per-node=4" in text and "#SBATCH --partition=gpu" in text
    assert "#SBATCH --time=1-00:00:00" in text and "#SBATCH --time=12:00:00" not in text
    assert 'export SAGA_MODEL="${SAGA_MODEL:-/shared/llama}"' in text
    assert "#SBATCH --signal=B:USR1@300" in text
    assert subprocess.run(["bash", "-n", str(out)]).returncode == 0


def test_render_agent_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slurm", "render", "--template", "agent", "--account", "physics"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("#!/bin/bash") and "#SBATCH --account=physics" in text


@pytest.mark.parametrize("argv", [["--nodes", "0"], ["--time", "tomorrow"], ["--template", "x"]])
def test_bad_render_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["slurm", "render", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 2
