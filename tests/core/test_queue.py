"""The waiting-call queue's prompt bound, which lets a steal scan skip a queue."""

from __future__ import annotations

from saga_hpc.core.queue import GroupedQueue, Waiting
from saga_hpc.core.types import CallSpec


def waiting(call: str, prompt: int, seq: int) -> Waiting:
    return Waiting(CallSpec(call, call, "a", prompt, 16, 0.0, "default", ()), 0.0, seq)


def test_min_prompt_tokens_bounds_every_waiting_call_and_restarts_when_empty() -> None:
    q = GroupedQueue()
    for seq, prompt in enumerate((300, 100, 200)):
        q.push("a", waiting(f"c{seq}", prompt, seq))
    assert q.min_prompt_tokens == 100
    q.pop("a")  # the first pushed (300) leaves: the bound stays a bound
    assert q.min_prompt_tokens == 100
    q.pop("a")
    q.pop("a")
    q.push("b", waiting("c3", 500, 3))  # an empty queue forgets the old bound
    assert q.min_prompt_tokens == 500
