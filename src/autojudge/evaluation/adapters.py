"""Other libraries' decoding loops, run on our loaded models so that they compare like modes.

`assisted`: transformers' own assisted generation (`generate(assistant_model=...)`), called
as a user would call it, on the torch models of a pair.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from autojudge.decoding.engine import DecodeStats, Generation
from autojudge.models.backend import ModelPair


def assisted_generation(pair: ModelPair, prompt_ids: Sequence[int], max_new_tokens: int) -> Generation:
    target, draft = (getattr(m, "model", None) for m in (pair.target, pair.draft))
    if not isinstance(target, torch.nn.Module) or not isinstance(draft, torch.nn.Module):
        raise ValueError("assisted generation runs on torch models: name the method torch/assisted")
    calls = {"target": 0, "draft": 0}

    def counter(name):
        return lambda *_: calls.__setitem__(name, calls[name] + 1)

    hooks = [target.register_forward_pre_hook(counter("target")), draft.register_forward_pre_hook(counter("draft"))]
    input_ids = torch.tensor([list(prompt_ids)])
    try:
        start = time.perf_counter()
        with torch.inference_mode():
            out = target.generate(input_ids, attention_mask=torch.ones_like(input_ids), assistant_model=draft,
                                  do_sample=False, max_new_tokens=max_new_tokens,
                                  eos_token_id=sorted(pair.stop_ids), pad_token_id=pair.tokenizer.pad_token_id)
        seconds = time.perf_counter() - start
    finally:
        for hook in hooks:
            hook.remove()
    tokens = out[0, len(prompt_ids):].tolist()
    while tokens and tokens[-1] == pair.tokenizer.pad_token_id and tokens[-1] not in pair.stop_ids:
        tokens.pop()
    ended = bool(tokens) and tokens[-1] in pair.stop_ids  # kept, as our loop keeps it
    stats = DecodeStats(new_tokens=len(tokens), cycles=max(calls["target"] - 1, 1),  # the first call is the prefill
                        target_forwards=calls["target"], draft_forwards=calls["draft"], seconds=seconds)
    return Generation(tokens, "eos" if ended else "length", stats)


@dataclass(frozen=True)
class Adapter:
    runtime: str  # the target runtime its loop needs
    run: Callable[[ModelPair, Sequence[int], int], Generation]  # (pair, prompt ids, budget) -> Generation


# Other libraries' loops, by the name a method gives them (autojudge.evaluation.methods).
ADAPTERS = {"assisted": Adapter("torch", assisted_generation)}
