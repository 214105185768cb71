"""Resolve model names, load a draft/target pair, and refuse pairs that cannot work.

A model is named by a registered short name (the offline default pair), a local
directory, or a Hugging Face id (for users with a hub; nothing in the default path
downloads). Speculative decoding compares token ids, so both models must share one
vocabulary: a mismatch is an error that names both models.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from autojudge.errors import ModelLoadError
from autojudge.models.hf import HFCausalLM
from autojudge.models.registry import DEFAULT_DRAFT, DEFAULT_TARGET, REGISTERED

log = logging.getLogger(__name__)


@dataclass
class ModelPair:
    draft: HFCausalLM | None  # None when only the target is needed
    target: HFCausalLM
    tokenizer: object  # the target's tokenizer; the draft's was checked to be the same
    stop_ids: frozenset[int]

    def describe(self) -> dict:
        described = {"target": self.target.name, "target_backend": self.target.describe()}
        if self.draft is not None:
            described.update(draft=self.draft.name, draft_backend=self.draft.describe())
        return described


def resolve(name: str, progress: bool = True) -> str:
    """Map a model name to what `from_pretrained` takes, converting registered models once."""
    if name in REGISTERED:
        from autojudge.models.convert import ensure_converted
        return str(ensure_converted(REGISTERED[name], progress=progress))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{name}: a directory without config.json is not a model")
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name and name.count("/") != 1:
        raise ModelLoadError(f"{name}: no such model directory")
    return name  # a hub id; transformers reports whether it can be had


def load_tokenizer(name: str):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(resolve(name))
    except OSError as exc:
        raise ModelLoadError(f"cannot load the tokenizer of {name}: {_first_line(exc)}") from exc


def load_model(name: str, dtype: torch.dtype = torch.float32, device: str = "cpu",
               linear: str = "onednn") -> HFCausalLM:
    """Load one model behind the HF backend; `linear="onednn"` speeds CPU verification."""
    from transformers import AutoModelForCausalLM
    try:
        model = AutoModelForCausalLM.from_pretrained(resolve(name), dtype=dtype).to(device)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load model {name}: {_first_line(exc)}") from exc
    if linear == "onednn" and device == "cpu" and dtype == torch.float32:
        from autojudge.models.onednn import use_onednn_linear
        use_onednn_linear(model)
    else:
        linear = "default"
    return HFCausalLM(model, name=name, linear=linear)


def check_same_vocabulary(draft_name: str, draft_tok, target_name: str, target_tok) -> None:
    if draft_tok.get_vocab() != target_tok.get_vocab():
        raise ModelLoadError(
            f"draft {draft_name} and target {target_name} have different vocabularies "
            f"({len(draft_tok)} vs {len(target_tok)} tokens); speculative decoding needs one"
        )


def stop_token_ids(model: HFCausalLM, tokenizer) -> frozenset[int]:
    """EOS ids from the generation config and the tokenizer (chat models end turns early)."""
    ids = set()
    configured = model.model.generation_config.eos_token_id
    ids.update(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    if model.name in REGISTERED:
        ids.update(tokenizer.convert_tokens_to_ids(list(REGISTERED[model.name].stop_tokens)))
    return frozenset(i for i in ids if i is not None)


def load_pair(draft: str | None = DEFAULT_DRAFT, target: str = DEFAULT_TARGET,
              linear: str = "onednn", device: str = "cpu",
              dtype: torch.dtype = torch.float32) -> ModelPair:
    """Load both models (the draft only if named), refusing mismatched vocabularies."""
    target_tok = load_tokenizer(target)
    if draft is not None:
        check_same_vocabulary(draft, load_tokenizer(draft), target, target_tok)
    target_model = load_model(target, dtype=dtype, device=device, linear=linear)
    if draft is None:
        return ModelPair(None, target_model, target_tok, stop_token_ids(target_model, target_tok))
    draft_model = load_model(draft, dtype=dtype, device=device, linear=linear)
    if draft_model.vocab_size != target_model.vocab_size:
        raise ModelLoadError(
            f"draft {draft} predicts {draft_model.vocab_size} logits, target {target} "
            f"{target_model.vocab_size}; speculative decoding needs the same vocabulary"
        )
    return ModelPair(draft_model, target_model, target_tok, stop_token_ids(target_model, target_tok))


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
