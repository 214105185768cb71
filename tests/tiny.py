"""Tiny random-weight Qwen2 models for fast, real (not mocked) decoding tests."""

from __future__ import annotations

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from autojudge.models.hf import HFCausalLM
from autojudge.models.onednn import use_onednn_linear

VOCAB = 96


def tiny_config(hidden: int = 64, layers: int = 2, context: int = 256) -> Qwen2Config:
    return Qwen2Config(
        vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=context, tie_word_embeddings=False,
        # Wide weights give peaked logits, so float noise between a one-token and a
        # many-token pass cannot flip an argmax and the test stays about logic.
        initializer_range=0.4,
    )


def tiny_model(seed: int, hidden: int = 64, layers: int = 2, context: int = 256) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(tiny_config(hidden, layers, context)).eval()


def noisy_copy(model: Qwen2ForCausalLM, seed: int, scale: float) -> Qwen2ForCausalLM:
    """A draft that agrees with `model` most of the time, like a real small sibling."""
    torch.manual_seed(seed)
    copy = Qwen2ForCausalLM(model.config).eval()
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        for p in copy.parameters():
            p.add_(torch.randn_like(p) * scale * p.std())
    return copy


def last_token_model(seed: int) -> Qwen2ForCausalLM:
    """A real model whose next token depends on the last token alone (its attention writes
    nothing): its greedy text follows a fixed token-to-token map, so a prompt holding a
    stretch of that text and then its first token again is copied by the answer."""
    model = tiny_model(seed)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
    return model


def backend(model: Qwen2ForCausalLM, name: str, onednn: bool = False) -> HFCausalLM:
    if onednn:
        use_onednn_linear(model)
    return HFCausalLM(model, name=name, linear="onednn" if onednn else "default")
