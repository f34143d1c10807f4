"""Rank 0: the head process. Binds ZeroMQ for workers and HTTP for clients,
publishes its endpoint once the workers are in, and shuts down in order:
stop taking requests, let in-flight calls finish, tell workers to leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from saga_hpc.api.app import ApiSettings, create_app
from saga_hpc.core.cost import CostModel
from saga_hpc.core.systems import make_scheduler
from saga_hpc.head.handover import successor_url
from saga_hpc.head.prompts import PromptBuilder
from saga_hpc.head.service import HeadService, HeadSettings
from saga_hpc.store.store import Store

log = logging.getLogger("saga_hpc.head")


@dataclass(frozen=True)
class ServeOptions:
    model_dir: str
    served_name: str
    db_url: str
    host: str
    port: int
    endpoint_file: str | None
    expected_workers: int
    system: str = "saga"
    max_model_len: int = 4096
    block_size: int = 32
    ready_timeout_s: float = 600.0
    drain_s: float = 30.0
    heartbeat_s: float = 1.0
    worker_timeout_s: float = 5.0
    slurm_sync_s: float = 0.0  # mirror Slurm accounts and shares this often (0: never)
    # What a call costs on these workers, for decisions that trade time against
    # cache (steal or wait); None: the core's defaults (docs/deploy.md).
    cost: CostModel | None = None
    # HTTPS for the API (PEM files); None: plain HTTP, for a trusted network or
    # behind a TLS proxy (docs/admin.md).
    tls_cert: str | None = None
    tls_key: str | None = None


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its own shutdown, which would kill the
    process before the workers are told to leave; the head handles signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def write_endpoint(path: str, info: dict[str, object]) -> None:
    """Atomic: readers see the old file or the whole new one, never half."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(target)


def advertised_host(bind_host: str) -> str:
    if bind_host in ("0.0.0.0", "::", ""):
        return socket.getfqdn()
    return bind_host


