"""Result documents as strict JSON.

A figure that does not exist (no Bélády run for vllm, no paired test on identical
times) is NaN inside the bench; Python's json would write it as the bare word
`NaN`, which RFC 8259 does not allow and most parsers (JavaScript, Go, Rust's
serde_json) reject. The documents say `null` instead.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_null(value: Any) -> Any:
    """`value` with every non-finite float, at any depth, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(v) for v in value]
    return value


def dumps(doc: Any, indent: int | None = 2) -> str:
    """`doc` as strict JSON (missing figures as null)."""
    return json.dumps(finite_or_null(doc), indent=indent, allow_nan=False)
