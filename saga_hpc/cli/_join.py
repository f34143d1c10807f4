"""What a worker needs to run for a service: the MPI ranks get it by broadcast,
a worker started later (`saga-hpc worker`) from the service's join file.

The join file holds the workers' secret CURVE key, so it is written with mode
0600, for the service's own user: whoever can read it can join the head and
be handed every tenant's calls.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saga_hpc.errors import UsageError
from saga_hpc.protocol.curve import WorkerCredentials
from saga_hpc.worker.engine import EngineSettings

# The service's engine settings a worker must share with it, as serve's arguments.
ENGINE_ARGS = (
    "model",
    "served_name",
    "system",
    "kv_cache_mb",
    "max_model_len",
    "max_num_seqs",
    "hold_budget",
)


@dataclass(frozen=True)
class Rendezvous:
    endpoint: str
    credentials: WorkerCredentials
    engine: dict[str, Any]  # ENGINE_ARGS

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "credentials": self.credentials.to_dict(),
            "engine": self.engine,
        }

    @staticmethod
    def from_dict(doc: dict[str, Any]) -> Rendezvous:
        return Rendezvous(
            doc["endpoint"], WorkerCredentials.from_dict(doc["credentials"]), doc["engine"]
        )

    def settings(self) -> EngineSettings:
        from saga_hpc.core.systems import SYSTEMS

        e = self.engine
        return EngineSettings(
            model=e["model"],
            served_name=e["served_name"],
            kv_cache_bytes=None if e["kv_cache_mb"] is None else int(e["kv_cache_mb"] * 1e6),
            max_model_len=e["max_model_len"],
            max_num_seqs=e["max_num_seqs"],
            retention_hints=SYSTEMS[e["system"]].retention != "lru",
            hold_budget=e["hold_budget"],
        )


def engine_args(args: Any) -> dict[str, Any]:
    """serve's engine arguments, the model as an absolute path (workers may start
    elsewhere)."""
    engine = {name: getattr(args, name) for name in ENGINE_ARGS}
    engine["model"] = str(Path(args.model).resolve())
    return engine


def write_join_file(path: str, rendezvous: Rendezvous) -> None:
    """Atomic, and never readable by others, not even for a moment."""
    target = Path(path).expanduser()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(rendezvous.to_dict(), f, indent=2)
    tmp.replace(target)


def read_join_file(path: str) -> Rendezvous:
    try:
        doc = json.loads(Path(path).expanduser().read_text())
        return Rendezvous.from_dict(doc)
    except OSError as exc:
        raise UsageError(f"--join-file {path}: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--join-file {path}: not a saga-hpc join file ({exc})") from exc