class HeadRuntime:
    """One head: `run()` serves until `stop()` (or SIGTERM/SIGINT when `handle_signals`)."""

    def __init__(
        self,
        opts: ServeOptions,
        bind_zmq: Callable[[HeadService], str],
        announce: Callable[[str], None],
        handle_signals: bool = True,
    ) -> None:
        self.opts = opts
        self.bind_zmq = bind_zmq  # binds the ROUTER, returns the endpoint
        self.announce = announce  # sends the endpoint to the workers
        self.handle_signals = handle_signals
        self.head: HeadService | None = None
        self.info: dict[str, object] = {}
        self.ready = threading.Event()
        self._server: _Server | None = None
        self._stop_requested = False
        self._handover_task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None

    def stop(self) -> None:
        """Thread-safe: uvicorn polls the flag."""
        self._stop_requested = True
        if self._server is not None:
            self._server.should_exit = True

    async def _sync_slurm(self, head: HeadService, store: Store) -> None:
        """Tenants follow Slurm: associations (who may use which account) and the
        fair-share weights that Agent Fair Share divides service by."""
        from saga_hpc.slurm.client import SlurmClient, SlurmError
        from saga_hpc.slurm.sync import sync_accounts

        while True:
            try:
                summary = await asyncio.to_thread(sync_accounts, SlurmClient(), store)
                head.scheduler.update_shares(store.shares(), time.time())
                if summary.added or summary.removed:
                    log.info("Slurm sync: %s", summary.line())
            except SlurmError as exc:
                log.warning("Slurm sync failed (will retry): %s", exc)
            await asyncio.sleep(self.opts.slurm_sync_s)

    def begin_handover(self) -> None:
        """Slurm's walltime warning (forwarded by the batch script): see handover.py."""
        head = self.head
        if head is None or head.handover.moving:
            return
        head.handover.started_at = time.time()
        log.warning("walltime handover: no new workflows; waiting for the successor to publish")
        self._handover_task = asyncio.get_running_loop().create_task(self._follow_successor(head))

    async def _follow_successor(self, head: HeadService) -> None:
        while (url := successor_url(self.opts.endpoint_file)) is None:
            await asyncio.sleep(0.5)
        head.handover.moved_to = url
        log.warning("successor published %s: draining %d calls, then leaving", url, len(head.calls))
        deadline = time.monotonic() + self.opts.drain_s
        while head.calls and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        self.stop()

    async def run(self) -> int:
        opts = self.opts
        store = Store.open(opts.db_url)
        store.upgrade()
        prompts = PromptBuilder(opts.model_dir, opts.max_model_len)
        scheduler = make_scheduler(opts.system, cost=opts.cost, block_tokens=opts.block_size)
        scheduler.update_shares(store.shares(), time.time())
        head = self.head = HeadService(
            HeadSettings(heartbeat_s=opts.heartbeat_s, worker_timeout_s=opts.worker_timeout_s),
            store,
            scheduler,
            opts.served_name,
        )
        # The HTTP port first: a port taken is found before the workers are
        # released from the rendezvous (after it, only a Shutdown ends them).
        sock = listen(opts.host, opts.port)
        endpoint = self.bind_zmq(head)
        self.announce(endpoint)
        head.start()
        if opts.slurm_sync_s > 0:
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_slurm(head, store))
        app = create_app(
            head,
            prompts,
            store,
            ApiSettings(model_name=opts.served_name, block_size=opts.block_size),
        )
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(opts.drain_s),
            h11_max_incomplete_event_size=64 * 1024,
            # Longer than clients keep idle connections (httpx, under the OpenAI
            # SDK: 5 s): at uvicorn's 5 s the head closed connections a client
            # was just reusing, and its call failed before it was sent.
            timeout_keep_alive=75,
            # Clients reach the head directly; X-Forwarded-* rewriting only costs CPU.
            proxy_headers=False,
            ssl_certfile=opts.tls_cert,
            ssl_keyfile=opts.tls_key,
        )
        server = self._server = _Server(config)
        if self._stop_requested:
            server.should_exit = True
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
            loop.add_signal_handler(signal.SIGUSR1, self.begin_handover)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        code = 0
        try:
            await _wait_ready(head, opts, serving)
            scheme = "https" if opts.tls_cert else "http"
            url = f"{scheme}://{advertised_host(opts.host)}:{port}/v1"
            self.info = {
                "url": url,
                "zmq": endpoint,
                "model": opts.served_name,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "port": port,
                "workers": len(head.registry.alive()),
                "started_at": time.time(),
                "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            }
            if opts.endpoint_file:
                write_endpoint(opts.endpoint_file, self.info)
            log.info(
                "serving %s at %s with %d workers",
                opts.served_name,
                url,
                len(head.registry.alive()),
            )
            print(f"saga-hpc: serving {opts.served_name} at {url}", flush=True)
            if self.handle_signals:  # the head owns its process
                settle_gc()
                sys.setswitchinterval(GIL_SWITCH_S)
            self.ready.set()
            await serving
        except _NotReady as exc:
            server.should_exit = True
            await serving
            if not self._stop_requested:
                log.error("%s", exc)
                print(f"saga-hpc: error: {exc}", flush=True)
                code = 1
        finally:
            await head.stop(grace_s=opts.drain_s)
            store.close()
        return code


GIL_SWITCH_S = 0.001
"""How long a thread that wants the GIL waits for the one holding it (Python's
default: 5 ms). The ledger's thread gives the GIL up at every round trip to
PostgreSQL and then waited up to 5 ms for the event loop to give it back, ~10
round trips a batch; the loop, in turn, waited for the ledger thread. With 1 ms,
at ~480 calls/s on PostgreSQL: a batch 7.5 -> 3.0 ms (median), the loop's lag
14.7 -> 3.6 ms (p99), head-added p99 72 -> 23 ms (docs/reliability.md,
"Sixth round")."""


def settle_gc() -> None:
    """Keep the garbage collector off what the head loaded to start.

    The tokenizer (transformers), SQLAlchemy, FastAPI and the core leave ~0.5 M
    long-lived objects; every full collection walked them all: ~330 ms with the
    event loop stopped, 18 times over 16,000 calls at saturation, ~40% of the
    head's CPU and the whole of its added-latency p99 (docs/reliability.md,
    "Load"). Frozen, they are never scanned again; what the head allocates
    per call is still collected.

    A call allocates ~100 tracked objects, most dead by its end. With the
    default 700-allocation young generation, objects of the calls in flight
    were promoted at every collection and full collections still came every
    few hundred calls; 10,000 lets most die young and halves the collector's
    CPU (pauses: young ~2 ms, middle ~30 ms).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


class _NotReady(RuntimeError):
    pass


async def _wait_ready(head: HeadService, opts: ServeOptions, serving: asyncio.Task[None]) -> None:
    deadline = time.monotonic() + opts.ready_timeout_s
    while len(head.registry.alive()) < opts.expected_workers:
        if serving.done():
            raise _NotReady("HTTP server stopped before the workers were ready")
        if time.monotonic() > deadline:
            raise _NotReady(
                f"only {len(head.registry.alive())} of {opts.expected_workers} workers registered "
                f"within {opts.ready_timeout_s:.0f} s; see the worker logs"
            )
        await asyncio.sleep(0.2)
