#!/usr/bin/env python3
"""Compile saga_hpc.core and saga_hpc.sim with mypyc, in place, and record what was compiled.

Run by scripts/setup.sh; idempotent: when the manifest still matches the
sources (saga_hpc/compiled.py) it says so and exits. Otherwise it removes the
manifest and the old extension modules first (a build that fails leaves pure
Python, never a stale module), builds one mypyc group (an extension module
beside each .py, the group's library beside the package, C files
under build/mypyc/), writes the manifest, and checks that a fresh
interpreter imports the compiled modules with it (if not, it removes the
build again). Needs mypy (the dev extra) and a C
compiler with the Python headers. `--clean` only removes the build.

    python scripts/build_compiled.py [--force | --clean]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's saga_hpc, whatever the venv links
os.environ["SAGA_PURE_PYTHON"] = "1"  # this process needs no compiled module, nor a warning

from saga_hpc import compiled  # noqa: E402

GROUP = compiled.GROUP_LIBRARY.removesuffix("__mypyc")  # mypyc adds the suffix
BUILD = os.path.join("build", "mypyc")  # C sources and objects, relative to ROOT
# Modules of the packages left interpreted: mypyc cannot compile them faithfully.
# sim/metrics.py: mypyc 2.4 types `len(xs) * sum(x * x for x in xs)` (xs floats) as
# an int sum and raises TypeError at run time; the metrics run once per run anyway.
# sim/records.py: `CallRecords(Sequence)` compiled shares `collections.abc.Sequence`'s
# ABC caches, so `isinstance(x, CallRecords)` answers for Sequence and poisons it
# (then `isinstance([], Sequence)` is False); the loop only appends to its columns.
EXCLUDED = frozenset({"saga_hpc/sim/metrics.py", "saga_hpc/sim/records.py"})


def log(message: str) -> None:
    print(f"[build_compiled] {message}", flush=True)


def artefacts() -> list[str]:
    """Every extension module a build leaves in the tree, relative to ROOT."""
    found = glob.glob(os.path.join(ROOT, compiled.GROUP_LIBRARY + "*.so"))
    for package in compiled.PACKAGES:
        top = os.path.join(ROOT, *package.split("."))
        found += glob.glob(os.path.join(top, "**", "*.so"), recursive=True)
    return sorted(os.path.relpath(p, ROOT) for p in found)


def clean() -> None:
    if os.path.exists(compiled.MANIFEST):
        os.remove(compiled.MANIFEST)
    for relpath in artefacts():
        os.remove(os.path.join(ROOT, relpath))


def imported_outside(sources: list[str]) -> list[str]:
    """The saga_hpc modules outside the group that these sources import: their
    types are compiled in, so an edit to one makes the build stale too."""
    inside = tuple(p + "." for p in compiled.PACKAGES)
    found = set()
    for relpath in sources:
        with open(os.path.join(ROOT, relpath)) as f:
            tree = ast.parse(f.read(), relpath)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("saga_hpc.") and not (name + ".").startswith(inside):
                    base = os.path.join(*name.split("."))
                    init = os.path.join(base, "__init__.py")
                    found.add(init if os.path.isfile(os.path.join(ROOT, init)) else base + ".py")
    return sorted(found)


def build(sources: list[str]) -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    extensions = mypycify(sources, opt_level="3", group_name=GROUP, target_dir=BUILD)
    # Objects and the built modules under BUILD (all of it goes with --clean), then in place.
    where = ["--build-temp", BUILD, "--build-lib", os.path.join(BUILD, "lib")]
    setup(
        name="saga-hpc-compiled",
        ext_modules=extensions,
        script_args=["--quiet", "build_ext", "--inplace", *where],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="build even if up to date")
    mode.add_argument("--clean", action="store_true", help="remove the build and exit")
    args = parser.parse_args()
    os.chdir(ROOT)  # mypy reads pyproject.toml's [tool.mypy] from here
    if args.clean:
        clean()
        shutil.rmtree(BUILD, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(BUILD))  # build/, if nothing else is in it
        log("removed")
        return 0
    stale = compiled.stale_reason()
    if stale is None and not args.force:
        log("up to date")
        return 0
    log(f"building ({stale or 'forced'})")
    started = time.monotonic()
    # What is hashed is what is compiled: taken before the build, so an edit made
    # meanwhile leaves the build stale rather than the manifest wrong.
    sources = compiled.group_sources()
    imported = imported_outside(sources)
    hashes = {p: compiled.file_hash(p) for p in sources + imported}
    clean()
    build([p for p in sources if p not in EXCLUDED])
    manifest = {
        "extension": compiled.EXTENSION,
        "sources": {p: hashes[p] for p in sources},
        "imported": {p: hashes[p] for p in imported},
        "extensions": artefacts(),
    }
    partial = compiled.MANIFEST + ".partial"
    with open(partial, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    os.replace(partial, compiled.MANIFEST)
    probe = "import saga_hpc, saga_hpc.sim.engine as e; print(saga_hpc.compiled.mode, e.__file__)"
    check = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd="/",
        env={**os.environ, "PYTHONPATH": ROOT, compiled.FORCE_PURE: ""},
    )
    if check.returncode != 0 or not check.stdout.startswith("compiled ") or check.stderr:
        clean()
        log(f"the build does not import, removed:\n{check.stdout}{check.stderr}")
        return 1
    log(f"done in {time.monotonic() - started:.0f} s: {len(manifest['extensions'])} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
