"""Which workers exist, whether they are alive, and what they last reported."""

from __future__ import annotations

from dataclasses import dataclass

from saga_hpc.protocol import Heartbeat, Register


@dataclass
class WorkerHandle:
    info: Register
    identity: bytes  # ZeroMQ routing id of the worker's DEALER
    last_seen: float
    alive: bool = True
    last_heartbeat: Heartbeat | None = None

    @property
    def worker_id(self) -> str:
        return self.info.worker_id


class WorkerRegistry:
    """Liveness bookkeeping; the head marks a worker dead after `timeout_s` of silence."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._workers: dict[str, WorkerHandle] = {}

    def register(self, info: Register, identity: bytes, now: float) -> WorkerHandle:
        handle = WorkerHandle(info=info, identity=identity, last_seen=now)
        self._workers[info.worker_id] = handle
        return handle

    def seen(self, worker_id: str | None, now: float, heartbeat: Heartbeat | None = None) -> None:
        """A sign of life: a heartbeat, or a frame of a call the worker runs."""
        handle = self._workers.get(worker_id) if worker_id is not None else None
        if handle is None or not handle.alive:
            return
        handle.last_seen = now
        if heartbeat is not None:
            handle.last_heartbeat = heartbeat

    def get(self, worker_id: str) -> WorkerHandle | None:
        return self._workers.get(worker_id)

    def alive(self) -> list[WorkerHandle]:
        return [w for w in self._workers.values() if w.alive]

    def all(self) -> list[WorkerHandle]:
        return list(self._workers.values())

    def expire(self, now: float) -> list[WorkerHandle]:
        """Mark silent workers dead and return the ones that just died."""
        died = [w for w in self.alive() if now - w.last_seen > self.timeout_s]
        for w in died:
            w.alive = False
        return died

    def remove(self, worker_id: str) -> WorkerHandle | None:
        handle = self._workers.get(worker_id)
        if handle is not None:
            handle.alive = False
        return handle
