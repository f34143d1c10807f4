"""The core's value types: `fast_init` keeps them what `dataclass` made them."""

from __future__ import annotations

import inspect
from dataclasses import FrozenInstanceError, dataclass, field, replace

import pytest

from saga_hpc.core.kvpool import Admission
from saga_hpc.core.types import (
    CallOutcome,
    CallSpec,
    Dispatch,
    Release,
    Retain,
    WorkerStats,
    fast_init,
)


def test_fast_init_keeps_signature_defaults_equality_and_frozenness() -> None:
    spec = CallSpec("c1", "A", "physics", 100, 16, 0.5)
    assert spec.task_class == "default" and spec.prefix_hashes == ()
    assert spec == CallSpec("c1", "A", "physics", 100, 16, 0.5, "default", ())
    assert hash(spec) == hash(
        CallSpec(
            call_id="c1",
            workflow_id="A",
            tenant="physics",
            prompt_tokens=100,
            max_output_tokens=16,
            arrived_at=0.5,
        )
    )
    assert replace(spec, tenant="chem").tenant == "chem"
    with pytest.raises(FrozenInstanceError):
        spec.tenant = "chem"  # type: ignore[misc]
    with pytest.raises(TypeError):
        CallSpec("c1", "A")  # type: ignore[call-arg]
    for cls in (CallSpec, CallOutcome, WorkerStats, Dispatch, Retain, Release, Admission):
        params = list(inspect.signature(cls).parameters)
        assert params == [f for f in cls.__dataclass_fields__], cls
    assert Retain("w1", "A", 3.0, 0.5, "s").reason == ""
    assert CallOutcome("c1", "w1", 1.0, 100, 0, 16).next_tool is None


def test_fast_init_refuses_a_default_factory() -> None:
    with pytest.raises(TypeError, match="default_factory"):

        @fast_init
        @dataclass(frozen=True, slots=True)
        class Bad:
            items: list[int] = field(default_factory=list)
