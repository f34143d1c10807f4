"""A worker leaves when its head is gone.

Only the head gives a worker work or stops it (Shutdown). If the head's
process dies (SIGKILL, out of memory, its node lost), nothing else would: the
worker would hold its GPU until the job's walltime, and since its rank lives
on, mpirun or srun would not end either (the job could not even be restarted
in place). The head's ZMQ endpoint is bound by the head alone and a new head
binds a new one, so a worker that lost its head has nothing left to serve.

ZeroMQ's socket monitor tells when the connection to the head goes down and
when a ZMTP handshake succeeds again. A dead process's sockets are closed by
its kernel at once; a head whose node is lost closes nothing, so the DEALER
also pings the head (ZMTP heartbeats, answered by libzmq's own I/O thread, so
a head busy in Python still answers) and drops a connection that stays silent.
The worker stops, as on SIGTERM, once the head has been unreachable for
`lost_after_s`: never reached since the watch began, or disconnected and not
back. A head that is back within that time (a network blip) is no loss.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger("saga_hpc.worker")

DEFAULT_LOST_AFTER_S = 30.0
DEFAULT_PING_S = 5.0
LOST_AFTER_ENV = "SAGA_HEAD_LOST_S"


def lost_after_s() -> float:
    """How long the head may be unreachable: SAGA_HEAD_LOST_S, else 30 s (long
    enough for a network blip, short next to a job's walltime)."""
    raw = os.environ.get(LOST_AFTER_ENV)
    if raw is None:
        return DEFAULT_LOST_AFTER_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        log.warning(
            "%s=%r is not a positive number of seconds: using %.0f s",
            LOST_AFTER_ENV,
            raw,
            DEFAULT_LOST_AFTER_S,
        )
        return DEFAULT_LOST_AFTER_S
    return value


class HeadWatch:
    """Watches an asyncio DEALER's connection to the head; `run` returns
    after calling `on_lost(seconds unreachable)`, or runs until cancelled."""

    def __init__(
        self,
        sock: Any,
        lost_after_s: float,
        on_lost: Callable[[float], None],
        ping_s: float = DEFAULT_PING_S,
    ) -> None:
        self.lost_after_s = lost_after_s
        self.on_lost = on_lost
        self._sock = sock
        # Before connecting: options apply to connections made afterwards.
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(ping_s * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(3 * ping_s * 1000))
        # Create before connecting, or the first handshake may be missed.
        self._monitor = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
        )

    async def run(self) -> None:
        unreachable_since: float | None = time.monotonic()
        while True:
            timeout_ms = None
            if unreachable_since is not None:
                left = unreachable_since + self.lost_after_s - time.monotonic()
                timeout_ms = max(0, math.ceil(left * 1000))
            if not await self._monitor.poll(timeout_ms):
                assert unreachable_since is not None  # poll without timeout never returns 0
                self.on_lost(time.monotonic() - unreachable_since)
                return
            event = parse_monitor_message(await self._monitor.recv_multipart())["event"]
            if event == zmq.EVENT_DISCONNECTED:
                if unreachable_since is None:
                    unreachable_since = time.monotonic()
            else:
                unreachable_since = None

    def close(self) -> None:
        self._sock.disable_monitor()
        self._monitor.close(linger=0)
