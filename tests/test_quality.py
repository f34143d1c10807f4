"""The code stays ruff-clean and the pure core type-checks under mypy --strict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_clean() -> None:
    result = _run(str(BIN / "ruff"), "check", "saga_hpc", "tests", "db")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_core_and_typed_package() -> None:
    result = _run(str(BIN / "mypy"), "saga_hpc")
    assert result.returncode == 0, result.stdout + result.stderr
    strict = _run(str(BIN / "mypy"), "--strict", "saga_hpc/core", "saga_hpc/protocol")
    assert strict.returncode == 0, strict.stdout + strict.stderr
