"""The heartbeat thread: beats on time while the event loop is busy, goes quiet
when the loop is stuck, beats at once when asked. Real ZeroMQ sockets on
127.0.0.1; the 'event loop' is a real asyncio loop blocked by a sleep, as one
forwarding tokens would be."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator

import pytest
import zmq

from saga_hpc.protocol import Heartbeat, decode
from saga_hpc.worker.beater import HeartbeatThread


class Head:
    """A ROUTER that notes when each heartbeat arrives, from a thread of its own."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.beats: list[tuple[float, bytes, Heartbeat]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            if self.sock.poll(20):
                identity, frame = self.sock.recv_multipart()
                msg = decode(frame)
                assert isinstance(msg, Heartbeat)
                self.beats.append((time.monotonic(), identity, msg))

    def times_between(self, start: float, end: float) -> list[float]:
        return [t for t, _, _ in self.beats if start <= t <= end]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def head() -> Iterator[Head]:
    h = Head()
    yield h
    h.close()


def beat() -> Heartbeat:
    return Heartbeat("w1", 2, 0, 100, 40, 10, 1000, 600)


def blocked_loop(loop: asyncio.AbstractEventLoop, seconds: float) -> tuple[float, float]:
    """Hold `loop` busy for `seconds` without yielding; returns (start, end)."""

    async def busy() -> tuple[float, float]:
        start = time.monotonic()
        time.sleep(seconds)
        return start, time.monotonic()

    return loop.run_until_complete(busy())


def test_a_busy_event_loop_does_not_delay_the_heartbeats(head: Head) -> None:
    loop = asyncio.new_event_loop()
    beater = HeartbeatThread(head.endpoint, "w1", None, beat, lambda: 0.1, loop, stall_limit_s=10.0)
    beater.start()
    try:
        start, end = blocked_loop(loop, 1.5)
    finally:
        beater.stop()
        loop.close()
    during = head.times_between(start, end)
    assert len(during) >= 10
    gaps = [b - a for a, b in zip([start, *during], [*during, end], strict=True)]
    assert max(gaps) < 0.5, gaps
    assert {identity for _, identity, _ in head.beats} == {b"w1.beat"}
    assert {msg.worker_id for _, _, msg in head.beats} == {"w1"}


def test_a_stuck_event_loop_silences_the_heartbeats_until_it_answers(head: Head) -> None:
    loop = asyncio.new_event_loop()
    beater = HeartbeatThread(head.endpoint, "w1", None, beat, lambda: 0.05, loop, stall_limit_s=0.4)
    beater.start()
    try:
        start, end = blocked_loop(loop, 2.0)
        loop.run_until_complete(asyncio.sleep(0.5))  # the loop answers again
        resumed_by = time.monotonic()
    finally:
        beater.stop()
        loop.close()
    # Beats while the loop still counts as answering, then none until it does.
    assert head.times_between(start, start + 0.3)
    assert head.times_between(start + 0.6, end) == []
    assert len(head.times_between(end, resumed_by)) >= 3


def test_asked_for_a_beat_it_sends_one_at_once(head: Head) -> None:
    loop = asyncio.new_event_loop()
    beater = HeartbeatThread(head.endpoint, "w1", None, beat, lambda: 30.0, loop)
    beater.start()
    try:
        deadline = time.monotonic() + 5.0
        while not head.beats and time.monotonic() < deadline:  # the first comes at start
            time.sleep(0.01)
        assert len(head.beats) == 1
        asked = time.monotonic()
        beater.beat_now()
        while len(head.beats) < 2 and time.monotonic() < asked + 5.0:
            time.sleep(0.01)
        assert len(head.beats) == 2
        assert head.beats[1][0] - asked < 0.5
    finally:
        beater.stop()
        loop.close()


def test_a_beat_that_leaves_late_is_logged(head: Head, caplog: pytest.LogCaptureFixture) -> None:
    """The thread itself held up (here: building one beat takes 2.5 s, as a
    held GIL would make it) says so; beats on time say nothing."""
    calls = 0

    def slow_third_beat() -> Heartbeat:
        nonlocal calls
        calls += 1
        if calls == 3:
            time.sleep(2.5)
        return beat()

    loop = asyncio.new_event_loop()
    beater = HeartbeatThread(head.endpoint, "w1", None, slow_third_beat, lambda: 0.05, loop)
    with caplog.at_level(logging.WARNING, logger="saga_hpc.worker"):
        beater.start()
        try:
            deadline = time.monotonic() + 10.0
            while calls < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            beater.stop()
            loop.close()
    late = [r.getMessage() for r in caplog.records if "after the previous one" in r.getMessage()]
    assert len(late) == 1, late
    assert "w1.beat: heartbeat sent 2." in late[0]
    assert not [r for r in caplog.records if "could not be queued" in r.getMessage()]
