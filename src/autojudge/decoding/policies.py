"""Acceptance policies: the one place that decides how many draft tokens to keep.

The decoding loop hands every policy the same `Window` and never changes when a
policy is added: exact (lossless), Top-K (the paper's naive lossy baseline), FLy and
typical acceptance (training-free rivals) and the learned judge (`JudgePolicy`, given a
trained judge from autojudge.judge) are each a few lines behind `__call__`. Their mode
names live in decoding/modes.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import torch

from autojudge.decoding.features import logit_features, rule_features, target_logit_features, top_entropy


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

    @cached_property
    def target_logit_features(self) -> torch.Tensor:
        """[k, len(TARGET_LOGIT_FEATURES)]: the target's columns of `logit_features`, which
        any drafter gives (a lookup too)."""
        k = len(self.draft_tokens)
        return target_logit_features(self.target_logits[:k], self.draft_tokens)

    @cached_property
    def rule_features(self) -> torch.Tensor:
        """[k, len(RULE_FEATURES)]: what FLy reads at each position (autojudge.decoding.features)."""
        return rule_features(self.target_logits[:len(self.draft_tokens)], self.matches)


class AcceptancePolicy(Protocol):
    name: str
    needs_hidden: bool  # ask the loop for draft_hidden (one extra draft pass per cycle)
    needs_draft_logits: bool  # ask the loop for draft_logits (free: the draft computed them)

    def __call__(self, window: Window) -> int:
        """How many draft tokens, from the left, to accept (0..k)."""


def number(value: int | float) -> str:
    """A mode argument as written in a mode's name: 4 (an int), 0.3 or 1.0 (a float, exactly)."""
    return str(value) if isinstance(value, int) else repr(float(value))


def spelled(name: str, values: tuple, defaults: tuple, sep: str = ":") -> str:
    """A mode's one canonical name: trailing arguments equal to their defaults left out."""
    values = list(values)
    while values and defaults[len(values) - 1] is not None and float(values[-1]) == float(defaults[len(values) - 1]):
        values.pop()
    return name + (sep + ":".join(number(v) for v in values) if values else "")


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


def keep_with_lookahead(matches: torch.Tensor, harmless: torch.Tensor, lookahead: int,
                        kept_anyway: torch.Tensor | None = None) -> int:
    """Draft tokens to keep: from the left, each either matches the target's token or is
    a mismatch deemed `harmless` that the next `lookahead` draft tokens then match
    natively (the target read them with the mismatch in place, so no extra pass), or
    one of `kept_anyway` (mismatches another rule keeps with no lookahead).

    Near the window's end a mismatch with fewer than `lookahead` draft tokens after it
    cannot show that the target agrees again: it is not kept (the target's own token
    is taken, and the next cycle goes on from there). With lookahead 0 this is
    "matching or harmless".
    """
    k = len(matches)
    free = matches if kept_anyway is None else matches | kept_anyway
    if lookahead == 0:
        return leading_true(free | harmless)
    free_list, match_list, harmless_list = free.tolist(), matches.tolist(), harmless.tolist()
    for i in range(k):
        if free_list[i]:
            continue
        if not harmless_list[i] or i + lookahead >= k or not all(match_list[i + 1:i + 1 + lookahead]):
            return i
    return k


class FLy:
    """FLy (training-free): keep a mismatching draft token where the target is unsure,
    the entropy of its top-3 probabilities (renormalised) above `entropy`, and the next
    `lookahead` draft tokens then match the target natively (see keep_with_lookahead)."""

    needs_hidden = False
    needs_draft_logits = False

    def __init__(self, entropy: float = 0.3, lookahead: int = 6, top: int = 3):
        if entropy < 0 or lookahead < 0 or int(lookahead) != lookahead:
            raise ValueError(f"FLy needs an entropy >= 0 and a whole lookahead >= 0, got {entropy}, {lookahead}")
        self.entropy, self.lookahead, self.top = entropy, int(lookahead), top
        self.name = spelled("fly", (entropy, lookahead), (0.3, 6))

    def __call__(self, window: Window) -> int:
        k = len(window.draft_tokens)
        unsure = top_entropy(window.target_logits[:k], self.top) > self.entropy
        return keep_with_lookahead(window.matches, unsure, self.lookahead)


