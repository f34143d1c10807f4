"""A workflow's next prompt, tokenized and hashed from where its last one left
off, gets exactly the ids and block hashes of the whole prompt."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from saga_hpc.head.conversations import Conversations
from saga_hpc.head.prompts import PromptBuilder, prefix_hashes
from tests.head.tokens import full_encode, marker_text

TEXT = marker_text(max_size=40)
ROLE = st.sampled_from(["system", "user", "assistant"])
# Each turn: the messages it appends, or (an edited history) how many to drop first.
TURN = st.tuples(st.integers(0, 3), st.lists(st.tuples(ROLE, TEXT), min_size=1, max_size=3))


def conversations(prompts: PromptBuilder, block_size: int) -> Conversations:
    conv = Conversations.for_pieces(prompts, block_size)
    assert conv is not None  # the tiny model's tokenizer allows it
    return conv


@settings(max_examples=150, deadline=None)
@given(
    turns=st.lists(TURN, min_size=1, max_size=6),
    block_size=st.sampled_from([1, 2, 3, 16]),
    salts=st.lists(st.sampled_from(["acct-a", "acct-b"]), min_size=6, max_size=6),
)
def test_ids_and_hashes_equal_the_whole_prompts(
    prompts: PromptBuilder,
    turns: list[tuple[int, list[tuple[str, str]]]],
    block_size: int,
    salts: list[str],
) -> None:
    conv = conversations(prompts, block_size)
    messages: list[dict[str, str]] = []
    for (drop, added), salt in zip(turns, salts, strict=False):
        del messages[len(messages) - min(drop, len(messages)) :]
        messages += [{"role": r, "content": c} for r, c in added]
        ids, hashes = conv.chat(messages, salt, ("acct", "wf"))
        expected = full_encode(prompts, messages)
        assert list(ids) == expected
        assert hashes == prefix_hashes(expected, block_size, salt)


def test_an_agents_turns_reuse_the_last_prompt(prompts: PromptBuilder) -> None:
    conv = conversations(prompts, 16)
    messages = [{"role": "system", "content": "you fix bugs " * 20}]
    for turn in range(6):
        messages.append({"role": "user", "content": f"tool output {turn} " * 30})
        ids, hashes = conv.chat(messages, "acct-a", ("a", "wf-1"))
        assert list(ids) == full_encode(prompts, messages)
        assert hashes == prefix_hashes(ids, 16, "acct-a")
        last = conv._last[("a", "wf-1")]
        rendered = prompts.render(messages)
        assert rendered.startswith(last.text) and last.text.endswith("</s>")
        assert len(rendered) - len(last.text) < 30  # only the assistant's turn is left
        messages.append({"role": "assistant", "content": f"answer {turn}"})


def test_keys_are_apart_and_bounded(prompts: PromptBuilder) -> None:
    conv = Conversations.for_pieces(prompts, 16, max_tokens=300)
    assert conv is not None
    for i in range(20):
        messages = [{"role": "user", "content": f"workflow {i} " * 10}]
        ids, _ = conv.chat(messages, "acct-a", ("a", f"wf-{i}"))
        assert list(ids) == full_encode(prompts, messages)
    assert 0 < conv._tokens <= 300 and len(conv._last) < 20
    conv.forget(("a", "wf-19"))
    assert ("a", "wf-19") not in conv._last
    # No key: nothing kept.
    before = dict(conv._last)
    conv.chat([{"role": "user", "content": "one-off"}], "acct-a", None)
    assert conv._last == before


def test_a_tokenizer_whose_added_tokens_nest_gets_none(prompts: PromptBuilder) -> None:
    pieces = prompts.pieces
    assert pieces is not None
    pieces._added["</s>x"] = 1  # holds "</s>": where "</s>" ends depends on what follows
    try:
        assert Conversations.for_pieces(prompts, 16) is None
    finally:
        del pieces._added["</s>x"]
