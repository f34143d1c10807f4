"""GPU + model cost profiles for the simulator (JSON files in `profiles/`).

Add a profile by dropping a JSON file with these fields next to the others;
`saga-hpc sim --profile NAME` finds it by name, or takes a path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

PROFILE_DIR = Path(__file__).parent / "profiles"
# vLLM's chunked prefill: prefill slows the decodes beside it (docs/simulator.md).
DEFAULT_PROFILE = "h100-llama3-8b-chunked"


@dataclass(frozen=True)
class GpuProfile:
    name: str
    block_tokens: int
    kv_tokens: int  # KV pool per GPU, tokens
    prefill_tokens_per_s: float
    decode_step_s_batch1: float
    decode_step_s_batch64: float
    max_batch: int
    description: str = ""
    call_overhead_s: float = 0.0
    """Time per call outside the engine (HTTP, head, worker front end), added to
    the latency an agent sees: its next call and its TCT. 0 for profiles of an
    engine alone; a profile fitted from a service's runs measures it."""
    prefill_stalls_decode: bool = False
    """Chunked prefill as vLLM runs it: a step carries a prefill chunk and the
    running decodes, so each second of prefill on a GPU lengthens every decode
    running there by a second (the default profile's model). False: prefill
    and decode each run at full rate side by side (the previous model;
    docs/simulator.md)."""
    probe_prefill_tokens_per_s: float = 0.0
    probe_decode_tokens_per_s: float = 0.0
    """A profile fitted from real runs: the machine's speed while they ran, as
    `bench --real`'s probe measured it (a prompt prefilled from scratch, then
    decoded at batch 1; means over the rounds). 0: not measured. `at_speed`
    scales the profile to another run's probe: two machines of the same kind
    differed 2-3x in prefill speed, and the costs follow it (docs/simulator.md)."""

    @property
    def kv_blocks(self) -> int:
        return self.kv_tokens // self.block_tokens

    def step_s(self, batch: int) -> float:
        """One decode step of a batch of `batch` sequences (linear between 1 and 64)."""
        b = max(1, batch)
        return (
            self.decode_step_s_batch1
            + (self.decode_step_s_batch64 - self.decode_step_s_batch1) * (b - 1) / 63
        )

    def prefill_s(self, tokens: int) -> float:
        return tokens / self.prefill_tokens_per_s

    def at_speed(
        self, probe_prefill_tokens_per_s: float, probe_decode_tokens_per_s: float
    ) -> GpuProfile:
        """This profile on a machine whose probe measured these speeds: its prefill
        rate and decode step each scaled by the ratio of the probes, when that
        ratio is beyond `PROBE_NOISE` either way (unchanged when this profile has
        no probe figures). The time outside the engine is not scaled: it did not
        follow the probe (docs/simulator.md, "The `cpu-tiny` profile")."""
        if self.probe_prefill_tokens_per_s <= 0 or self.probe_decode_tokens_per_s <= 0:
            return self
        prefill = beyond_noise(probe_prefill_tokens_per_s / self.probe_prefill_tokens_per_s)
        decode = beyond_noise(self.probe_decode_tokens_per_s / probe_decode_tokens_per_s)
        return replace(
            self.scaled(prefill, decode),
            probe_prefill_tokens_per_s=probe_prefill_tokens_per_s,
            probe_decode_tokens_per_s=probe_decode_tokens_per_s,
        )

    def scaled(self, prefill_rate: float, decode_step: float) -> GpuProfile:
        """The engine's costs scaled: the prefill rate by `prefill_rate`, the decode
        step (at every batch size) by `decode_step`."""
        return replace(
            self,
            prefill_tokens_per_s=self.prefill_tokens_per_s * prefill_rate,
            decode_step_s_batch1=self.decode_step_s_batch1 * decode_step,
            decode_step_s_batch64=self.decode_step_s_batch64 * decode_step,
        )


# One probe per run swings by 13-16% (sd) on a steady machine, so the ratio of
# two benches' means over 8 runs has an sd of 7-8%: a smaller ratio is noise
# (scaled by it, a check on the fit's machine went from -0.6% to -12.1%), a
# 2-3x change between two machines of the same kind is not.
PROBE_NOISE = 1.25


def beyond_noise(ratio: float) -> float:
    """`ratio` when a change of speed by it is beyond the probe's noise, else 1."""
    return ratio if max(ratio, 1 / ratio) >= PROBE_NOISE else 1.0


def load_profile(name_or_path: str) -> GpuProfile:
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.json"
    try:
        doc = json.loads(path.read_text())
        return GpuProfile(**doc)
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.json")))
        raise ValueError(f"no GPU profile {name_or_path!r} (known: {known})") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad GPU profile {path}: {exc}") from exc