class Typical:
    """Typical acceptance (Medusa): keep a draft token while the target's probability of
    it exceeds min(epsilon, alpha * exp(-entropy of the target's distribution))."""

    needs_hidden = False
    needs_draft_logits = False

    def __init__(self, epsilon: float = 0.09, alpha: float = 0.3):
        if not (0 < epsilon <= 1 and alpha > 0):
            raise ValueError(f"typical acceptance needs 0 < epsilon <= 1 and alpha > 0, got {epsilon}, {alpha}")
        self.epsilon, self.alpha = epsilon, alpha
        self.name = spelled("typical", (epsilon, alpha), (0.09, 0.3))

    def __call__(self, window: Window) -> int:
        k = len(window.draft_tokens)
        logp = torch.log_softmax(window.target_logits[:k].float(), dim=-1)
        entropy = -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(dim=-1)
        p_draft = logp.gather(1, window.draft_tokens[:, None].to(logp.device)).squeeze(1).exp()
        bar = torch.clamp(self.alpha * torch.exp(-entropy), max=self.epsilon)
        return leading_true(window.matches | (p_draft > bar))


class JudgePolicy:
    """Accept draft tokens from the left while each either matches the target's token or
    has P(important) below the threshold; the target's logits after an accepted token
    were computed with that token in place, so later comparisons stay valid.

    With `lookahead` L > 0, a mismatch the judge calls harmless is kept only if the next
    L draft tokens then match the target natively: the target agrees again after it, as
    in FLy (near the window's end, see keep_with_lookahead).

    `judge` is any object with `groups` (the feature groups it reads: "draft", "target",
    "logits", "target-logits", "rules") and `prob_important(parts)` ([k] probabilities from those parts),
    as autojudge.judge.model.Judge has: decoding needs no more of it, and so imports
    nothing from the stage that trains it.
    """

    def __init__(self, judge, threshold: float, lookahead: int = 0):
        if lookahead < 0 or int(lookahead) != lookahead:
            raise ValueError(f"the judge's lookahead must be a whole number >= 0, got {lookahead}")
        self.judge = judge
        self.threshold = threshold
        self.lookahead = int(lookahead)
        # The draft's hidden states cost one more draft pass per cycle: only ask for them
        # when the judge reads them. Its logits are free.
        self.needs_hidden = "draft" in judge.groups
        self.needs_draft_logits = "logits" in judge.groups
        self.name = spelled("judge", (threshold, lookahead), (None, 0))

    def harmless(self, window: Window) -> torch.Tensor:
        """[k] bool: the judge's P(important) is below the threshold (with sampling, such a
        draft token is kept even where speculative sampling rejects it)."""
        parts = {"draft": window.draft_hidden, "target": window.target_hidden,
                 "logits": window.logit_features if self.needs_draft_logits else None,
                 "target-logits": window.target_logit_features if "target-logits" in self.judge.groups else None,
                 "rules": window.rule_features if "rules" in self.judge.groups else None}
        # On a mixed pair a draft-only judge scores on the draft's device, not the target's.
        return (self.judge.prob_important(parts) < self.threshold).to(window.matches.device)

    def __call__(self, window: Window) -> int:
        if bool(window.matches.all()):
            return len(window.draft_tokens)
        return keep_with_lookahead(window.matches, self.harmless(window), self.lookahead)


class JudgeOrFLy:
    """The judge and FLy together: keep a mismatch the judge calls harmless, or one FLy
    keeps (the target unsure there, and the next `lookahead` draft tokens matching). The
    judge's single-swap labels and FLy's "the target agrees again" see different
    mismatches (docs/judge/README.md); this keeps what either would."""

    def __init__(self, judge, threshold: float, entropy: float = 0.3, lookahead: int = 6):
        self.by_judge = JudgePolicy(judge, threshold)
        self.by_fly = FLy(entropy, lookahead)
        self.judge, self.threshold = judge, threshold
        self.needs_hidden, self.needs_draft_logits = self.by_judge.needs_hidden, self.by_judge.needs_draft_logits
        self.name = spelled("judge-or-fly", (threshold, entropy, lookahead), (None, 0.3, 6))

    def harmless(self, window: Window) -> torch.Tensor:
        """[k] bool: the mismatches the judge keeps whatever follows them (with sampling,
        kept where speculative sampling rejects them, as JudgePolicy's are)."""
        return self.by_judge.harmless(window)

    def __call__(self, window: Window) -> int:
        if bool(window.matches.all()):
            return len(window.draft_tokens)
        k = len(window.draft_tokens)
        unsure = top_entropy(window.target_logits[:k], self.by_fly.top) > self.by_fly.entropy
        return keep_with_lookahead(window.matches, unsure, self.by_fly.lookahead, kept_anyway=self.harmless(window))

