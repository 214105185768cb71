"""Named decoding modes over a loaded pair: what the CLI, the benchmark and evaluation run."""

from __future__ import annotations

from typing import Sequence

from autojudge.decoding.engine import Generation, generate
from autojudge.decoding.policies import policy_from_name
from autojudge.models.loading import ModelPair


def decode(pair: ModelPair, prompt_ids: Sequence[int], mode: str = "exact", *,
           window: int = 8, max_new_tokens: int = 256) -> Generation:
    """`mode`: "target" (the target alone, greedy), "exact", or "topk:K"."""
    if mode == "target":
        return generate(pair.target, prompt_ids, max_new_tokens=max_new_tokens,
                        stop_ids=pair.stop_ids)
    return generate(pair.target, prompt_ids, draft=pair.draft, policy=policy_from_name(mode),
                    window=window, max_new_tokens=max_new_tokens, stop_ids=pair.stop_ids)
