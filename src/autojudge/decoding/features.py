"""Logit features of a mismatch: how sure each model was, from numbers decoding has anyway.

At a draft token's position the target's next-token distribution (its verification
logits) and the draft's (the logits it drafted from) say how contested the choice
was: a draft token the target ranks second with nearly its own probability is a
different thing from one it ranks thousandth. Mining computes these from its feature
passes, decoding from the passes it runs anyway, both through `logit_features`.
"""

from __future__ import annotations

import torch

LOGIT_FEATURES = (
    "target_logp_draft",  # the target's log-probability of the draft's token
    "target_logp_own",  # ... of its own greedy token
    "target_log1p_rank_draft",  # log(1 + rank) of the draft's token among the target's (0: its top)
    "target_entropy",  # entropy of the target's distribution, in nats
    "draft_logp_draft",  # the draft's log-probability of its own token
    "draft_entropy",  # entropy of the draft's distribution
)
# The target's columns of LOGIT_FEATURES: what a judge can read when the draft is a lookup,
# which has no logits (the feature group "target-logits").
TARGET_LOGIT_FEATURES = LOGIT_FEATURES[:4]


def logit_features(target_logits: torch.Tensor, draft_logits: torch.Tensor,
                   draft_tokens: torch.Tensor) -> torch.Tensor:
    """[n, len(LOGIT_FEATURES)] float32 for n positions.

    target_logits[i] and draft_logits[i] are the two models' next-token logits at the
    position where the draft proposed draft_tokens[i] (the same vocabulary width).
    """
    tokens = draft_tokens.to(target_logits.device).long()[:, None]
    draft_logp = torch.log_softmax(draft_logits.float().to(target_logits.device), dim=-1)
    return torch.cat([target_logit_features(target_logits, draft_tokens), draft_logp.gather(1, tokens),
                      _entropy(draft_logp)], dim=-1)


def target_logit_features(target_logits: torch.Tensor, draft_tokens: torch.Tensor) -> torch.Tensor:
    """[n, len(TARGET_LOGIT_FEATURES)]: the columns of `logit_features` that only the
    target's logits and the draft's tokens give."""
    tokens = draft_tokens.to(target_logits.device).long()[:, None]
    target_logp = torch.log_softmax(target_logits.float(), dim=-1)
    target_on_draft = target_logp.gather(1, tokens)
    rank = (target_logp > target_on_draft).sum(dim=-1, keepdim=True).float()
    return torch.cat([target_on_draft, target_logp.max(dim=-1, keepdim=True).values, torch.log1p(rank),
                      _entropy(target_logp)], dim=-1)


def _entropy(logp: torch.Tensor) -> torch.Tensor:
    # exp(-inf) * -inf is nan: tokens of zero probability contribute nothing.
    return -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(dim=-1, keepdim=True)


# What the training-free rules read at a mismatch, as judge features too: FLy's
# uncertainty (the entropy of the target's top 3, renormalised) and its agreement test
# (how many of the following draft tokens the target then matches natively).
RULE_FEATURES = (
    "target_top3_entropy",  # entropy (nats) of the target's 3 most likely tokens, renormalised
    "lookahead",  # draft tokens right after this one that the target matches, at most LOOKAHEAD_CAP
)
LOOKAHEAD_CAP = 8


def top_entropy(logits: torch.Tensor, top: int) -> torch.Tensor:
    """[n] entropy (nats) of each row's `top` most likely tokens, renormalised."""
    logp = torch.log_softmax(logits.float().topk(top, dim=-1).values, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def rule_features(target_logits: torch.Tensor, matches: torch.Tensor) -> torch.Tensor:
    """[n, len(RULE_FEATURES)] float32 for n consecutive draft positions.

    target_logits[i] is the target's next-token logits where draft token i was proposed;
    matches[i] says whether draft token i equals the target's own token there. The
    lookahead of position i counts the matches from i + 1 on, up to the first miss, the
    window's end or LOOKAHEAD_CAP: near a window's end it can only see what was drafted.
    """
    hits = matches.to(torch.bool).tolist()
    lookahead = []
    for i in range(len(hits)):
        run = 0
        while run < LOOKAHEAD_CAP and i + 1 + run < len(hits) and hits[i + 1 + run]:
            run += 1
        lookahead.append(float(run))
    entropy = top_entropy(target_logits, 3).cpu()
    return torch.stack([entropy, torch.tensor(lookahead)], dim=-1)
