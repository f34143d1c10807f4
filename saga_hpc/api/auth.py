"""Bearer API keys -> (user, account), with a short cache in front of the store.

Looking a key up costs a database round trip; agents send many calls per
second with the same key, so verdicts are cached for `ttl_s`. The TTL is the
delay after which a revoked key or a removed Slurm association takes effect.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from saga_hpc.api.errors import ApiError
from saga_hpc.store.store import Principal, Store

_MAX_KEY_CHARS = 256


@dataclass(frozen=True)
class _Verdict:
    principal: Principal | None
    status: int  # 200, 401 or 403
    message: str
    expires: float


class Authenticator:
    def __init__(self, store: Store, ttl_s: float = 10.0, max_entries: int = 100_000) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[str, _Verdict] = {}

    async def principal(self, authorization: str | None) -> Principal:
        secret = _bearer(authorization)
        now = time.monotonic()
        verdict = self._cache.get(secret)
        if verdict is None or verdict.expires < now:
            verdict = await asyncio.to_thread(self._lookup, secret, now)
            if len(self._cache) >= self.max_entries:
                self._cache.clear()  # bounded; a cold cache only costs lookups
            self._cache[secret] = verdict
        if verdict.principal is None:
            headers = {"WWW-Authenticate": "Bearer"} if verdict.status == 401 else None
            raise ApiError(verdict.status, verdict.message, headers=headers)
        return verdict.principal

    def _lookup(self, secret: str, now: float) -> _Verdict:
        result = self.store.authenticate(secret)
        expires = now + self.ttl_s
        if result.principal is not None:
            return _Verdict(result.principal, 200, "", expires)
        if result.forbidden:
            return _Verdict(None, 403, result.reason, expires)
        return _Verdict(None, 401, result.reason, expires)


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise ApiError(
            401,
            "missing API key: send 'Authorization: Bearer <key>' "
            "(get one with `saga-hpc keys create`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or len(secret) > _MAX_KEY_CHARS:
        raise ApiError(
            401,
            "malformed Authorization header: expected 'Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return secret
