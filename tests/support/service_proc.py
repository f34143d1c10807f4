"""`saga-hpc serve --workers N` as a real process tree (mpirun, head, vLLM workers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any


class ServiceProcess:
    def __init__(
        self,
        model: Path,
        db_url: str,
        run_dir: Path,
        *,
        workers: int = 2,
        extra: list[str] | None = None,
        ready_timeout_s: float = 400,
    ) -> None:
        self.run_dir = run_dir
        self.endpoint_file = run_dir / "endpoint.json"
        self.log_path = run_dir / "serve.log"
        self.ready_timeout_s = ready_timeout_s
        self.cmd = [
            sys.executable,
            "-m",
            "saga_hpc.cli.main",
            "serve",
            "--model",
            str(model),
            "--db",
            db_url,
            "--port",
            "0",
            "--workers",
            str(workers),
            "--endpoint-file",
            str(self.endpoint_file),
            *(extra or []),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def base(self) -> str:
        return self.url.removesuffix("/v1")

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def __enter__(self) -> ServiceProcess:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.ready_timeout_s
        while not self.endpoint_file.is_file():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"service did not come up:\n{self.log_tail()}")
            time.sleep(0.5)
        self.info = json.loads(self.endpoint_file.read_text())
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=90)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for _ in range(100):  # vLLM engine processes may outlive mpirun briefly
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        os.killpg(self.proc.pid, signal.SIGKILL)
