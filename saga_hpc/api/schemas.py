"""Request bodies of the OpenAI-compatible API, validated strictly.

Unknown top-level fields are ignored (agent frameworks send `tools`,
`tool_choice`, `logprobs`... that a plain completion server may skip), but
every field we read is typed and bounded, so bad input is a 400 with the
field's name, never a 500.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Longest text accepted in one message/prompt field (characters); the token
# limit is checked after tokenizing, this only bounds the work to get there.
MAX_TEXT_CHARS = 2_000_000
MAX_TOKENS_LIMIT = 1_000_000

ShortText = Annotated[str, StringConstraints(max_length=256)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
Stop = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    type: Literal["text"]
    text: Text


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[TextPart] | None = None
    name: ShortText | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(_Lenient):
    include_usage: bool = False


class _Sampling(_Lenient):
    model: ShortText
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    n: Annotated[int, Field(ge=1, le=1)] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop | Annotated[list[Stop], Field(max_length=16)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    ignore_eos: bool = False
    user: ShortText | None = None
    # OpenAI's free-form metadata; saga reads workflow_id, next_tool, workflow_done.
    metadata: Annotated[dict[ShortText, ShortText], Field(max_length=16)] | None = None

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatCompletionRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=4096)]
    max_completion_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT)] | None = None

    def output_limit(self) -> int | None:
        return (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else self.max_tokens
        )


TokenIds = Annotated[
    list[Annotated[int, Field(ge=0, le=2**31 - 1)]], Field(min_length=1, max_length=1_000_000)
]


class CompletionRequest(_Sampling):
    prompt: Text | TokenIds
    echo: Literal[False] = False

    def output_limit(self) -> int | None:
        return self.max_tokens
