"""Speculative sampling keeps the target's distribution; the judge may overrule rejections."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from autojudge.decoding import Exact, TopK, generate
from autojudge.decoding.policies import JudgePolicy
from autojudge.decoding.sampling import Sampling
from autojudge.judge.model import Judge
from tests.tiny import backend, noisy_copy, tiny_model

PROMPT = [5, 17, 33, 2, 8, 61, 40]
TEMPERATURE = 2.0  # flat enough that many tokens are drawn, so the test sees the whole distribution


@pytest.fixture(scope="module")
def models():
    target = tiny_model(3)
    return target, noisy_copy(target, 4, scale=1.0)  # a draft that often disagrees: many rejections


def _two_tokens(models, n: int, draft: bool, top_p: float = 1.0) -> list[tuple[int, int]]:
    target_model, draft_model = models
    target, drafter = backend(target_model, "t"), backend(draft_model, "d")
    pairs = []
    for seed in range(n):
        out = generate(target, PROMPT, draft=drafter if draft else None, window=4, max_new_tokens=2,
                       sampling=Sampling(TEMPERATURE, top_p, seed))
        pairs.append(tuple(out.token_ids))
    return pairs


def _target_distribution(models, top_p: float = 1.0) -> torch.Tensor:
    target = backend(models[0], "t")
    return Sampling(TEMPERATURE, top_p, 0).probs(target.forward(PROMPT).logits[-1:])[0]


@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_speculative_sampling_draws_the_first_token_from_the_target_distribution(models, top_p):
    n = 3000
    p = _target_distribution(models, top_p)
    seen = torch.bincount(torch.tensor([first for first, _ in _two_tokens(models, n, True, top_p)]),
                          minlength=len(p)).float()
    common = p * n >= 5  # chi-square wants expected counts of 5 or more: pool the rest
    observed = torch.cat([seen[common], seen[~common].sum()[None]])
    expected = torch.cat([p[common], p[~common].sum()[None]]) * n
    keep = expected > 0
    assert seen[p == 0].sum() == 0  # never a token top-p cut away
    assert chisquare(observed[keep].numpy(), expected[keep].numpy()).pvalue > 1e-3
    assert common.sum() > 5  # the test compares a real spread, not one dominant token


def test_speculative_and_plain_sampling_agree_on_the_second_token_too(models):
    # The second token follows a first that was drafted or corrected: compare the pair
    # frequencies of both samplers on the most common first token (a two-sample test).
    n = 3000
    plain, speculative = _two_tokens(models, n, False), _two_tokens(models, n, True)
    first = max(set(f for f, _ in plain), key=[f for f, _ in plain].count)
    a = torch.bincount(torch.tensor([s for f, s in plain if f == first]), minlength=96).float()
    b = torch.bincount(torch.tensor([s for f, s in speculative if f == first]), minlength=96).float()
    both = (a + b) >= 10
    table = torch.stack([torch.cat([a[both], a[~both].sum()[None]]), torch.cat([b[both], b[~both].sum()[None]])])
    table = table[:, table.sum(0) > 0]
    from scipy.stats import chi2_contingency
    assert chi2_contingency(table.numpy()).pvalue > 1e-3


def test_the_same_seed_gives_the_same_text_and_lossy_rules_are_refused(models):
    target_model, draft_model = models
    runs = [generate(backend(target_model, "t"), PROMPT, draft=backend(draft_model, "d"), window=4,
                     max_new_tokens=24, sampling=Sampling(1.0, seed=7)).token_ids for _ in range(2)]
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match="sampling goes with exact and judge decoding, not topk:4"):
        generate(backend(target_model, "t"), PROMPT, draft=backend(draft_model, "d"), policy=TopK(4),
                 sampling=Sampling(1.0, seed=0))
    with pytest.raises(ValueError, match="temperature > 0"):
        Sampling(0.0)


def test_a_judge_that_calls_everything_harmless_keeps_every_sampled_draft_token(models):
    target_model, draft_model = models
    n = 128
    meta = {"features": "hidden", "hidden": {"draft": 64, "target": 64}, "thresholds": []}
    judge = Judge(torch.zeros(n), torch.ones(n), torch.zeros(n), 0.0, meta)  # P(important) = 0.5
    out = {}
    policies = (("exact", Exact()), ("lenient", JudgePolicy(judge, 0.51)), ("strict", JudgePolicy(judge, 0.5)))
    for name, policy in policies:
        out[name] = generate(backend(target_model, "t"), PROMPT, draft=backend(draft_model, "d"), policy=policy,
                             window=4, max_new_tokens=32, sampling=Sampling(1.0, seed=3))
    lenient = out["lenient"].stats
    assert sum(n * c for n, c in enumerate(lenient.accept_histogram)) == lenient.drafted_tokens
    assert lenient.accepted_mismatches > 0
    # A judge that overrules nothing is speculative sampling itself, draw for draw.
    assert out["strict"].token_ids == out["exact"].token_ids and out["strict"].stats.accepted_mismatches == 0
