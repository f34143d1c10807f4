"""The piece cache gives exactly the tokenizer's ids for any chat, cached or not."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from saga_hpc.head.prompts import PieceCache, PromptBuilder
from tests.head.tokens import full_encode, marker_text

TEXT = marker_text(max_size=60)
MESSAGES = st.lists(
    st.tuples(st.sampled_from(["system", "user", "assistant"]), TEXT), min_size=1, max_size=6
)


def test_tiny_tokenizer_uses_the_cache(prompts: PromptBuilder) -> None:
    assert isinstance(prompts._pieces, PieceCache)


@settings(max_examples=200, deadline=None)
@given(conversation=MESSAGES)
def test_cached_ids_equal_the_tokenizers(
    prompts: PromptBuilder, conversation: list[tuple[str, str]]
) -> None:
    messages = [{"role": r, "content": c} for r, c in conversation]
    expected = full_encode(prompts, messages)
    assert list(prompts.chat(messages)) == expected  # cold or warm, whatever earlier examples left
    assert list(prompts.chat(messages)) == expected  # warm


def test_growing_conversation_reuses_earlier_messages(prompts: PromptBuilder) -> None:
    messages = [{"role": "system", "content": "you fix bugs " * 50}]
    for turn in range(5):
        messages.append({"role": "user", "content": f"tool output {turn} " * 30})
        assert list(prompts.chat(messages)) == full_encode(prompts, messages)
        messages.append({"role": "assistant", "content": f"answer {turn}"})


def test_cache_stays_within_its_token_bound(prompts: PromptBuilder) -> None:
    cache = PieceCache.for_tokenizer(prompts.tokenizer.backend_tokenizer)
    assert cache is not None
    cache._max_tokens = 500
    for i in range(50):
        text = f"message number {i} " * 5
        assert list(cache.encode(text)) == full_encode_text(prompts, text)
    assert 0 < cache._tokens <= 500


def full_encode_text(prompts: PromptBuilder, text: str) -> list[int]:
    return list(prompts.tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids)
