"""A real head (HTTP + ZeroMQ + store + core) in a background thread, with
echo workers speaking the real protocol: for API tests that are not about vLLM."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from saga_hpc.bench.echo import EchoWorker
from saga_hpc.head.server import HeadRuntime, ServeOptions
from saga_hpc.protocol.curve import ChannelKeys, WorkerGate


class HeadHarness:
    def __init__(
        self,
        model_dir: Path,
        db_url: str,
        *,
        workers: int = 2,
        system: str = "saga",
        worker_timeout_s: float = 5.0,
        slurm_sync_s: float = 0.0,
        tls: tuple[str, str] | None = None,  # (certificate, key) PEM files: HTTPS
        **worker_kwargs: Any,
    ) -> None:
        self.opts = ServeOptions(
            model_dir=str(model_dir),
            served_name="tiny",
            db_url=db_url,
            host="127.0.0.1",
            port=0,
            endpoint_file=None,
            expected_workers=workers,
            system=system,
            ready_timeout_s=30,
            drain_s=2.0,
            heartbeat_s=min(1.0, worker_timeout_s / 3),
            worker_timeout_s=worker_timeout_s,
            slurm_sync_s=slurm_sync_s,
            tls_cert=tls[0] if tls else None,
            tls_key=tls[1] if tls else None,
        )
        self.n_workers = workers
        self.keys = ChannelKeys.generate()
        self.worker_kwargs = worker_kwargs
        self.workers: list[EchoWorker] = []
        self._stop_workers: asyncio.Event | None = None
        self.runtime = HeadRuntime(self.opts, self._bind, self._announce, handle_signals=False)
        self._thread = threading.Thread(target=self._run, name="head", daemon=True)
        self.error: BaseException | None = None

    def _bind(self, head: Any) -> str:
        # The gate `serve` uses: every API test runs over the CURVE channel.
        endpoint: str = head.bind("tcp://127.0.0.1:*", WorkerGate(self.keys))
        return endpoint

    def _announce(self, endpoint: str) -> None:
        self._stop_workers = asyncio.Event()
        for i in range(self.n_workers):
            w = EchoWorker(
                endpoint, f"w{i + 1}", credentials=self.keys.workers, **self.worker_kwargs
            )
            self.workers.append(w)
            asyncio.get_running_loop().create_task(w.run(self._stop_workers))

    def _run(self) -> None:
        try:
            asyncio.run(self.runtime.run())
        except BaseException as exc:  # surfaced by __enter__/__exit__
            self.error = exc
            self.runtime.ready.set()

    @property
    def url(self) -> str:
        return str(self.runtime.info["url"])

    @property
    def base(self) -> str:
        return self.url.removesuffix("/v1")

    def __enter__(self) -> HeadHarness:
        self._thread.start()
        if not self.runtime.ready.wait(60) or self.error is not None:
            raise RuntimeError(f"head did not start: {self.error!r}")
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.runtime.stop()
        self._thread.join(30)
