"""Turn API requests into token ids, and token ids into prefix-block hashes.

The head tokenizes (not the worker) because routing and retention need the
prompt's KV blocks before a worker is chosen: the chained block hashes let the
core see which workers may already hold a prefix. The chain is seeded with the
tenant's cache salt, so two accounts never match each other's prefixes, just
as vLLM never shares blocks across salts.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence
from typing import Any

from saga_hpc.errors import UsageError


class PromptError(ValueError):
    """The request's prompt cannot be served (too long, empty, not tokenizable)."""


class PromptBuilder:
    def __init__(self, model_dir: str, max_model_len: int) -> None:
        from transformers import AutoTokenizer  # heavy import: only where a head runs

        try:
            self.tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot load a tokenizer from {model_dir!r}: {exc}") from exc
        self.max_model_len = max_model_len
        self.vocab_size = len(self.tokenizer)
        # A fast tokenizer's Rust backend directly: transformers' wrapper costs a
        # fifth of the time, and the backend's encode_batch releases the GIL, so
        # the head tokenizes in threads while its event loop goes on.
        self._rust: Any = self.tokenizer.backend_tokenizer if self.tokenizer.is_fast else None

    def chat(self, messages: list[dict[str, Any]]) -> list[int]:
        if not messages:
            raise PromptError("'messages' must hold at least one message")
        try:
            rendered = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja errors for shapes the template does not know
            raise PromptError(f"the model's chat template rejected the messages: {exc}") from exc
        # The template writes the special tokens itself (as transformers does).
        return self._encode(rendered, add_special_tokens=False)

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        if self._rust is not None:
            batch = self._rust.encode_batch([text], add_special_tokens=add_special_tokens)
            ids: list[int] = batch[0].ids
            return ids
        return [int(t) for t in self.tokenizer.encode(text, add_special_tokens=add_special_tokens)]

    def text(self, prompt: str) -> list[int]:
        ids = self._encode(prompt, add_special_tokens=True)
        if not prompt or not ids:
            raise PromptError("'prompt' must not be empty")
        return ids

    def check_ids(self, ids: Sequence[int]) -> None:
        if not ids:
            raise PromptError("'prompt' must not be empty")
        bad = next((t for t in ids if not 0 <= t < self.vocab_size), None)
        if bad is not None:
            raise PromptError(
                f"token id {bad} is outside the vocabulary (0..{self.vocab_size - 1})"
            )

    def output_budget(self, prompt_len: int, requested: int | None, default: int) -> int:
        """The max_tokens to run with: what was asked, within the context window."""
        room = self.max_model_len - prompt_len
        if room < 1:
            raise PromptError(
                f"prompt is {prompt_len} tokens; this model's context is "
                f"{self.max_model_len} tokens"
            )
        if requested is None:
            return min(default, room)
        if requested > room:
            raise PromptError(
                f"max_tokens {requested} + prompt {prompt_len} tokens exceeds the context "
                f"of {self.max_model_len} tokens"
            )
        return requested


def prefix_hashes(token_ids: Sequence[int], block_size: int, salt: str) -> tuple[int, ...]:
    """Chained 63-bit hash of every full block: block i's hash covers blocks 0..i."""
    out: list[int] = []
    prev = hashlib.blake2b(salt.encode(), digest_size=8).digest()
    raw = array("I", token_ids).tobytes()  # 4 bytes per token, one C loop
    step = 4 * block_size
    for start in range(0, 4 * (len(token_ids) // block_size) * block_size, step):
        h = hashlib.blake2b(prev, digest_size=8)
        h.update(raw[start : start + step])
        prev = h.digest()
        out.append(int.from_bytes(prev, "little") >> 1)
    return tuple(out)
