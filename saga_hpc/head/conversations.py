"""What a workflow's last prompt leaves for its next one.

An agent resends its whole conversation every turn, a message or two longer.
The piece cache (prompts.py) spares encoding the earlier messages again, but
every call still cut the whole rendered text into pieces, looked each one up,
joined their ids and hashed every KV block of the prompt. Per workflow (of
one account) the head now keeps the last prompt's rendered text up to its
last added token, that text's token ids, and the chain of their full blocks'
hashes. A next prompt that starts with that text is cut, encoded and hashed
from there on only. The tokenizer cuts text at added tokens before anything
else, so what precedes the cut has the same ids whatever follows (as long as
no added token holds another one, which `for_pieces` checks); the ids and
hashes are exactly those of the whole prompt (tests/head/test_conversations.py).
A prompt that does not start with the text (an edited history) is done whole.
"""

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from saga_hpc.head.prompts import Ids, PieceCache, PromptBuilder, chain_hashes


@dataclass(frozen=True)
class _Prefix:
    text: str  # rendered text up to the end of its last added token
    ids: Ids  # its token ids
    hashes: tuple[int, ...]  # the chained hashes of the ids' full blocks
    chain: int  # the chain's value after the last of them
    salt: str  # the chain's seed


class Conversations:
    """Chat prompts' token ids and block hashes, reusing each workflow's last prompt."""

    def __init__(
        self, prompts: PromptBuilder, pieces: PieceCache, block_size: int, max_tokens: int
    ) -> None:
        self.prompts = prompts
        self.pieces = pieces
        self.block_size = block_size
        self._max_tokens = max_tokens
        self._tokens = 0
        self._last: OrderedDict[Hashable, _Prefix] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()  # tokenizing runs in threads too

    @classmethod
    def for_pieces(
        cls, prompts: PromptBuilder, block_size: int, max_tokens: int = 4_000_000
    ) -> Conversations | None:
        """None when the tokenizer has no piece cache, or an added token holds
        another (then where one ends may depend on the text after it)."""
        pieces = prompts.pieces
        if pieces is None:
            return None
        added = list(pieces.added)
        if any(a != b and a in b for a in added for b in added):
            return None
        return cls(prompts, pieces, block_size, max_tokens)

    def chat(
        self,
        messages: list[dict[str, Any]],
        salt: str,
        key: Hashable | None,
        new_chars: int | None = None,
    ) -> tuple[Ids, tuple[int, ...]]:
        """The prompt's token ids and block hashes (chain seeded with `salt`);
        `key` names the conversation (one account's workflow), None for a
        one-off. `new_chars`, `TooMuchNew`, `PromptError`: as `PromptBuilder.chat`."""
        rendered = self.prompts.render(messages)
        with self._lock:
            last = self._last.get(key) if key is not None else None
        if last is None or last.salt != salt or not rendered.startswith(last.text):
            last = _Prefix("", array("I"), (), hash(salt), salt)
        rest, cut_chars, cut_ids = self.pieces.encode_cut(rendered[len(last.text) :], new_chars)
        ids = last.ids + rest
        start = len(last.hashes)
        more, chain = chain_hashes(ids, self.block_size, last.chain, start)
        hashes = last.hashes + tuple(more)
        if key is not None and cut_ids:
            end = len(last.ids) + cut_ids  # the ids before the last added token's end
            blocks = end // self.block_size  # >= start: `last.ids` is where `end` starts from
            at = chain[blocks - start - 1] if blocks > start else last.chain
            text = rendered[: len(last.text) + cut_chars]
            self._remember(key, _Prefix(text, ids[:end], hashes[:blocks], at, salt))
        return ids, hashes

    def forget(self, key: Hashable) -> None:
        """The workflow ended: its next prompt will not come."""
        with self._lock:
            gone = self._last.pop(key, None)
            if gone is not None:
                self._tokens -= len(gone.ids)

    def _remember(self, key: Hashable, prefix: _Prefix) -> None:
        with self._lock:
            old = self._last.pop(key, None)
            if old is not None:
                self._tokens -= len(old.ids)
            self._last[key] = prefix
            self._tokens += len(prefix.ids)
            while self._tokens > self._max_tokens:
                _, gone = self._last.popitem(last=False)
                self._tokens -= len(gone.ids)
