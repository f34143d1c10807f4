"""The head's chat template renders exactly what transformers' apply_chat_template
does, for the tiny model's template and for templates of other shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from saga_hpc.head.template import ChatTemplate
from tests.head.tokens import marker_text

TEXT = marker_text(max_size=40) | st.sampled_from(["{{ m }}", "{% raw %}", " ", "\n\n", ""])
ROLES = st.sampled_from(["system", "user", "assistant", "tool", "bash"])
MESSAGES = st.lists(st.tuples(ROLES, TEXT), min_size=1, max_size=8)

PLAIN_AROUND = (
    "<s>{% for message in messages %}[{{ message['role'] | upper }}] "
    "{{ message.content | trim }}{% if message.role == 'user' %}?{% endif %}\n"
    "{% endfor %}END{% if add_generation_prompt %}[ASSISTANT]{% endif %}!"
)
# As real models' templates: the first message, special tokens, a check that raises.
LOOP_FIRST = (
    "{% for m in messages %}{% if loop.first and m.role != 'system' %}{{ bos_token }}"
    "{% endif %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
RAISES = (
    "{{ bos_token }}{% for m in messages %}{% if m.role == 'bash' %}"
    "{{ raise_exception('no bash role') }}{% endif %}{{ m.role }}: {{ m.content }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)
STATEFUL = (
    "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
    "{{ ns.n }} {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}>{% endif %}"
)
NAMED = "{% for m in messages %}{{ m.name }}: {{ m.content }}\n{% endfor %}"
TEMPLATES = {"tiny": None, "plain": PLAIN_AROUND, "first": LOOP_FIRST}
TEMPLATES |= {"raises": RAISES, "stateful": STATEFUL}
PIECEWISE = {"tiny": True, "plain": True, "first": False, "raises": False, "stateful": False}


@pytest.fixture(scope="module")
def tokenizers(tiny_model: Path) -> dict[str, Any]:
    out = {}
    for name, source in TEMPLATES.items():
        tok = AutoTokenizer.from_pretrained(str(tiny_model))
        if source is not None:
            tok.chat_template = source
        out[name] = tok
    return out


@pytest.fixture(scope="module")
def templates(tokenizers: dict[str, Any]) -> dict[str, ChatTemplate]:
    out = {}
    for name, tok in tokenizers.items():
        template = ChatTemplate.for_tokenizer(tok)
        assert template is not None
        out[name] = template
    return out


def expected(tokenizer: Any, messages: list[dict[str, str]]) -> str | type[Exception]:
    try:
        text: str = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
    except Exception as exc:
        return type(exc)
    return text


def rendered(template: ChatTemplate, messages: list[dict[str, str]]) -> str | type[Exception]:
    try:
        return template.render(messages)
    except Exception as exc:
        return type(exc)


def test_only_plain_loops_are_piecewise(templates: dict[str, ChatTemplate]) -> None:
    assert {name: t.piecewise for name, t in templates.items()} == PIECEWISE


@settings(max_examples=150, deadline=None)
@given(conversation=MESSAGES)
def test_renders_what_transformers_renders(
    tokenizers: dict[str, Any],
    templates: dict[str, ChatTemplate],
    conversation: list[tuple[str, str]],
) -> None:
    messages = [{"role": r, "content": c} for r, c in conversation]
    for name, template in templates.items():
        want = expected(tokenizers[name], messages)
        assert rendered(template, messages) == want, name  # cold or warm
        assert rendered(template, messages) == want, name  # warm


def test_a_growing_conversation_and_a_bounded_cache(
    tokenizers: dict[str, Any], templates: dict[str, ChatTemplate]
) -> None:
    template = templates["plain"]
    template.max_chars = 300
    messages = [{"role": "system", "content": "you fix bugs " * 5}]
    for turn in range(20):
        messages.append({"role": "user", "content": f"tool output {turn} " * 3})
        assert template.render(messages) == expected(tokenizers["plain"], messages)
        messages.append({"role": "assistant", "content": f"answer {turn}"})
    assert 0 < template._chars <= 300


def test_a_message_with_more_keys_is_rendered_not_cached(
    tokenizers: dict[str, Any], templates: dict[str, ChatTemplate]
) -> None:
    messages = [{"role": "user", "content": "hi", "name": "bob"}]
    assert templates["tiny"].render(messages) == expected(tokenizers["tiny"], messages)
    assert ("user", "hi") not in templates["tiny"]._cache
    # Nor looked up: the template may read the other keys.
    tokenizer = AutoTokenizer.from_pretrained(tokenizers["tiny"].name_or_path)
    tokenizer.chat_template = NAMED
    named = ChatTemplate.for_tokenizer(tokenizer)
    assert named is not None and named.piecewise
    plain = [{"role": "user", "content": "hi"}]
    assert named.render(plain) == expected(tokenizer, plain)
    assert named.render(messages) == expected(tokenizer, messages) != named.render(plain)
