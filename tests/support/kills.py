"""Killing a worker rank of a running service as it starts streaming a call,
and reading the head's verdict: when /health, /metrics and the head's log say
it died, and what became of its calls. Used by the worker-kill test."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass

import httpx

from saga_hpc.client.service import ServiceProcess
from tests.support.ranks import descendants


@dataclass
class Kill:
    worker: str
    pid: int
    engine: list[int]  # the rank's engine-core and executor processes
    at: float  # wall clock
    detected_after_s: float
    requeued: float  # calls the head ran again elsewhere (saga_requeued_calls)
    interrupted: float  # calls it ended with a retryable error (saga_interrupted_calls)


async def kill_busy_worker(
    svc: ServiceProcess,
    pids: dict[int, int],
    workers: set[str],
    agents: list[asyncio.Task[None]],
) -> Kill:
    """Kill a worker as it starts a stream (it runs other calls too, mostly) and
    time how long the head takes to report it dead."""
    engines = {w: descendants(pids[int(w.removeprefix("w"))]) for w in workers}
    kill = asyncio.create_task(
        asyncio.to_thread(_kill_when_a_stream_starts, svc.base, pids, workers, 90)
    )
    while not kill.done():
        for a in agents:
            if a.done() and a.exception() is not None:
                kill.cancel()
                raise AssertionError("an agent failed") from a.exception()
        await asyncio.sleep(0.05)
    victim, at, metrics, detected, after = kill.result()
    requeued, interrupted = (
        metric(after, name) - metric(metrics, name)
        for name in ("saga_requeued_calls_total", "saga_interrupted_calls_total")
    )
    pid = pids[int(victim.removeprefix("w"))]
    return Kill(victim, pid, engines[victim], at, detected, requeued, interrupted)


def _kill_when_a_stream_starts(
    base: str, pids: dict[int, int], workers: set[str], timeout_s: float
) -> tuple[str, float, str, float, str]:
    """SIGKILL the rank of the first worker the head sees start streaming a call
    to its client (`saga_worker_streams` up since the scrape before, ~20 ms ago:
    most of that call is still to come; what the clients have received lags the
    worker too much to time this). Worker `w<r>` is MPI rank r; `pids` are the
    ranks' processes from the process table. Runs in a thread of its own, so
    the agents' event loop does not delay the kill. Returns the victim, the
    wall-clock time of the kill, the /metrics text from just before it, how
    long after the kill /health first counted one live worker less, and the
    /metrics text then. (All from this thread: the agents' loop, busy with 9
    streams, stalls for seconds on two shared cores.)"""
    deadline = time.monotonic() + timeout_s
    before: dict[str, int] | None = None
    with httpx.Client(timeout=30) as http:
        while time.monotonic() < deadline:
            text = http.get(base + "/metrics").text
            streams = per_worker(text, "saga_worker_streams")
            started = [w for w in workers if before and streams[w] > before[w]]
            if started:
                os.kill(pids[int(started[0].removeprefix("w"))], signal.SIGKILL)
                at = time.time()
                # Timed here, in the same thread: the agents' loop, busy with 9
                # streams, can take seconds to notice the kill (a poll started
                # from it once reported a death 4 s after the head's log had it).
                detected = _wait_alive_below(base, len(workers), 30) - at
                return started[0], at, text, detected, http.get(base + "/metrics").text
            before = streams
            time.sleep(0.02)
    raise AssertionError("no worker started streaming a call")


def _wait_alive_below(base: str, n: int, timeout_s: float) -> float:
    """Wall-clock time at which /health counts fewer than `n` live workers.
    Polled from a thread of its own, so the agents' event loop does not delay
    the reading."""
    t0 = time.monotonic()
    with httpx.Client(timeout=5) as http:
        while http.get(base + "/health").json()["workers_alive"] >= n:
            assert time.monotonic() - t0 < timeout_s, "the head never noticed the death"
            time.sleep(0.02)
    return time.time()


def declared_dead(log: str) -> dict[str, float]:
    """Wall-clock time at which the head's log declared each worker dead
    ("<date> <time>,<ms> saga_hpc.head WARNING worker w2 silent for 5.1 s: ...")."""
    when = {}
    for line in log.splitlines():
        if "silent for" in line and "marked dead" in line:
            stamp, _, rest = line.partition(" saga_hpc.head ")
            at = time.mktime(time.strptime(stamp.split(",")[0], "%Y-%m-%d %H:%M:%S"))
            when[rest.split("worker ", 1)[1].split()[0]] = at + int(stamp.split(",")[1]) / 1000
    return when


def metric(text: str, name: str) -> float:
    """An unlabelled sample of /metrics text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not on /metrics")


def per_worker(text: str, name: str) -> dict[str, int]:
    """A gauge of /metrics text labelled by worker, as {worker: value}."""
    prefix = name + '{worker="'
    return {
        line[len(prefix) :].split('"')[0]: int(float(line.split()[-1]))
        for line in text.splitlines()
        if line.startswith(prefix)
    }
