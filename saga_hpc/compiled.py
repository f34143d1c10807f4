"""The compiled core and simulator, and the guard that keeps them from running stale code.

`scripts/build_compiled.py` (run by `scripts/setup.sh`) compiles every module
of `saga_hpc.core` and `saga_hpc.sim` with mypyc into one group: an extension
module beside each .py (in place, for the editable install) and the group's
library, `saga_hpc__mypyc`, beside the package (mypyc finds each module's
file from there). The .py files stay the source of truth: without the build,
or when it is out of date, they run as they are.

Python loads an extension module before the .py beside it, so a module built
from an older source would shadow the edited one. The build therefore writes
a manifest (`MANIFEST`): the hash of each source of the two packages and of
each module outside them that they import (their types are compiled in). At
`import saga_hpc`, `guard_imports` uses the compiled modules only if every
one of those sources still matches and the same modules exist; otherwise it
puts a finder first on `sys.meta_path` that imports both packages from their
.py files, and warns once. All or nothing: compiled modules of one group call
each other's native code directly, so an interpreted module among them would
be a second copy of its classes. `SAGA_PURE_PYTHON=1` forces the .py files.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.abc alone would import ~20 ms of modules with every saga_hpc
    from collections.abc import Sequence
    from types import ModuleType

PACKAGES = ("saga_hpc.core", "saga_hpc.sim")
FORCE_PURE = "SAGA_PURE_PYTHON"
HERE = os.path.dirname(os.path.abspath(__file__))  # .../saga_hpc
ROOT = os.path.dirname(HERE)  # the directory saga_hpc is imported from
MANIFEST = os.path.join(HERE, "_compiled.json")
EXTENSION = importlib.machinery.EXTENSION_SUFFIXES[0]  # ".cpython-311-x86_64-linux-gnu.so"
GROUP_LIBRARY = "saga_hpc__mypyc"  # what each compiled module's extension imports


class StaleBuildWarning(RuntimeWarning):
    """The compiled modules were built from other sources: the .py files run."""


def group_sources() -> list[str]:
    """Every module of the compiled packages, as paths relative to `ROOT`, sorted."""
    found = []
    for package in PACKAGES:
        top = os.path.join(ROOT, *package.split("."))
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            found += [
                os.path.relpath(os.path.join(folder, f), ROOT) for f in files if f.endswith(".py")
            ]
    return sorted(found)


def file_hash(relpath: str) -> str:
    import hashlib

    with open(os.path.join(ROOT, relpath), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def stale_reason() -> str | None:
    """Why the compiled modules must not run (None: they match their sources)."""
    import json

    try:
        with open(MANIFEST) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        return "not built (scripts/build_compiled.py)"
    except ValueError as exc:
        return f"{MANIFEST} unreadable: {exc}"
    if manifest.get("extension") != EXTENSION:
        return f"built for {manifest.get('extension')}, this Python loads {EXTENSION}"
    sources: dict[str, str] = manifest["sources"]
    now = group_sources()
    if sorted(sources) != now:
        changed = sorted(set(sources).symmetric_difference(now))
        return f"modules added or removed since the build: {', '.join(changed)}"
    for relpath, digest in {**sources, **manifest["imported"]}.items():
        try:
            if file_hash(relpath) != digest:
                return f"{relpath} changed since the build"
        except FileNotFoundError:
            return f"{relpath} removed since the build"
    for relpath in manifest["extensions"]:
        if not os.path.isfile(os.path.join(ROOT, relpath)):
            return f"{relpath} missing"
    return None


class SourceFinder:
    """Imports the modules of `PACKAGES` from their .py files, never from an
    extension module beside them (a `sys.meta_path` finder)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not any(fullname == p or fullname.startswith(p + ".") for p in PACKAGES):
            return None
        base = os.path.join(ROOT, *fullname.split("."))
        init = os.path.join(base, "__init__.py")
        if os.path.isfile(init):
            return importlib.util.spec_from_file_location(
                fullname, init, submodule_search_locations=[base]
            )
        if os.path.isfile(base + ".py"):
            return importlib.util.spec_from_file_location(fullname, base + ".py")
        if os.path.isfile(base + EXTENSION) or os.path.isfile(init.removesuffix(".py") + EXTENSION):
            # A module whose source is gone: a stale build's extension must not load.
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None  # anything else (a data directory, no such module) as Python finds it


# Which modules run, decided once per process by `guard_imports`.
mode = "pure"
reason = "saga_hpc.compiled.guard_imports() not called"


def guard_imports() -> None:
    """Use the compiled modules if they match their sources, else the .py files."""
    global mode, reason
    if any(p in sys.modules for p in PACKAGES):
        return  # decided already: a second decision could mix the two
    if os.environ.get(FORCE_PURE, "") not in ("", "0"):
        found: str | None = f"{FORCE_PURE}={os.environ[FORCE_PURE]}"
    else:
        found = stale_reason()
        if found is None:
            found = _load_group_library()
    if found is None:
        mode, reason = "compiled", "built from these sources"
        return
    mode, reason = "pure", found
    if os.path.exists(MANIFEST) and not found.startswith(FORCE_PURE):
        warnings.warn(
            f"saga_hpc: the compiled core and simulator are not used ({found}); "
            "running the .py files. Rebuild: python scripts/build_compiled.py",
            StaleBuildWarning,
            stacklevel=3,
        )
    sys.meta_path.insert(0, SourceFinder())


def _load_group_library() -> str | None:
    """Load the group's library from beside the package, where the build put it
    (the editable install puts only the package on the import path). The
    compiled modules import it by name, and find it loaded. None: it loaded."""
    path = os.path.join(ROOT, GROUP_LIBRARY + EXTENSION)
    spec = importlib.util.spec_from_file_location(GROUP_LIBRARY, path)
    assert spec is not None and spec.loader is not None  # an extension suffix: a loader
    try:
        library = importlib.util.module_from_spec(spec)  # an extension runs its init here
        spec.loader.exec_module(library)
    except ImportError as exc:  # e.g. built against another mypyc runtime
        return f"{path} does not load: {exc}"
    sys.modules[GROUP_LIBRARY] = library
    return None


def status() -> str:
    """One line for logs: which modules run, and why."""
    return f"{', '.join(PACKAGES)}: {mode} ({reason})"
