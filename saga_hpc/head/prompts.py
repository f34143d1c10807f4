"""Turn API requests into token ids, and token ids into prefix-block hashes.

The head tokenizes (not the worker) because routing and retention need the
prompt's KV blocks before a worker is chosen: the chained block hashes let the
core see which workers may already hold a prefix. The chain is seeded with the
tenant's cache salt, so two accounts never match each other's prefixes, just
as vLLM never shares blocks across salts.
"""

from __future__ import annotations

import re
import threading
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from saga_hpc.errors import UsageError


class PromptError(ValueError):
    """The request's prompt cannot be served (too long, empty, not tokenizable)."""


class TooMuchNew(Exception):
    """More of the prompt is new than the caller wants to encode where it is."""


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
        self._pieces = PieceCache.for_tokenizer(self._rust) if self._rust is not None else None

    def chat(self, messages: list[dict[str, Any]], new_chars: int | None = None) -> list[int]:
        """The prompt's token ids. With `new_chars`, only if at most that many
        characters are not in the piece cache (else `TooMuchNew`): a caller on the
        event loop encodes small news itself and hands big ones to a thread."""
        if not messages:
            raise PromptError("'messages' must hold at least one message")
        try:
            rendered = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja errors for shapes the template does not know
            raise PromptError(f"the model's chat template rejected the messages: {exc}") from exc
        if self._pieces is not None:
            # The template writes the special tokens itself (as transformers does).
            return self._pieces.encode(rendered, new_chars)
        if new_chars is not None:
            raise TooMuchNew
        return self._encode(rendered, add_special_tokens=False)

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        if self._pieces is not None and not add_special_tokens:
            return self._pieces.encode(text)
        if self._rust is not None:
            ids: list[int] = _encode_fast(self._rust, text, add_special_tokens)
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
        if min(ids) >= 0 and max(ids) < self.vocab_size:  # two C passes: the usual case
            return
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


class PieceCache:
    """Token ids of a rendered chat, reusing the ids of pieces seen before.

    An agent resends its whole conversation every turn. The tokenizer cuts the
    text at added tokens (`</s>`, `<|im_end|>`) before anything else and encodes
    each piece on its own, so the ids of a piece do not depend on its
    neighbours: a conversation's earlier messages, cut at those same tokens,
    are looked up instead of encoded again. Used only when the cut is exactly
    the tokenizer's, i.e. no added token strips or matches whole words only.
    """

    def __init__(self, rust: Any, added: dict[str, int], max_tokens: int = 4_000_000) -> None:
        self._rust = rust
        self._added = added
        # Longest first: the tokenizer matches the longest added token at a position.
        alternatives = sorted(added, key=len, reverse=True)
        self._cut = re.compile("(" + "|".join(map(re.escape, alternatives)) + ")")
        self._ids: OrderedDict[str, array[int]] = OrderedDict()  # least recently used first
        self._tokens = 0
        self._max_tokens = max_tokens
        self._lock = threading.Lock()  # encode runs in several threads at once

    @classmethod
    def for_tokenizer(cls, rust: Any) -> PieceCache | None:
        tokens = rust.get_added_tokens_decoder()
        if not tokens or any(t.lstrip or t.rstrip or t.single_word for t in tokens.values()):
            return None
        if rust.normalizer is not None and any(t.normalized for t in tokens.values()):
            return None
        return cls(rust, {t.content: i for i, t in tokens.items()})

    def encode(self, text: str, new_chars: int | None = None) -> list[int]:
        """The ids of `text`; with `new_chars`, `TooMuchNew` (before encoding
        anything) if more characters than that are not in the cache."""
        pieces = self._cut.split(text)
        if new_chars is not None:
            known = self._ids
            added = self._added
            new = sum(len(p) for p in pieces if p not in known and p not in added)
            if new > new_chars:
                raise TooMuchNew
        ids: list[int] = []
        for piece in pieces:
            if not piece:
                continue
            added_id = self._added.get(piece)
            if added_id is not None:
                ids.append(added_id)
            else:
                ids.extend(self._piece(piece))
        return ids

    def _piece(self, piece: str) -> array[int]:
        with self._lock:
            cached = self._ids.get(piece)
            if cached is not None:
                self._ids.move_to_end(piece)
                return cached
        # Outside the lock: the Rust encoder releases the GIL, other threads go on.
        ids = array("I", _encode_fast(self._rust, piece, False))
        with self._lock:
            if piece not in self._ids:
                self._ids[piece] = ids
                self._tokens += len(ids)
            while self._tokens > self._max_tokens:
                _, old = self._ids.popitem(last=False)
                self._tokens -= len(old)
        return ids


def _encode_fast(rust: Any, text: str, add_special_tokens: bool) -> list[int]:
    """Token ids of `text`. The batch encoder releases the GIL; its fast form
    computes no character offsets (the head never reads them): a third less time
    for a 270-character tool output on the tiny model's tokenizer, same ids."""
    ids: list[int] = rust.encode_batch_fast([text], add_special_tokens=add_special_tokens)[0].ids
    return ids


def prefix_hashes(token_ids: Sequence[int], block_size: int, salt: str) -> tuple[int, ...]:
    """Chained 63-bit hash of every full block: block i's hash covers blocks 0..i.

    Python's own hash of (previous, block bytes): SipHash in C, ~5x cheaper per
    block than a hashlib object. It is seeded per process, which is all these
    need: they are compared only within the head's core, never stored."""
    raw = array("I", token_ids).tobytes()  # 4 bytes per token, one C loop
    step = 4 * block_size
    prev = hash(salt)
    out: list[int] = []
    for end in range(step, 4 * (len(token_ids) // block_size) * block_size + 1, step):
        prev = hash((prev, raw[end - step : end]))
        out.append(prev & _LOW_63_BITS)
    return tuple(out)


_LOW_63_BITS = (1 << 63) - 1
