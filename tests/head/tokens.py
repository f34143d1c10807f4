"""What the head's tokenizing tests compare against: the tokenizer itself on the
whole rendered chat, and text that can trip a cut."""

from __future__ import annotations

from hypothesis import strategies as st

from saga_hpc.head.prompts import PromptBuilder


def marker_text(max_size: int) -> st.SearchStrategy[str]:
    """Text that can hold the template's own markers and added tokens mid-message."""
    return st.lists(
        st.sampled_from([*"ab c\n\t.é😀<>|/s", "</s>", "<s>", "<pad>", "<|user|>", "  "]),
        max_size=max_size,
    ).map("".join)


def full_encode(prompts: PromptBuilder, messages: list[dict[str, str]]) -> list[int]:
    """The ids transformers' tokenizer gives the whole rendered chat."""
    rendered = prompts.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    return list(prompts.tokenizer.backend_tokenizer.encode(rendered, add_special_tokens=False).ids)
