"""A worker is declared dead only after `timeout_s` without any frame from it."""

from __future__ import annotations

from saga_hpc.head.workers import WorkerRegistry
from saga_hpc.protocol import Register


def _register(registry: WorkerRegistry, worker_id: str, identity: bytes) -> None:
    info = Register(
        worker_id=worker_id,
        rank=1,
        host="node1",
        pid=100,
        model="tiny",
        slots=8,
        kv_capacity_tokens=4096,
        block_size=16,
        engine_start_s=1.0,
    )
    registry.register(info, identity, now=0.0)


def test_frames_other_than_heartbeats_keep_a_worker_alive() -> None:
    registry = WorkerRegistry(timeout_s=5.0)
    _register(registry, "w1", b"id-1")
    _register(registry, "w2", b"id-2")
    registry.heard_from(b"id-1", now=4.0)  # w1 streams tokens; its heartbeat is late
    died = registry.expire(now=6.0)
    assert [w.worker_id for w in died] == ["w2"]
    assert [w.worker_id for w in registry.alive()] == ["w1"]
    assert registry.expire(now=9.5) == [registry.get("w1")]  # then silence counts again


def test_a_frame_from_a_dead_or_unknown_worker_revives_nothing() -> None:
    registry = WorkerRegistry(timeout_s=5.0)
    _register(registry, "w1", b"id-1")
    registry.expire(now=6.0)
    registry.heard_from(b"id-1", now=7.0)
    registry.heard_from(b"stranger", now=7.0)
    assert registry.alive() == []
