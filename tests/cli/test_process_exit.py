"""`saga-hpc sim` as its own process ends without freeing its run object by object
(saga_hpc.cli.main): what it printed and wrote must all be there, exit codes kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from saga_hpc.cli.main import main

CLI = [sys.executable, "-m", "saga_hpc.cli.main"]


def test_sim_process_output_and_files_complete(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    argv = ["sim", "--gpus", "2", "--duration", "60", "--write-trace", str(trace)]
    # stdout is a pipe (block-buffered): the JSON is whole only if it was flushed.
    p = subprocess.run([*CLI, *argv, "--json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["gpus"] == 2 and doc["metrics"]["calls"] > 0
    written = trace.read_text().splitlines()
    assert written and all(json.loads(line)["task_id"] for line in written)
    assert doc["metrics"]["tasks"] == len(written)
    # Replayed by a process and in this one (which main must return to).
    replay = subprocess.run(
        [*CLI, "sim", "--gpus", "2", "--trace", str(trace), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        replay.returncode == 0
        and json.loads(replay.stdout)["metrics"]["calls"] == (doc["metrics"]["calls"])
    )
    assert main(["sim", "--gpus", "2", "--trace", str(trace)]) == 0


def test_sim_process_bad_input_exits_2_with_its_line() -> None:
    p = subprocess.run([*CLI, "sim", "--gpus", "0"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "saga-hpc: error: --gpus, --duration and --load must be positive"
    ]
