"""The judge's acceptance rule on vLLM's flattened batch; torch only, no vLLM.

vLLM verifies all requests of a step in one pass and flattens their draft tokens:
request r owns rows cu[r-1]..cu[r]-1 of `draft_ids`, of the target's logits at each
draft position and of the target's hidden state after reading each draft token. The
rule is autojudge's own (decoding.policies.JudgePolicy via keep_with_lookahead): from
the left, keep each draft token that matches the target's greedy token or that the
judge calls harmless (P(important) < threshold), with the optional lookahead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from autojudge.decoding.policies import keep_with_lookahead


@dataclass
class StepDecision:
    drafted: list[int]  # draft tokens per request
    matched: list[int]  # leading draft tokens equal to the target's own (what strict vLLM keeps)
    kept: list[int]  # leading draft tokens the judge's rule keeps (>= matched)
    judged: list[int]  # mismatches among the kept ones: tokens strict vLLM would have rejected

    def as_record(self) -> dict:
        return {"drafted": self.drafted, "matched": self.matched, "kept": self.kept, "judged": self.judged}


def decide(draft_ids: torch.Tensor, target_argmax: torch.Tensor, prob_important: torch.Tensor | None,
           num_draft_tokens: list[int], greedy: list[bool], threshold: float, lookahead: int,
           allowed: torch.Tensor | None = None) -> StepDecision:
    """Draft tokens to keep per request. `prob_important` is the judge's score per draft
    row (None when every draft token matches: the judge is not asked). `allowed` marks
    rows whose draft token vLLM's processing left possible (a grammar, bad words or
    allowed-token list sets the others' logits to -inf): the judge cannot keep those.
    Requests that are not greedy keep their strict count here; vLLM's sampler decides them."""
    matches = (draft_ids.long() == target_argmax.long()).cpu()
    harmless = (prob_important.cpu() < threshold) if prob_important is not None else torch.zeros_like(matches)
    if allowed is not None:
        harmless &= allowed.cpu()
    drafted, matched, kept, judged = [], [], [], []
    start = 0
    for n, is_greedy in zip(num_draft_tokens, greedy):
        rows = slice(start, start + n)
        start += n
        strict = _leading(matches[rows])
        keep = keep_with_lookahead(matches[rows], harmless[rows], lookahead) if is_greedy and n else strict
        drafted.append(n)
        matched.append(strict)
        kept.append(keep)
        judged.append(int((~matches[rows][:keep]).sum()))
    return StepDecision(drafted, matched, kept, judged)


def force_kept(target_logits: torch.Tensor, draft_ids: torch.Tensor, decision: StepDecision) -> None:
    """Make vLLM's greedy rejection kernel keep exactly decision.kept tokens per request:
    at each kept mismatch, lift the draft token's logit just above the row's maximum, so
    the target's argmax there is the draft token. Rows after the first rejected one are
    untouched (the kernel stops there and takes the target's own token), as are rows of
    requests with nothing judged. In place, on the sampler's float32 copy of the logits."""
    rows = []
    start = 0
    for n, strict, keep in zip(decision.drafted, decision.matched, decision.kept):
        if keep > strict:
            rows.extend(range(start + strict, start + keep))
        start += n
    if not rows:
        return
    index = torch.tensor(rows, device=target_logits.device)
    tokens = draft_ids.to(target_logits.device).long()[index]
    lifted = target_logits[index].max(dim=-1).values + 1.0
    target_logits[index, tokens] = torch.maximum(target_logits[index, tokens], lifted)


def _leading(mask: torch.Tensor) -> int:
    misses = (~mask).nonzero()
    return int(misses[0]) if len(misses) else len(mask)
