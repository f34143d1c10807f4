"""Holds give way to the engine's requests while others run (HintScheduler._unstall)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests.worker.test_holds import two_holds

pytestmark = pytest.mark.vllm


def request(tokens: int, computed: int) -> SimpleNamespace:
    return SimpleNamespace(num_tokens=tokens, num_computed_tokens=computed)


class Waiting(list[SimpleNamespace]):
    def peek_request(self) -> SimpleNamespace:
        return self[0]


def test_blocks_wanted_counts_the_rest_of_prompts_the_next_tokens_and_the_waiting_prompt() -> None:
    from saga_hpc.worker.hint_scheduler import blocks_wanted

    decoding_at_boundary = request(65, 64)  # its next token opens block 3
    decoding_inside = request(70, 69)
    prefilling = request(3000, 2048)  # chunked prefill: 94 blocks in all, 64 computed
    waiting = request(96, 0)
    assert blocks_wanted([decoding_at_boundary, decoding_inside], None, 32) == 1
    assert blocks_wanted([prefilling], None, 32) == 94 - 64
    assert blocks_wanted([decoding_inside], waiting, 32) == 3 + 1


def scheduler(running: list[SimpleNamespace], waiting: list[SimpleNamespace]) -> Any:
    """The scheduler's state `_unstall` reads: 8 usable blocks, a (score 2) and b
    (score 1) hold 3 each, 2 free."""
    _, holds = two_holds()
    return SimpleNamespace(
        holds=holds,
        running=running,
        waiting=Waiting(waiting),
        max_num_running_reqs=2,
        block_size=32,
    )


def test_a_waiting_request_gets_held_blocks_while_another_runs() -> None:
    from saga_hpc.worker.hint_scheduler import HintScheduler

    # One request decodes (1 block at its boundary), one waits for 3 + 1: 5 > 2
    # free. Before, holds gave way only when nothing ran: it waited for the other.
    s = scheduler([request(65, 64)], [request(96, 0)])
    HintScheduler._unstall(s, now=0.0)
    assert set(s.holds.holds) == {"a"}
    assert s.holds.pool.get_num_free_blocks() == 5
    assert s.holds.stats.dropped_for_memory == 1


def test_holds_stay_while_the_free_blocks_cover_the_step() -> None:
    from saga_hpc.worker.hint_scheduler import HintScheduler

    s = scheduler([request(70, 69)], [request(32, 0)])  # 0 + 1 + 1 of 2 free
    HintScheduler._unstall(s, now=0.0)
    assert set(s.holds.holds) == {"a", "b"}
    # Every slot taken: the waiting request is not admitted this step, holds stay.
    s = scheduler([request(65, 64), request(70, 69)], [request(96, 0)])
    HintScheduler._unstall(s, now=0.0)
    assert set(s.holds.holds) == {"a", "b"}
