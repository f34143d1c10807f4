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
from typing import Any, TypeAlias

from saga_hpc.errors import UsageError
from saga_hpc.head.template import ChatTemplate

# Token ids as 4-byte unsigned ints (array "I"): joined, hashed and sent in C.
Ids: TypeAlias = "array[int]"


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
        self._template = ChatTemplate.for_tokenizer(self.tokenizer)

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The chat template's text for `messages`, ending with the assistant's turn."""
        if not messages:
            raise PromptError("'messages' must hold at least one message")
        try:
            if self._template is not None:
                return self._template.render(messages)
            rendered: str = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja errors for shapes the template does not know
            raise PromptError(f"the model's chat template rejected the messages: {exc}") from exc
        return rendered

    @property
    def pieces(self) -> PieceCache | None:
        """The piece cache, when this tokenizer allows one."""
        return self._pieces

    def chat(self, messages: list[dict[str, Any]], new_chars: int | None = None) -> Ids:
        """The prompt's token ids. With `new_chars`, only if at most that many
        characters are not in the piece cache (else `TooMuchNew`): a caller on the
        event loop encodes small news itself and hands big ones to a thread."""
        rendered = self.render(messages)
        if self._pieces is not None:
            # The template writes the special tokens itself (as transformers does).
            return self._pieces.encode(rendered, new_chars)
        if new_chars is not None:
            raise TooMuchNew
        return self._encode(rendered, add_special_tokens=False)

    def _encode(self, text: str, add_special_tokens: bool) -> Ids:
        if self._pieces is not None and not add_special_tokens:
            return self._pieces.encode(text)
        if self._rust is not None:
            return array("I", _encode_fast(self._rust, text, add_special_tokens))
        return array("I", self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def text(self, prompt: str) -> Ids:
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

    @property
    def added(self) -> dict[str, int]:
        """The added tokens' ids by their text."""
        return self._added

    @classmethod
    def for_tokenizer(cls, rust: Any) -> PieceCache | None:
        tokens = rust.get_added_tokens_decoder()
        if not tokens or any(t.lstrip or t.rstrip or t.single_word for t in tokens.values()):
            return None
        if rust.normalizer is not None and any(t.normalized for t in tokens.values()):
            return None
        return cls(rust, {t.content: i for i, t in tokens.items()})

    def encode(self, text: str, new_chars: int | None = None) -> Ids:
        """The ids of `text`; with `new_chars`, `TooMuchNew` (before encoding
        anything) if more characters than that are not in the cache."""
        return self.encode_cut(text, new_chars)[0]

    def encode_cut(self, text: str, new_chars: int | None = None) -> tuple[Ids, int, int]:
        """As `encode`, and where the text's last added token ends: its offset
        in `text` and in the ids (0, 0 without one). What precedes such a cut
        has the same ids whatever text follows it."""
        pieces = self._cut.split(text)
        if new_chars is not None:
            known = self._ids
            added = self._added
            new = sum(len(p) for p in pieces if p not in known and p not in added)
            if new > new_chars:
                raise TooMuchNew
        ids: Ids = array("I")
        chars = cut_chars = cut_ids = 0
        # split() alternates text, added token, text, ...: odd places are added tokens.
        for i, piece in enumerate(pieces):
            chars += len(piece)
            if i % 2:
                ids.append(self._added[piece])
                cut_chars, cut_ids = chars, len(ids)
            elif piece:
                ids += self._piece(piece)
        return ids, cut_chars, cut_ids

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
    hashes, _ = chain_hashes(as_ids(token_ids), block_size, hash(salt), 0)
    return tuple(hashes)


def chain_hashes(ids: Ids, block_size: int, prev: int, start: int) -> tuple[list[int], list[int]]:
    """The hashes of `ids`' full blocks from block `start` on, `prev` being the
    chain's value before that block (the salt's hash before block 0); and the
    chain's values after each of them, to go on from."""
    raw = ids.tobytes()  # 4 bytes per token, sliced per block in C
    step = 4 * block_size
    hashes: list[int] = []
    chain: list[int] = []
    for end in range(step * (start + 1), 4 * (len(ids) // block_size) * block_size + 1, step):
        prev = hash((prev, raw[end - step : end]))
        chain.append(prev)
        hashes.append(prev & _LOW_63_BITS)
    return hashes, chain


def as_ids(token_ids: Sequence[int]) -> Ids:
    return token_ids if isinstance(token_ids, array) else array("I", token_ids)


_LOW_63_BITS = (1 << 63) - 1
