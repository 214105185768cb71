"""The one interface decoding and mining need from a runtime.

A backend holds one sequence with its KV cache. `forward` appends tokens and returns,
for the last n of them, the logits of the next token and the last-layer hidden state
after the final norm (the judge's features). `truncate` rolls the cache back. Decoding,
mining and the judge never know which runtime computed the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch


@dataclass
class StepOutput:
    logits: torch.Tensor  # [n, vocab] float32: next-token logits after each of the last n tokens
    hidden: torch.Tensor  # [n, hidden] float32: final-norm state after each of the last n tokens


class CausalLM(Protocol):
    name: str
    vocab_size: int
    hidden_size: int
    max_context: int

    tokens: list[int]  # the token ids whose keys and values are in the cache, in order

    @property
    def cached_length(self) -> int:
        """len(tokens)."""

    def forward(self, token_ids: Sequence[int], n_logits: int | None = None) -> StepOutput:
        """Append `token_ids` to the cached sequence.

        `n_logits` limits the outputs to the last n positions (None: all); the
        vocabulary projection is a large share of a pass, and a prefill needs one row.
        """

    def truncate(self, length: int) -> None:
        """Keep the first `length` cached tokens, drop the rest."""

    def reset(self) -> None:
        """Forget the cached sequence."""

    def describe(self) -> dict:
        """What a judge must match to reuse features from this backend (runtime, dtype...)."""


def check_room(model: CausalLM, n_new: int) -> None:
    """Refuse an empty forward or one that would overflow the context."""
    if n_new < 1:
        raise ValueError("forward needs at least one token")
    if model.cached_length + n_new > model.max_context:
        raise ValueError(f"{model.name}: {model.cached_length + n_new} tokens exceed "
                         f"the context of {model.max_context}")
