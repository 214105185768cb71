"""The static-cache backend (the GPU's CUDA-graph path), run eagerly on the CPU: rollbacks
that only move a write position, a mask that hides what lies past it, and a cache that
grows must still give the target's own greedy output. tests/test_gpu.py replays it from
CUDA graphs."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2ForCausalLM

from autojudge.decoding import TopK, generate
from autojudge.decoding.policies import JudgePolicy
from autojudge.models.static import StaticCacheLM, static_cache_unsupported
from tests.test_engine import hf_greedy, random_prompt
from tests.test_gpu import random_judge
from tests.tiny import backend, noisy_copy, tiny_config, tiny_model


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("window", [1, 3, 8, 16])
def test_exact_on_a_static_cache_equals_hf_greedy(seed, window):
    target_model = tiny_model(seed)
    draft_model = noisy_copy(target_model, seed + 10, scale=0.05)
    prompt = random_prompt(seed)
    expected = hf_greedy(target_model, prompt, 60)
    target, draft = StaticCacheLM(target_model, "t"), StaticCacheLM(draft_model, "d")
    result = generate(target, prompt, draft=draft, window=window, max_new_tokens=60)
    assert result.token_ids == expected
    assert generate(target, prompt, max_new_tokens=60).token_ids == expected
    if window > 1:
        assert 1.5 < result.stats.mean_accepted  # drafts were kept, and rolled back at mismatches
    assert result.stats.accept_histogram[0] > 0 or window == 1


def test_a_prompt_longer_than_any_graph_is_read_in_one_eager_pass():
    model = tiny_model(8)
    prompt = random_prompt(8, length=150)
    lm = StaticCacheLM(model, "t")
    out = lm.forward(prompt, n_logits=1)
    assert out.logits.shape == (1, 96) and lm.cached_length == 150
    assert generate(lm, prompt, max_new_tokens=30).token_ids == hf_greedy(model, prompt, 30)


def test_the_cache_grows_and_keeps_what_it_held():
    target_model = tiny_model(4)
    draft_model = noisy_copy(target_model, 14, scale=0.05)
    prompt = random_prompt(4)
    expected = hf_greedy(target_model, prompt, 200)
    target, draft = StaticCacheLM(target_model, "t", capacity=16), StaticCacheLM(draft_model, "d", capacity=16)
    assert target.capacity == 64
    result = generate(target, prompt, draft=draft, window=8, max_new_tokens=200)
    assert result.token_ids == expected
    assert target.capacity == 256  # 64 -> 128 -> 256, the model's whole context
    assert target.cached_length == len(prompt) + 199  # all but the last, pending token


def test_outputs_match_the_dynamic_cache_backend():
    model = tiny_model(5)
    prompt = random_prompt(5, length=30)
    static, dynamic = StaticCacheLM(model, "s"), backend(model, "d")
    for lm in (static, dynamic):
        lm.forward(prompt[:20], n_logits=1)
        lm.forward(prompt[20:25])
        lm.truncate(22)  # a rollback, then new tokens where the old ones were
    a, b = static.forward(prompt[25:30]), dynamic.forward(prompt[25:30])
    assert static.tokens == dynamic.tokens == prompt[:22] + prompt[25:30]
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a.hidden, b.hidden, rtol=1e-4, atol=1e-4)
    assert a.logits.dtype == a.hidden.dtype == torch.float32


def test_topk_and_judge_policies_give_the_dynamic_cache_backends_tokens():
    target_model = tiny_model(6)
    draft_model = noisy_copy(target_model, 56, scale=0.3)
    prompt = random_prompt(6)
    for policy in (TopK(4), JudgePolicy(random_judge(64, 64, 6), 0.5)):
        runs = []
        for make in (StaticCacheLM, backend):
            out = generate(make(target_model, "t"), prompt, draft=make(draft_model, "d"), policy=policy,
                           window=8, max_new_tokens=40)
            runs.append((out.token_ids, out.stats.accepted_mismatches))
        assert runs[0] == runs[1]
        assert runs[0][1] > 0  # the policy did accept mismatches


def test_errors():
    model = tiny_model(7)
    lm = StaticCacheLM(model, "t")
    lm.forward([1, 2, 3])
    with pytest.raises(ValueError, match="cannot truncate 3 cached tokens to 4"):
        lm.truncate(4)
    with pytest.raises(ValueError, match="exceed the context of 256"):
        lm.forward([1] * 254)
    assert lm.tokens == [1, 2, 3]  # the refused pass changed nothing
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        StaticCacheLM(model, "t", cuda_graphs=True)


def test_sliding_window_models_are_refused():
    settings = {k: v for k, v in tiny_config().to_dict().items() if k != "layer_types"}
    config = type(tiny_config())(**{**settings, "use_sliding_window": True, "sliding_window": 6,
                                    "max_window_layers": 1})
    model = Qwen2ForCausalLM(config).eval()
    assert "sliding_attention" in static_cache_unsupported(model)
    with pytest.raises(ValueError, match="only full attention"):
        StaticCacheLM(model, "t")
    assert static_cache_unsupported(tiny_model(0)) is None
