"""Measure the head alone: a real head process with echo workers, driven by the
lean raw-HTTP driver, reporting calls/s and the head-added latency quantiles
(from the head's own `saga_head_overhead_seconds` histogram)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvloop

from saga_hpc.bench.rawload import RawLoadResult, RawLoadSpec, run_raw_load
from saga_hpc.client.loadgen import histogram_quantiles, scrape_histogram
from saga_hpc.store.store import Store

OVERHEAD = "saga_head_overhead_seconds"


@dataclass(frozen=True)
class EchoHeadOptions:
    model_dir: str
    db_url: str
    workers: int = 2
    slots: int = 512
    stream_every: int = 1
    delay_s: float = 0.0
    port: int = 0


class EchoHead:
    """`python -m saga_hpc.bench.echo_head` in its own session (kill() takes its workers too)."""

    def __init__(self, opts: EchoHeadOptions, endpoint_file: Path, log: Path) -> None:
        self.opts = opts
        self.endpoint_file = endpoint_file
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90.0) -> str:
        self.endpoint_file.unlink(missing_ok=True)
        o = self.opts
        cmd = [sys.executable, "-m", "saga_hpc.bench.echo_head", "--db", o.db_url]
        cmd += ["--model", o.model_dir, "--endpoint-file", str(self.endpoint_file)]
        cmd += ["--port", str(o.port), "--workers", str(o.workers), "--slots", str(o.slots)]
        cmd += ["--stream-every", str(o.stream_every), "--delay", str(o.delay_s)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while not self.endpoint_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"echo head did not start; see {self.log}")
            time.sleep(0.1)
        url = str(json.loads(self.endpoint_file.read_text())["url"])
        return url.removesuffix("/v1")

    def kill(self) -> None:
        """SIGKILL the head and its workers at once, as a node failure would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def tenants(store: Store, accounts: int = 2) -> tuple[str, ...]:
    """One user and key per account (account i has fair-share weight i + 1)."""
    keys = []
    for i in range(accounts):
        account, user = f"bench{i}", f"user{i}"
        store.ensure_account(account, fairshare=i + 1)
        store.ensure_user(user)
        store.ensure_association(user, account)
        keys.append(store.create_api_key(user, account)[1])
    return tuple(keys)


@contextmanager
def echo_service(opts: EchoHeadOptions, workdir: Path) -> Iterator[tuple[str, tuple[str, ...]]]:
    store = Store.open(opts.db_url)
    store.upgrade()
    keys = tenants(store)
    store.close()
    head = EchoHead(opts, workdir / "endpoint.json", workdir / "head.log")
    base = head.start()
    try:
        yield base, keys
    finally:
        head.stop()


async def measure(spec: RawLoadSpec) -> tuple[RawLoadResult, dict[str, float]]:
    before = await scrape_histogram(spec.base_url, OVERHEAD)
    result = await run_raw_load(spec)
    after = await scrape_histogram(spec.base_url, OVERHEAD)
    return result, histogram_quantiles(before, after, (0.5, 0.99))


def summary(result: RawLoadResult, overhead_ms: dict[str, float]) -> dict[str, object]:
    lat = sorted(c.latency_s for c in result.completed)
    n = len(lat)
    return {
        "calls_ok": n,
        "errors": result.errors,
        "retries": result.retries,
        "wall_s": round(result.wall_s, 2),
        "calls_per_s": round(n / result.wall_s, 1) if result.wall_s else 0.0,
        "client_latency_ms": {
            "p50": round(1000 * lat[n // 2], 2) if n else 0.0,
            "p99": round(1000 * lat[min(n - 1, int(0.99 * n))], 2) if n else 0.0,
        },
        "head_added_ms": overhead_ms,
    }


def run_bench(opts: EchoHeadOptions, spec: RawLoadSpec, warmup_calls: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="saga-bench-head-") as tmp:
        if opts.db_url == "":
            opts = EchoHeadOptions(**{**opts.__dict__, "db_url": f"sqlite:///{tmp}/saga.db"})
        with echo_service(opts, Path(tmp)) as (base, keys):
            spec = RawLoadSpec(**{**spec.__dict__, "base_url": base, "keys": keys})
            if warmup_calls:
                warm = RawLoadSpec(**{**spec.__dict__, "calls": warmup_calls, "tag": "warmup"})
                uvloop.run(run_raw_load(warm))
            result, overhead = uvloop.run(measure(spec))
    return {"config": {**spec.__dict__, "keys": len(spec.keys)}, **summary(result, overhead)}
