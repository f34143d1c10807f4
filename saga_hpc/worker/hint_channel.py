"""The side channel between a worker and its vLLM engine-core process.

The custom scheduler (`hint_scheduler.HintScheduler`) runs inside vLLM's
engine-core child process, out of reach of the worker's event loop. Two ZeroMQ
IPC sockets connect them: hints flow worker -> scheduler (PUSH/PULL, JSON), and
block-pool stats flow scheduler -> worker. The worker binds both before it starts
the engine and passes the addresses in vLLM's `additional_config["saga"]`, so
the scheduler learns them from its own `vllm_config`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import zmq
import zmq.asyncio

log = logging.getLogger("saga_hpc.worker")

CONFIG_KEY = "saga"


@dataclass(frozen=True)
class ChannelConfig:
    """What the scheduler reads from `additional_config["saga"]`."""

    hints: str
    """IPC address the worker pushes hints to."""
    stats: str
    """IPC address the scheduler pushes block-pool stats to."""
    hold_grace_s: float
    """Hold a finished request's blocks this long until the head's hint arrives
    (0: hints are off, the scheduler behaves exactly like vLLM's)."""
    hold_budget: float
    """Fraction of the KV pool that holds may pin."""
    stats_interval_s: float = 0.5

    @staticmethod
    def from_additional(additional: dict[str, Any] | None) -> ChannelConfig:
        doc = (additional or {}).get(CONFIG_KEY)
        if not isinstance(doc, dict):
            raise RuntimeError(
                "HintScheduler needs additional_config['saga'] (the saga-hpc worker sets it)"
            )
        return ChannelConfig(**doc)


@dataclass(frozen=True)
class PoolStats:
    """Block-pool state the scheduler reports (counts are blocks, evictions cumulative)."""

    total: int
    free: int
    cached_free: int  # free but still holding a reusable prefix
    held: int  # references held for workflows away on a tool call
    evictions: int  # cached blocks reused for other content, since start
    holds: int
    dropped_for_memory: int
    released_first: int
    memory_blocked: bool = False  # the next waiting request does not fit the free blocks


class WorkerChannel:
    """Worker side: bind both sockets, push hints, keep the newest stats."""

    def __init__(self, ctx: zmq.asyncio.Context, hold_grace_s: float, hold_budget: float) -> None:
        base = os.path.join(tempfile.gettempdir(), f"saga-hpc-{os.getpid()}")
        self.config = ChannelConfig(
            hints=f"ipc://{base}-hints.ipc",
            stats=f"ipc://{base}-stats.ipc",
            hold_grace_s=hold_grace_s,
            hold_budget=hold_budget,
        )
        self.hints = ctx.socket(zmq.PUSH)
        self.hints.setsockopt(zmq.LINGER, 0)
        self.hints.bind(self.config.hints)
        self.stats_sock = ctx.socket(zmq.PULL)
        self.stats_sock.setsockopt(zmq.LINGER, 0)
        self.stats_sock.bind(self.config.stats)
        self.latest: PoolStats | None = None

    def additional_config(self) -> dict[str, Any]:
        return {CONFIG_KEY: asdict(self.config)}

    def push(
        self, retain: list[tuple[str, float, float, list[tuple[float, float]]]], release: list[str]
    ) -> None:
        try:
            self.hints.send(
                json.dumps({"retain": retain, "release": release}).encode(), zmq.NOBLOCK
            )
        except zmq.Again:  # engine core not connected (yet): a hint is advice, drop it
            log.warning("hint dropped: the engine's scheduler is not listening")

    async def receive_stats(self, on_blocked_change: Callable[[], None]) -> None:
        """Keep the newest stats; call `on_blocked_change` when the memory verdict flips."""
        while True:
            stats = PoolStats(**json.loads(await self.stats_sock.recv()))
            was = self.latest.memory_blocked if self.latest else False
            self.latest = stats
            if stats.memory_blocked != was:
                on_blocked_change()

    def close(self) -> None:
        self.hints.close()
        self.stats_sock.close()
        for addr in (self.config.hints, self.config.stats):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(addr.removeprefix("ipc://"))
