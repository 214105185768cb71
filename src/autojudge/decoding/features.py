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


def logit_features(target_logits: torch.Tensor, draft_logits: torch.Tensor,
                   draft_tokens: torch.Tensor) -> torch.Tensor:
    """[n, len(LOGIT_FEATURES)] float32 for n positions.

    target_logits[i] and draft_logits[i] are the two models' next-token logits at the
    position where the draft proposed draft_tokens[i] (the same vocabulary width).
    """
    tokens = draft_tokens.to(target_logits.device).long()[:, None]
    target_logp = torch.log_softmax(target_logits.float(), dim=-1)
    draft_logp = torch.log_softmax(draft_logits.float().to(target_logits.device), dim=-1)
    target_on_draft = target_logp.gather(1, tokens)
    rank = (target_logp > target_on_draft).sum(dim=-1, keepdim=True).float()
    columns = [target_on_draft, target_logp.max(dim=-1, keepdim=True).values, torch.log1p(rank),
               _entropy(target_logp), draft_logp.gather(1, tokens), _entropy(draft_logp)]
    return torch.cat(columns, dim=-1)


def _entropy(logp: torch.Tensor) -> torch.Tensor:
    # exp(-inf) * -inf is nan: tokens of zero probability contribute nothing.
    return -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(dim=-1, keepdim=True)
