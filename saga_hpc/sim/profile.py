"""GPU + model cost profiles for the simulator (JSON files in `profiles/`).

Add a profile by dropping a JSON file with these fields next to the others;
`saga-hpc sim --profile NAME` finds it by name, or takes a path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
