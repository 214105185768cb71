"""Acceptance policies: the one place that decides how many draft tokens to keep.

The decoding loop hands every policy the same `Window` and never changes when a
policy is added: exact (lossless), Top-K (the paper's naive lossy baseline) and,
later, the learned judge are all a few lines behind `__call__`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import torch

from autojudge.decoding.features import logit_features


@dataclass
class Window:
    """One verification cycle, aligned on the k draft tokens.

    draft_tokens[i] sits at the position the target predicted with target_logits[i];
    target_logits[k] is the free bonus prediction after the whole window. The hidden
    states are taken *after reading* draft token i, i.e. with the draft's token in
    place, which is where the judge's features live (METHOD 2b).
    """

    draft_tokens: torch.Tensor  # [k] long
    target_logits: torch.Tensor  # [k + 1, vocab]
    target_hidden: torch.Tensor  # [k, target hidden]
    draft_hidden: torch.Tensor | None  # [k, draft hidden]; only for policies that need it
    draft_logits: torch.Tensor | None = None  # [k, vocab]: the draft's logits for each of its tokens

    @cached_property
    def target_tokens(self) -> torch.Tensor:
        return self.target_logits.argmax(dim=-1)

    @cached_property
    def matches(self) -> torch.Tensor:
        return self.draft_tokens == self.target_tokens[:-1]

    @cached_property
    def logit_features(self) -> torch.Tensor:
        """[k, len(LOGIT_FEATURES)]; needs `draft_logits` (see autojudge.decoding.features)."""
        if self.draft_logits is None:
            raise ValueError("logit features need the draft's logits; this drafter gives none")
        k = len(self.draft_tokens)
        return logit_features(self.target_logits[:k], self.draft_logits, self.draft_tokens)


class AcceptancePolicy(Protocol):
    name: str
    needs_hidden: bool  # ask the loop for draft_hidden (one extra draft pass per cycle)
    needs_draft_logits: bool  # ask the loop for draft_logits (free: the draft computed them)

    def __call__(self, window: Window) -> int:
        """How many draft tokens, from the left, to accept (0..k)."""


def leading_true(mask: torch.Tensor) -> int:
    """Length of the run of True at the start of a 1-D bool tensor."""
    misses = (~mask).nonzero()
    return int(misses[0]) if len(misses) else len(mask)


class Exact:
    """Lossless: keep draft tokens while they equal the target's argmax."""

    name = "exact"
    needs_hidden = False
    needs_draft_logits = False

    def __call__(self, window: Window) -> int:
        return leading_true(window.matches)


class TopK:
    """Accept a draft token while it is among the target's K most likely tokens."""

    needs_hidden = False
    needs_draft_logits = False

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"top-k needs k >= 1, got {k}")
        self.k = k
        self.name = f"topk:{k}"

    def __call__(self, window: Window) -> int:
        k_draft = len(window.draft_tokens)
        top = window.target_logits[:k_draft].topk(self.k, dim=-1).indices
        return leading_true((top == window.draft_tokens[:, None]).any(dim=-1))


def policy_from_name(spec: str) -> AcceptancePolicy:
    """"exact" or "topk:K" (the judge adds "judge:..." later)."""
    name, _, arg = spec.partition(":")
    if name == "exact" and not arg:
        return Exact()
    if name == "topk":
        try:
            return TopK(int(arg or 4))
        except ValueError:
            raise ValueError(f"bad top-k policy {spec!r}; write topk:K with an integer K") from None
    raise ValueError(f"unknown acceptance policy {spec!r}; choose exact or topk:K")
