"""`saga-hpc serve --workers N` as a child process tree (mpirun, head, vLLM
workers and their engine processes), started in its own session so that
stopping it stops every process it made, and checked to leave none behind.

mpirun puts each rank in a process group of its own, and a process whose
parent died is adopted by init, so "every process it made" is the session,
not mpirun's process group."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any


class ServiceError(RuntimeError):
    """The service exited or did not become ready; the message has its log's tail."""


class ServiceProcess:
    def __init__(
        self,
        model: Path,
        db_url: str,
        run_dir: Path,
        *,
        workers: int = 2,
        extra: list[str] | None = None,
        ready_timeout_s: float = 600,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.endpoint_file = run_dir / "endpoint.json"
        self.log_path = run_dir / "serve.log"
        self.ready_timeout_s = ready_timeout_s
        self.on_wait = on_wait  # called every ~10 s while the engines start (progress)
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
        self.left_behind: list[int] = []
        self._trapped = False  # `start` set the SIGTERM handler; `stop` puts the old one back
        self._sigterm_before: Any = signal.SIG_DFL

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def base(self) -> str:
        return self.url.removesuffix("/v1")

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def start(self) -> ServiceProcess:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.endpoint_file.unlink(missing_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child owns it
        self._trap_sigterm()
        self.proc = subprocess.Popen(
            self.cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _trap_sigterm(self) -> None:
        """A SIGTERM to this process (`kill`, `timeout`) unwinds through `stop`:
        by default it ends the process at once, and the service, in a session of
        its own, would run on with its engines."""
        if threading.current_thread() is threading.main_thread() and not self._trapped:
            self._sigterm_before = signal.signal(signal.SIGTERM, _exit_on_sigterm)
            self._trapped = True

    def _wait_ready(self) -> ServiceProcess:
        assert self.proc is not None
        deadline = time.monotonic() + self.ready_timeout_s
        last_note = time.monotonic()
        while not self.endpoint_file.is_file():
            if self.proc.poll() is not None:
                raise ServiceError(f"the service exited during start:\n{self.log_tail(15)}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(
                    f"service not ready after {self.ready_timeout_s:.0f} s:\n{self.log_tail(15)}"
                )
            if self.on_wait and time.monotonic() - last_note > 10:
                last_note = time.monotonic()
                self.on_wait()
            time.sleep(0.3)
        self.info = json.loads(self.endpoint_file.read_text())
        return self

    @property
    def session(self) -> int:
        """The session id of every process of the service (the launcher's pid)."""
        if self.proc is None:
            raise ServiceError("the service is not running")
        return self.proc.pid

    def stop(self, timeout_s: float = 90) -> list[int]:
        """SIGTERM mpirun (it forwards it to the ranks), wait, then make sure nothing
        of the session is left; returns the pids that had to be killed (empty when
        it stopped cleanly)."""
        if self.proc is None:
            return []
        sid = self.proc.pid
        try:
            os.killpg(sid, signal.SIGTERM)
            self.proc.wait(timeout=timeout_s)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(sid, signal.SIGKILL)
            self.proc.wait()
        left: list[int] = []
        for _ in range(50):  # vLLM's engine processes exit shortly after their parent
            left = session_members(sid)
            if not left:
                break
            time.sleep(0.2)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.left_behind = left
        self.proc = None
        if self._trapped and threading.current_thread() is threading.main_thread():
            # None: the old handler was not set from Python; the default is what it did.
            signal.signal(signal.SIGTERM, self._sigterm_before or signal.SIG_DFL)
            self._trapped = False
        return left

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of a session."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command name: state, ppid, pgrp, session.
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members
