"""The judge as an acceptance policy: keep a mismatching draft token it deems harmless."""

from __future__ import annotations

from autojudge.decoding.policies import Window, leading_true
from autojudge.judge.model import Judge


class JudgePolicy:
    """Accept draft tokens from the left while each either matches the target's token or
    has P(important) below the threshold; the target's logits after an accepted token
    were computed with that token in place, so later comparisons stay valid."""

    def __init__(self, judge: Judge, threshold: float):
        self.judge = judge
        self.threshold = threshold
        # The draft's hidden states cost one more draft pass per cycle: only ask for them
        # when the judge reads them. Its logits are free.
        self.needs_hidden = "draft" in judge.groups
        self.needs_draft_logits = "logits" in judge.groups
        self.name = f"judge:{threshold:g}"

    def __call__(self, window: Window) -> int:
        if bool(window.matches.all()):
            return len(window.draft_tokens)
        parts = {"draft": window.draft_hidden, "target": window.target_hidden,
                 "logits": window.logit_features if self.needs_draft_logits else None}
        p_important = self.judge.prob_important(parts)
        # On a mixed pair a draft-only judge scores on the draft's device, not the target's.
        harmless = (p_important < self.threshold).to(window.matches.device)
        return leading_true(window.matches | harmless)
