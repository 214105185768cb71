"""Sampling, and speculative sampling (Leviathan et al. 2023), which keeps its distribution.

With temperature > 0 the draft samples its tokens from q (its distribution after the
temperature and top-p), the target computes p over the window in one pass, and draft
token x at position i is kept with probability min(1, p(x) / q(x)); at the first
rejection the next token is drawn from max(0, p - q), renormalised, and when all are
kept the bonus token is drawn from p after the window. Each emitted token is then
distributed exactly as if drawn from the target alone (tested by a chi-square test).

Judge decoding with temperature > 0 (as in Judge Decoding): a draft token the rule above
rejects is kept anyway when the judge calls it harmless (P(important) below its
threshold); that is the lossy part, as with greedy decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Sampling:
    temperature: float
    top_p: float = 1.0
    seed: int | None = None
    generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"sampling needs a temperature > 0, got {self.temperature}; 0 is greedy decoding")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")
        self.generator = torch.Generator()
        if self.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(self.seed)

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """[n, vocab] probabilities after the temperature and the top-p cut, in float32 on the CPU."""
        p = torch.softmax(logits.float().cpu() / self.temperature, dim=-1)
        if self.top_p < 1:
            ordered, order = p.sort(dim=-1, descending=True)
            # Keep the smallest set whose mass reaches top_p: a token stays while the mass before it is short.
            keep = (ordered.cumsum(dim=-1) - ordered) < self.top_p
            p = torch.zeros_like(p).scatter(-1, order, ordered * keep)
            p = p / p.sum(dim=-1, keepdim=True)
        return p

    def draw(self, p: torch.Tensor) -> int:
        """One token from the probability row `p`."""
        return int(torch.multinomial(p, 1, generator=self.generator))

    def uniform(self) -> float:
        return float(torch.rand((), generator=self.generator))


def speculative_sample(sampling: Sampling, target_logits: torch.Tensor, draft_logits: torch.Tensor | None,
                       draft_tokens: list[int], harmless: torch.Tensor | None = None) -> tuple[int, int, int]:
    """(draft tokens kept, the next token, how many of the kept ones the judge overruled).

    target_logits: [k + 1, vocab] over the window; draft_logits: [k, vocab], the logits
    each draft token was sampled from; `harmless` [k] bool: the judge's verdict.
    """
    p = sampling.probs(target_logits)
    k = len(draft_tokens)
    if k == 0:
        return 0, sampling.draw(p[0]), 0
    q = sampling.probs(draft_logits)
    overruled = 0
    for i, token in enumerate(draft_tokens):
        ratio = float(p[i, token]) / max(float(q[i, token]), 1e-30)
        if sampling.uniform() < min(1.0, ratio):
            continue
        if harmless is not None and bool(harmless[i]):
            overruled += 1
            continue
        residual = torch.clamp(p[i] - q[i], min=0)
        total = float(residual.sum())
        # p == q on every token: nothing left to correct toward, p itself is the residual.
        return i, sampling.draw(residual / total if total > 0 else p[i]), overruled
    return k, sampling.draw(p[k]), overruled
