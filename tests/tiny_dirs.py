"""Tiny random-weight models saved as ordinary model directories, for CLI tests.

Each directory holds a Qwen2 model from tests/tiny.py and a 96-token tokenizer, so
`AutoModelForCausalLM.from_pretrained(dir)` and `AutoTokenizer.from_pretrained(dir)`
load it like any local model.

transformers 5 loads every `model_type: qwen2` directory's tokenizer as
`Qwen2Tokenizer` (a byte-level BPE), whatever class tokenizer_config.json names, and
takes only the vocabulary and merges from tokenizer.json. So the tokenizer here is
a byte-level BPE too: one token per printable ASCII character (space is "Ġ",
newline "Ċ"), no merges, which encodes any ASCII text without an unknown token.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from transformers import AutoTokenizer
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

from tests.tiny import VOCAB, noisy_copy, tiny_model

EOS = "<eos>"
PUNCTUATION = string.punctuation.replace("~", "")  # 31, to make exactly VOCAB tokens
BASE_TOKENS = [EOS, "Ġ", "Ċ", *string.ascii_lowercase, *string.ascii_uppercase,
               *string.digits, *PUNCTUATION]
assert len(BASE_TOKENS) == VOCAB

# A vocabulary of the same size and architecture whose token strings differ: the
# uppercase letters give way to space-prefixed lowercase words ("Ġa" .. "Ġz").
OTHER_TOKENS = [EOS, "Ġ", "Ċ", *string.ascii_lowercase, *("Ġ" + c for c in string.ascii_lowercase),
                *string.digits, *PUNCTUATION]
OTHER_MERGES = [("Ġ", c) for c in string.ascii_lowercase]
assert len(OTHER_TOKENS) == VOCAB


def tiny_tokenizer(other_vocabulary: bool = False) -> Qwen2Tokenizer:
    tokens, merges = (OTHER_TOKENS, OTHER_MERGES) if other_vocabulary else (BASE_TOKENS, [])
    # unk and pad default to a token outside the model's 96 logits; point them at EOS.
    return Qwen2Tokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                          eos_token=EOS, unk_token=EOS, pad_token=EOS)


def save_tiny(directory: Path, seed: int = 0, other_vocabulary: bool = False,
              draft_noise: float | None = None) -> Path:
    """Save a tiny model and tokenizer; with `draft_noise`, a perturbed copy of seed's model."""
    model = tiny_model(seed)
    if draft_noise is not None:
        model = noisy_copy(model, seed + 1000, draft_noise)
    model.generation_config.eos_token_id = 0
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer = tiny_tokenizer(other_vocabulary)
    tokenizer.save_pretrained(directory)

    loaded = AutoTokenizer.from_pretrained(directory)  # what the CLI will see
    sample = "the cat sat. 42!"
    assert loaded.get_vocab() == tokenizer.get_vocab() and len(loaded) == VOCAB
    assert loaded(sample)["input_ids"] == tokenizer(sample)["input_ids"] != []
    assert loaded.eos_token_id == 0 and not getattr(loaded, "chat_template", None)
    return directory


def save_resized_head(directory: Path, source: Path, logits: int, loud_padding: bool = True) -> Path:
    """`source`'s model and tokenizer with `logits` output rows instead of VOCAB.

    Extra rows are padding, as in Qwen2.5-7B (152064 logits, 151665 tokens); with
    `loud_padding` they copy real rows, scaled up, so they would win many an argmax.
    """
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(source)
    model.resize_token_embeddings(logits, mean_resizing=False)
    if loud_padding and logits > VOCAB:
        with torch.no_grad():
            head = model.get_output_embeddings().weight
            head[VOCAB:] = 4 * head[: logits - VOCAB]
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(source).save_pretrained(directory)
    return directory
