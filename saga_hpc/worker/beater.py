"""Heartbeats from a thread of their own, so that a busy worker is not taken for dead.

The worker's event loop forwards every token its engine produces; under load
it ran heartbeats up to 3.5 s late against the head's 5 s timeout. This
thread sends them on time from its own DEALER socket (ZeroMQ sockets are not
thread-safe; the head keys liveness on the heartbeat's `worker_id`, not on the
socket it came from).

A thread that beats no matter what would keep a wedged worker alive forever,
so each beat also asks the event loop to answer (`call_soon_threadsafe`); when
the loop has not answered for `stall_limit_s`, the thread stops beating and the
head declares the worker dead as it would a silent one. A busy loop answers
within a second or two; only a stuck one goes quiet.

A beat that leaves late (the thread itself did not run: the GIL held by a long
C call, or a starved machine) or cannot be queued is logged, so that a worker
the head took for dead can be told apart from a head that read late.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import zmq

from saga_hpc.protocol import Heartbeat, encode
from saga_hpc.protocol.curve import WorkerCredentials, worker_socket

log = logging.getLogger("saga_hpc.worker")

# Far above the worst lateness seen on a busy loop (3.5 s), far below what a
# wedged worker would otherwise get (forever).
STALL_LIMIT_S = 30.0


def late_after_s(interval_s: float) -> float:
    """A gap between two beats sent that is worth a warning: well past the
    interval (a wake-up is never exact), and a noticeable share of the head's
    5 s timeout."""
    return max(3.0 * interval_s, 2.0)


class HeartbeatThread:
    def __init__(
        self,
        endpoint: str,
        identity: str,
        credentials: WorkerCredentials | None,
        make_beat: Callable[[], Heartbeat],
        interval_s: Callable[[], float],
        loop: asyncio.AbstractEventLoop,
        stall_limit_s: float = STALL_LIMIT_S,
    ) -> None:
        self.endpoint = endpoint
        self.identity = f"{identity}.beat"
        self.credentials = credentials
        self.make_beat = make_beat
        self.interval_s = interval_s
        self.loop = loop
        self.stall_limit_s = stall_limit_s
        self.loop_answered = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="saga-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def beat_now(self) -> None:
        """Send the next heartbeat without waiting for the interval (thread-safe)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5.0)

    def _answer(self) -> None:
        self.loop_answered = time.monotonic()

    def _loop_stalled_for(self) -> float:
        return time.monotonic() - self.loop_answered

    def _run(self) -> None:
        ctx = zmq.Context()
        sock = worker_socket(ctx, self.identity, self.credentials)
        sock.connect(self.endpoint)
        withheld = False
        unsent = False
        last_sent: float | None = None
        try:
            while not self._stop.is_set():
                interval = self.interval_s()  # the head may change it; once per beat
                try:
                    self.loop.call_soon_threadsafe(self._answer)
                except RuntimeError:  # the loop is closed: the worker is ending
                    break
                stalled = self._loop_stalled_for()
                if stalled <= self.stall_limit_s:
                    try:
                        sock.send(encode(self.make_beat()), zmq.NOBLOCK)
                    except zmq.Again:
                        # Not connected yet, or the head not reading: this beat
                        # is moot, the next one says the same.
                        if not unsent:
                            log.warning("%s: a heartbeat could not be queued", self.identity)
                        unsent = True
                    else:
                        now = time.monotonic()
                        if last_sent is not None and now - last_sent > late_after_s(interval):
                            log.warning(
                                "%s: heartbeat sent %.1f s after the previous one "
                                "(interval %.1f s): this thread did not run",
                                self.identity,
                                now - last_sent,
                                interval,
                            )
                        last_sent = now
                        unsent = False
                    withheld = False
                elif not withheld:
                    last_sent = None  # a gap of its own making is no lateness
                    log.error(
                        "%s: event loop unanswered for %.0f s: heartbeats withheld",
                        self.identity,
                        stalled,
                    )
                    withheld = True
                self._wake.wait(interval)
                self._wake.clear()
        except zmq.ZMQError as exc:  # the context is ending
            log.warning("%s: heartbeat thread ends: %s", self.identity, exc)
        finally:
            sock.close()
            ctx.term()
