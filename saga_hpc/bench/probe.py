"""The bench's probe of the machine's speed: what recomputing a `PROBE_TOKENS`
prefix costs, and decoding at batch 1, measured on the running service before
each run.

The cost says whether cache effects can show in wall time (the bench model is
sized so that it is at least ~0.2 s); the speeds go into a fitted profile
(`GpuProfile.probe_*`), so that a check on another machine can scale it
(`GpuProfile.at_speed`).
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx

from saga_hpc.bench.real_client import timed_call
from saga_hpc.bench.real_trace import FIRST_TOKEN_ID
from saga_hpc.sim.profile import GpuProfile

PROBE_TOKENS = 3000
DECODE_TOKENS = 32


@dataclass(frozen=True)
class Probe:
    """Latency of one PROBE_TOKENS prompt computed from scratch, then served from cache."""

    cold_s: float
    warm_s: float
    cached_tokens: int
    decode_s: float  # the warm prompt again, DECODE_TOKENS more output tokens

    @property
    def recompute_s(self) -> float:
        return self.cold_s - self.warm_s

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.cached_tokens / self.recompute_s

    @property
    def decode_tokens_per_s(self) -> float:
        return DECODE_TOKENS / max(self.decode_s - self.warm_s, 1e-6)


async def probe(base: str, key: str, vocab_size: int) -> Probe:
    rng = random.Random(f"probe:{time.time_ns()}")  # never seen before: a cold prefix
    prompt = [rng.randrange(FIRST_TOKEN_ID, vocab_size) for _ in range(PROBE_TOKENS)]
    async with httpx.AsyncClient(timeout=300) as client:
        headers = {"X-Saga-Workflow": "bench-probe", "X-Saga-Next-Tool": "probe"}
        cold = await timed_call(client, base, key, prompt, 1, headers)
        warm = await timed_call(client, base, key, prompt, 1, headers)
        headers = {"X-Saga-Workflow": "bench-probe", "X-Saga-Workflow-End": "true"}
        decode = await timed_call(client, base, key, prompt, 1 + DECODE_TOKENS, headers)
    return Probe(cold.latency_s, warm.latency_s, warm.cached_tokens, decode.latency_s)


def probe_speed(runs: list[dict[str, Any]]) -> tuple[float, float]:
    """The machine's speed over a bench: (prefill, decode) tokens/s of its probes,
    means over every run (each system's, each round's)."""
    probes = [run["probe"] for run in runs]
    return (
        statistics.fmean(p["prefill_tokens_per_s"] for p in probes),
        statistics.fmean(p["decode_tokens_per_s"] for p in probes),
    )


def probe_of(profile: GpuProfile) -> list[float] | None:
    speed = [profile.probe_prefill_tokens_per_s, profile.probe_decode_tokens_per_s]
    return speed if min(speed) > 0 else None
