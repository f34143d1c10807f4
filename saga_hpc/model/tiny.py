"""Generate a deterministic random-weight Llama with a real BPE tokenizer and chat template.

The embedded default needs a model that vLLM loads like any other (config,
safetensors, tokenizer, chat template) but that nobody has to download. Weights
are random, so output text is gibberish; what matters is that prompts, KV blocks,
prefix caching and token streams are real. `hidden`/`layers` scale the model up
when a benchmark needs prefill to cost measurable time.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPEC_FILE = "saga-model.json"
WORDS = [
    "def",
    "class",
    "return",
    "import",
    "self",
    "agent",
    "tool",
    "call",
    "file",
    "test",
    "patch",
    "diff",
    "git",
    "the",
    "a",
    "of",
    "to",
    "in",
    "is",
    "for",
    "on",
    "with",
    "error",
    "pass",
    "fail",
    "run",
    "bash",
    "ls",
    "cat",
    "grep",
    "python",
]


@dataclass(frozen=True)
class TinyModelSpec:
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    max_positions: int = 4096
    seed: int = 0


def _corpus(n: int = 4000) -> list[str]:
    rng = random.Random(0)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) for _ in range(n)]


def is_generated(out: Path, spec: TinyModelSpec) -> bool:
    """True when `out` already holds a model generated from exactly `spec`."""
    marker = out / SPEC_FILE
    return marker.is_file() and json.loads(marker.read_text()) == asdict(spec)


def generate(out: Path, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Write the model to `out` (idempotent: an identical existing model is kept)."""
    if is_generated(out, spec):
        return out
    # Heavy imports stay here so the CLI starts fast when no model is generated.
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(spec.seed)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    # vocab_size must be the trained size (368 here, not 512): vLLM rejects token ids
    # beyond the embedding table.
    cfg = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=spec.hidden,
        intermediate_size=spec.hidden * 2,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=spec.max_positions,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        torch_dtype="float32",  # type: ignore[call-arg]  # renamed `dtype` in newer releases
    )
    out.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(cfg).save_pretrained(out)  # type: ignore[no-untyped-call]
    fast.save_pretrained(out)
    (out / SPEC_FILE).write_text(json.dumps(asdict(spec)))
    return out
