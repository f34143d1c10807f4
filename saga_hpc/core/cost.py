"""What the core assumes a call costs, for decisions that trade time against cache.

Only ratios matter to the decisions (steal or wait; keep or evict), so a rough
calibration is enough; the simulator profiles and the real workers supply it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CostModel:
    prefill_tokens_per_s: float = 20_000.0
    """Prompt tokens a worker prefills per second (recomputing a lost prefix costs this)."""
    decode_tokens_per_s: float = 40.0
    """Output tokens per second of one sequence in a busy batch."""
    call_overhead_s: float = 0.01
    """Fixed cost per call (scheduling, first step)."""

    def recompute_s(self, tokens: int) -> float:
        return tokens / self.prefill_tokens_per_s

    def call_s(self, prompt_tokens: int, cached_tokens: int, output_tokens: int) -> float:
        uncached = max(0, prompt_tokens - cached_tokens)
        return (
            self.call_overhead_s
            + self.recompute_s(uncached)
            + output_tokens / self.decode_tokens_per_s
        )

    def service(self, prompt_tokens: int, cached_tokens: int, output_tokens: int) -> float:
        """Service a call consumed, in seconds of one slot; the unit fairness counts in.
        `call_s` written out (the scheduler charges one per call completed)."""
        uncached = prompt_tokens - cached_tokens
        if uncached < 0:  # max(0, uncached)
            uncached = 0
        return (
            self.call_overhead_s
            + uncached / self.prefill_tokens_per_s
            + output_tokens / self.decode_tokens_per_s
        )
