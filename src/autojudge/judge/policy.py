"""The judge as an acceptance policy: keep a mismatching draft token it deems harmless.

Importing this module registers the judge's modes (judge:T, judge@R, with an optional
lookahead L) with the decoding stage's registry.
"""

from __future__ import annotations

import torch

from autojudge.decoding.modes import PolicySpec, register_policy
from autojudge.decoding.policies import Window, keep_with_lookahead, spelled
from autojudge.judge.model import Judge


class JudgePolicy:
    """Accept draft tokens from the left while each either matches the target's token or
    has P(important) below the threshold; the target's logits after an accepted token
    were computed with that token in place, so later comparisons stay valid.

    With `lookahead` L > 0, a mismatch the judge calls harmless is kept only if the next
    L draft tokens then match the target natively: the target agrees again after it, as
    in FLy (near the window's end, see keep_with_lookahead).
    """

    def __init__(self, judge: Judge, threshold: float, lookahead: int = 0):
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
                 "rules": window.rule_features if "rules" in self.judge.groups else None}
        # On a mixed pair a draft-only judge scores on the draft's device, not the target's.
        return (self.judge.prob_important(parts) < self.threshold).to(window.matches.device)

    def __call__(self, window: Window) -> int:
        if bool(window.matches.all()):
            return len(window.draft_tokens)
        return keep_with_lookahead(window.matches, self.harmless(window), self.lookahead)


register_policy(PolicySpec("judge", ("threshold", "lookahead"), (None, 0), JudgePolicy, needs_judge=True,
                           label="judge"))
