"""Only the service's own workers may join its head, and what they exchange is encrypted.

The head's ROUTER carries every tenant's prompts and answers. On a shared
cluster any user's job can reach its port (on all interfaces when the workers
are on other nodes, on 127.0.0.1 from a job sharing the node), and without a
check a process that sent `Register` would be handed calls. So the channel
uses ZeroMQ's CURVE: each service job makes fresh keys at start, a server pair
for the head and one pair its workers share, and gives the workers theirs over
the MPI broadcast that also carries the endpoint (MPI reaches only the job's
own ranks). The head's ZAP handler admits a connection only when it proves it
holds the workers' secret key; anything else never gets a frame through, and
frames on the wire are encrypted (CurveZMQ: Curve25519, XSalsa20-Poly1305).

Nothing secret is logged or written to disk, but for the join file an admin
may ask for (`serve --join-file`, mode 0600: what `saga-hpc worker` needs to
add a worker later). A job's keys die with it; its successor (walltime
handover) makes its own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.auth.asyncio import AsyncioAuthenticator

log = logging.getLogger("saga_hpc.head")

LOG_EVERY_S = 60.0


@dataclass(frozen=True)
class WorkerCredentials:
    """What every worker of one service job gets (Z85-encoded CURVE keys)."""

    server_public: str
    public: str
    secret: str

    def to_dict(self) -> dict[str, str]:
        return {"server_public": self.server_public, "public": self.public, "secret": self.secret}

    @staticmethod
    def from_dict(doc: dict[str, str]) -> WorkerCredentials:
        return WorkerCredentials(doc["server_public"], doc["public"], doc["secret"])


@dataclass(frozen=True)
class ChannelKeys:
    """One service job's keys: the head's pair and the pair its workers share."""

    server_public: str
    server_secret: str
    workers: WorkerCredentials

    @staticmethod
    def generate() -> ChannelKeys:
        server_public, server_secret = (k.decode() for k in zmq.curve_keypair())
        worker_public, worker_secret = (k.decode() for k in zmq.curve_keypair())
        workers = WorkerCredentials(server_public, worker_public, worker_secret)
        return ChannelKeys(server_public, server_secret, workers)


def secure_dealer(sock: zmq.Socket[Any], credentials: WorkerCredentials) -> None:
    """Make a worker's DEALER a CURVE client of its head (before `connect`)."""
    sock.curve_serverkey = credentials.server_public.encode()
    sock.curve_publickey = credentials.public.encode()
    sock.curve_secretkey = credentials.secret.encode()


def worker_socket(
    ctx: zmq.Context[Any],
    identity: str,
    credentials: WorkerCredentials | None,
    linger_ms: int = 0,
) -> Any:
    """A worker's DEALER to its head (connect it next): named `identity`, and a
    CURVE client when it has credentials (the head has a gate). An asyncio
    context gives an asyncio socket."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, linger_ms)
    sock.setsockopt_string(zmq.IDENTITY, identity)
    if credentials is not None:
        secure_dealer(sock, credentials)
    return sock


class _AllowWorkers:
    """ZAP check: the connecting client proved it holds the workers' secret key."""

    def __init__(self, worker_public: str) -> None:
        self.worker_public = worker_public.encode()
        self.refused = 0
        self._logged_at = -LOG_EVERY_S

    def callback(self, domain: str, client_public: bytes) -> bool:
        if client_public == self.worker_public:
            return True
        # A refused peer reconnects every 100 ms: say so once a minute, not each time.
        self.refused += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning("refused %d worker connection(s) with other keys", self.refused)
        return False


class WorkerGate:
    """The head's side: its ROUTER as a CURVE server that admits only its workers.

    The ZAP handler lives in the ROUTER's context and must be closed before
    that context ends (`close`)."""

    def __init__(self, keys: ChannelKeys) -> None:
        self.keys = keys
        self._auth: AsyncioAuthenticator | None = None

    def secure(self, router: zmq.Socket[Any]) -> None:
        """Call before `bind`, inside the head's event loop."""
        auth = AsyncioAuthenticator(router.context)
        auth.start()
        auth.configure_curve_callback("*", _AllowWorkers(self.keys.workers.public))
        self._auth = auth
        router.curve_server = True
        router.curve_publickey = self.keys.server_public.encode()
        router.curve_secretkey = self.keys.server_secret.encode()

    def close(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
