"""A process started like vLLM's engine core ends when its parent is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A parent that starts a multiprocessing child (as vLLM starts its engine core),
# prints the child's pid and waits to be killed.
PARENT = """
import multiprocessing, sys, time
from saga_hpc.worker.lifeline import end_with_parent

def child(tie, started):
    if tie:
        end_with_parent()
    started.set()
    time.sleep(60)

if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1])
    started = ctx.Event()
    p = ctx.Process(target=child, args=(sys.argv[2] == "tie", started))
    p.start()
    started.wait(30)
    print(p.pid, flush=True)
    time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _orphan_after_parent_killed(tmp_path: Path, method: str, tie: str) -> tuple[int, bool]:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script), method, tie],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())  # once it has tied itself (or not)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    return child, _alive(child)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_child_ends_when_its_parent_is_killed(tmp_path: Path, method: str) -> None:
    _, alive = _orphan_after_parent_killed(tmp_path, method, "tie")
    assert not alive


def test_untied_child_outlives_its_parent(tmp_path: Path) -> None:
    """What the tie is for: without it the child lives on, adopted by init."""
    child, alive = _orphan_after_parent_killed(tmp_path, "fork", "no")
    try:
        assert alive
    finally:
        if alive:
            os.kill(child, signal.SIGKILL)
