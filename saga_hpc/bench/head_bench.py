"""Measure the head alone: a real head process with echo workers, driven by the
lean raw-HTTP driver, reporting calls/s and the head-added latency quantiles
(from the head's own `saga_head_overhead_seconds` histogram).

Three processes share the machine: the driver (this one), the head, and the
echo workers (the head's child). The summary says how much CPU each used, so a
figure from a machine whose cores the driver eats is read as such.
"""

from __future__ import annotations

import dataclasses
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
from sqlalchemy import func, select

from saga_hpc.bench.rawload import RawLoadResult, RawLoadSpec, run_raw_load
from saga_hpc.client.loadgen import histogram_quantiles, scrape_histogram
from saga_hpc.store.store import Store
from saga_hpc.store.tables import LedgerEntry

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
    kv_tokens: int = 65536  # per worker; the core queues calls whose KV would not fit


class EchoHead:
    """`python -m saga_hpc.bench.echo_head` in its own session (kill() takes its workers too)."""

    def __init__(self, opts: EchoHeadOptions, endpoint_file: Path, log: Path) -> None:
        self.opts = opts
        self.endpoint_file = endpoint_file
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_url = ""

    def start(self, timeout_s: float = 90.0) -> str:
        self.endpoint_file.unlink(missing_ok=True)
        o = self.opts
        cmd = [sys.executable, "-m", "saga_hpc.bench.echo_head", "--db", o.db_url]
        cmd += ["--model", o.model_dir, "--endpoint-file", str(self.endpoint_file)]
        cmd += ["--port", str(o.port), "--workers", str(o.workers), "--slots", str(o.slots)]
        cmd += ["--stream-every", str(o.stream_every), "--delay", str(o.delay_s)]
        cmd += ["--kv-tokens", str(o.kv_tokens)]
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
        self.start_url = url.removesuffix("/v1")
        return self.start_url

    def processes(self) -> list[int]:
        """The head's pid and its children's (the echo workers)."""
        if self.proc is None:
            return []
        pid = self.proc.pid
        return [pid, *_children(pid)]

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


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_seconds() -> float:
    usage = os.times()
    return usage.user + usage.system


def billed_calls(store: Store, call_ids: list[str]) -> int:
    """How many of these calls have a ledger row."""
    found = 0
    with store.session() as s:
        for i in range(0, len(call_ids), 500):
            chunk = call_ids[i : i + 500]
            query = select(func.count()).where(LedgerEntry.call_id.in_(chunk))
            found += int(s.scalar(query) or 0)
    return found


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
def echo_service(
    opts: EchoHeadOptions, workdir: Path
) -> Iterator[tuple[EchoHead, tuple[str, ...]]]:
    store = Store.open(opts.db_url)
    store.upgrade()
    keys = tenants(store)
    store.close()
    head = EchoHead(opts, workdir / "endpoint.json", workdir / "head.log")
    head.start()
    try:
        yield head, keys
    finally:
        head.stop()


@dataclass
class Measured:
    result: RawLoadResult
    overhead_ms: dict[str, float]
    cpu_cores: dict[str, float]  # CPU seconds per wall second, per process
    cpu_ms_per_call: dict[str, float]  # CPU milliseconds per completed call, per process


async def measure(spec: RawLoadSpec, head: EchoHead) -> Measured:
    pids = head.processes()
    before = await scrape_histogram(spec.base_url, OVERHEAD)
    cpu0 = [self_cpu_seconds(), *(cpu_seconds(p) for p in pids)]
    result = await run_raw_load(spec)
    cpu1 = [self_cpu_seconds(), *(cpu_seconds(p) for p in pids)]
    after = await scrape_histogram(spec.base_url, OVERHEAD)
    names = ["driver", "head", "echo_workers"][: len(cpu0)]
    wall = result.wall_s or 1.0
    used = {n: b - a for n, a, b in zip(names, cpu0, cpu1, strict=True)}
    cores = {n: round(s / wall, 2) for n, s in used.items()}
    # What a call costs each process: much less sensitive than calls/s and
    # latency to what else runs on the machine's cores.
    calls = len(result.completed) or 1
    per_call = {n: round(1000 * s / calls, 3) for n, s in used.items()}
    return Measured(result, histogram_quantiles(before, after, (0.5, 0.99)), cores, per_call)


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
    """Warm up, measure, stop the head, then check the ledger: one row per call
    a client saw complete (`ledger_missing` counts the others)."""
    with tempfile.TemporaryDirectory(prefix="saga-bench-head-") as tmp:
        if opts.db_url == "":
            opts = dataclasses.replace(opts, db_url=f"sqlite:///{tmp}/saga.db")
        with echo_service(opts, Path(tmp)) as (head, keys):
            base = head.start_url
            spec = dataclasses.replace(spec, base_url=base, keys=keys)
            if warmup_calls:
                warm = dataclasses.replace(spec, calls=warmup_calls, tag=f"{spec.tag}-warmup")
                uvloop.run(run_raw_load(warm))
            measured = uvloop.run(measure(spec, head))
        store = Store.open(opts.db_url)
        try:
            billed = billed_calls(store, [c.call_id for c in measured.result.completed])
        finally:
            store.close()
    out = summary(measured.result, measured.overhead_ms)
    out["ledger_missing"] = len(measured.result.completed) - billed
    out["cpu_cores"] = measured.cpu_cores
    out["cpu_ms_per_call"] = measured.cpu_ms_per_call
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]  # others' work on the cores
    return {"config": {**spec.__dict__, "keys": len(spec.keys)}, **out}
