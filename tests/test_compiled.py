"""The compiled core and simulator (saga_hpc/compiled.py): used only when built from
the sources beside them, never mixed with them, and giving the same results.

Each case imports saga_hpc in a fresh interpreter from a copy of the package (the
import decision is made once per process). The cases with a real build run where
scripts/build_compiled.py has built this checkout (scripts/setup.sh does)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from saga_hpc import compiled

ROOT = Path(__file__).resolve().parents[1]
BUILT = str(ROOT) == compiled.ROOT and compiled.stale_reason() is None
needs_build = pytest.mark.skipif(not BUILT, reason="no fresh compiled build in this checkout")
MODULES = ("saga_hpc.core.kvpool", "saga_hpc.core.types", "saga_hpc.sim.engine")
PROBE = (
    "import json, saga_hpc, importlib\n"
    f"files = [importlib.import_module(m).__file__ for m in {MODULES!r}]\n"
    "print(json.dumps([saga_hpc.compiled.mode, files]))\n"
)


def python_env(root: Path, **env: str) -> dict[str, str]:
    """A fresh interpreter's environment: saga_hpc from `root`, the build used
    unless `env` forces pure Python."""
    return {**os.environ, "PYTHONPATH": str(root), compiled.FORCE_PURE: "", **env}


def probe(root: Path, **env: str) -> tuple[str, list[str], str]:
    """(mode, the modules' files, stderr) of a fresh interpreter importing from `root`."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        cwd="/",
        env=python_env(root, **env),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    mode, files = json.loads(result.stdout)
    return mode, files, result.stderr


def copy_package(to: Path, *, with_build: bool) -> Path:
    skip = () if with_build else ("*.so", "_compiled.json")
    shutil.copytree(ROOT / "saga_hpc", to / "saga_hpc", ignore=shutil.ignore_patterns(*skip))
    if with_build:
        library = compiled.GROUP_LIBRARY + compiled.EXTENSION
        shutil.copy2(ROOT / library, to / library)
    return to


def fake_build(root: Path, *, fresh: bool) -> None:
    """A manifest as the build writes it, and an extension module beside each source
    that is not one (any attempt to load it fails): whether the guard lets Python
    near them, whatever the manifest says, shows in the import."""
    sources = compiled.group_sources()
    hashes = {p: compiled.file_hash(p) for p in sources}
    if not fresh:
        hashes["saga_hpc/core/kvpool.py"] = "0" * 64
    extensions = [p.removesuffix(".py") + compiled.EXTENSION for p in sources]
    extensions.append(compiled.GROUP_LIBRARY + compiled.EXTENSION)
    for relpath in extensions:
        (root / relpath).write_bytes(b"not an ELF file")
    manifest = {"extension": compiled.EXTENSION, "sources": hashes, "imported": {}}
    manifest["extensions"] = extensions
    (root / "saga_hpc" / "_compiled.json").write_text(json.dumps(manifest))


def test_a_stale_build_never_loads_and_says_so_once(tmp_path: Path) -> None:
    root = copy_package(tmp_path, with_build=False)
    fake_build(root, fresh=False)
    mode, files, stderr = probe(root)
    assert mode == "pure" and all(f.endswith(".py") for f in files), files
    assert stderr.count("StaleBuildWarning") == 1, stderr
    assert "saga_hpc/core/kvpool.py changed since the build" in stderr


def test_extension_modules_without_a_manifest_never_load(tmp_path: Path) -> None:
    root = copy_package(tmp_path, with_build=False)
    fake_build(root, fresh=True)
    (root / "saga_hpc" / "_compiled.json").unlink()  # as a build that was interrupted
    mode, files, stderr = probe(root)
    assert mode == "pure" and all(f.endswith(".py") for f in files), files
    assert stderr == ""


def test_a_group_library_that_does_not_load_leaves_the_sources(tmp_path: Path) -> None:
    root = copy_package(tmp_path, with_build=False)
    fake_build(root, fresh=True)  # the sources match, the library is garbage
    mode, files, stderr = probe(root)
    assert mode == "pure" and all(f.endswith(".py") for f in files), files
    assert "does not load" in stderr and stderr.count("StaleBuildWarning") == 1


def test_an_added_module_makes_the_build_stale(tmp_path: Path) -> None:
    root = copy_package(tmp_path, with_build=False)
    fake_build(root, fresh=True)
    (root / "saga_hpc" / "sim" / "new_policy.py").write_text("")
    mode, _, stderr = probe(root)
    assert mode == "pure" and "saga_hpc/sim/new_policy.py" in stderr


def test_a_removed_source_is_not_replaced_by_its_stale_extension(tmp_path: Path) -> None:
    root = copy_package(tmp_path, with_build=False)
    fake_build(root, fresh=True)
    (root / "saga_hpc" / "core" / "cost.py").unlink()
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", "import saga_hpc.core.cost"],
        capture_output=True,
        text=True,
        cwd="/",
        env=python_env(root),
        timeout=120,
    )
    assert "ModuleNotFoundError: No module named 'saga_hpc.core.cost'" in result.stderr


def test_forced_pure_python_needs_no_build_and_gives_no_warning(tmp_path: Path) -> None:
    root = copy_package(tmp_path, with_build=False)
    fake_build(root, fresh=False)
    mode, files, stderr = probe(root, **{compiled.FORCE_PURE: "1"})
    assert mode == "pure" and all(f.endswith(".py") for f in files), files
    assert stderr == ""


@needs_build
def test_a_fresh_build_is_used() -> None:
    mode, files, stderr = probe(ROOT)
    assert mode == "compiled" and all(f.endswith(compiled.EXTENSION) for f in files), files
    assert stderr == ""


@needs_build
def test_an_edited_source_runs_as_python_with_every_module_of_the_group(tmp_path: Path) -> None:
    root = copy_package(tmp_path, with_build=True)
    mode, files, _ = probe(root)
    assert mode == "compiled", files  # the copy is fresh...
    with (root / "saga_hpc" / "core" / "kvpool.py").open("a") as f:
        f.write("\n# edited\n")
    mode, files, stderr = probe(root)  # ...until a source changes: all modules from .py
    assert mode == "pure" and all(f.endswith(".py") for f in files), files
    assert stderr.count("StaleBuildWarning") == 1, stderr
    assert "saga_hpc/core/kvpool.py changed since the build" in stderr


@needs_build
def test_forced_pure_python_beside_a_fresh_build() -> None:
    mode, files, stderr = probe(ROOT, **{compiled.FORCE_PURE: "1"})
    assert mode == "pure" and all(f.endswith(".py") for f in files), files
    assert stderr == ""


@needs_build
@pytest.mark.parametrize("system", ["saga", "vllm"])
def test_compiled_and_pure_python_simulate_the_same(system: str) -> None:
    """The whole grid is scripts/sim_fingerprint.py; this is one run of each kind."""
    outputs = []
    command = [sys.executable, "-m", "saga_hpc.cli.main", "sim", "--gpus", "4", "--load", "0.5"]
    for pure in ("", "1"):
        result = subprocess.run(
            [*command, "--duration", "300", "--system", system, "--json"],
            capture_output=True,
            text=True,
            cwd="/",
            env=python_env(ROOT, **{compiled.FORCE_PURE: pure}),
            timeout=300,
        )
        assert result.returncode == 0 and result.stderr == "", result.stderr
        metrics = json.loads(result.stdout)["metrics"]
        for timing in ("events_per_s", "sim_wall_s"):
            del metrics[timing]
        outputs.append(metrics)
    assert outputs[0] == outputs[1]
    assert outputs[0]["calls"] > 1000
