"""Exact speculative decoding must equal the target's own greedy output, token for token."""

from __future__ import annotations

import pytest
import torch

from autojudge.decoding import Exact, TopK, generate
from autojudge.errors import ModelLoadError, PromptError
from tests.tiny import VOCAB, backend, noisy_copy, tiny_model


def hf_greedy(model, prompt, max_new_tokens, eos=None):
    out = model.generate(
        torch.tensor([prompt]), do_sample=False, max_new_tokens=max_new_tokens,
        eos_token_id=eos, pad_token_id=0, attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
    )
    return out[0, len(prompt):].tolist()


def random_prompt(seed: int, length: int = 12) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, VOCAB, (length,), generator=generator).tolist()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("window", [1, 2, 3, 5, 8, 16])
def test_exact_equals_hf_greedy(seed, window):
    target_model = tiny_model(seed)
    draft_model = noisy_copy(target_model, seed + 100, scale=0.3 if seed % 2 else 1.0)
    prompt = random_prompt(seed)
    expected = hf_greedy(target_model, prompt, 40)
    result = generate(backend(target_model, "t"), prompt, draft=backend(draft_model, "d"),
                      window=window, max_new_tokens=40)
    assert result.token_ids == expected
    assert result.stop_reason == "length"
    stats = result.stats
    assert stats.new_tokens == 40
    assert sum(stats.accept_histogram) == stats.cycles
    assert stats.target_forwards == stats.cycles + 1  # one prefill
    assert stats.accepted_mismatches == 0


def test_acceptance_actually_happens_with_a_good_draft():
    target_model = tiny_model(7)
    draft_model = noisy_copy(target_model, 8, scale=0.01)
    result = generate(backend(target_model, "t"), random_prompt(7), draft=backend(draft_model, "d"),
                      window=8, max_new_tokens=64)
    assert result.stats.mean_accepted > 2.0  # the test above would pass vacuously otherwise


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("window", [4, 16])
def test_exact_with_onednn_equals_hf_greedy(seed, window):
    target_model, draft_model = tiny_model(seed, hidden=128), None
    draft_model = noisy_copy(target_model, seed + 50, scale=0.2)
    target, draft = backend(target_model, "t", onednn=True), backend(draft_model, "d", onednn=True)
    prompt = random_prompt(seed + 20)
    expected = hf_greedy(target_model, prompt, 48)
    assert generate(target, prompt, draft=draft, window=window, max_new_tokens=48).token_ids == expected


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("window", [1, 4, 16])
def test_eos_inside_the_window_stops_like_generate(seed, window):
    target_model = tiny_model(seed)
    draft_model = noisy_copy(target_model, seed + 200, scale=0.1)
    prompt = random_prompt(seed + 10)
    free_run = hf_greedy(target_model, prompt, 30)
    eos = free_run[9]  # a token the target really emits, mid-window for most windows
    expected = hf_greedy(target_model, prompt, 30, eos=eos)
    result = generate(backend(target_model, "t"), prompt, draft=backend(draft_model, "d"),
                      window=window, max_new_tokens=30, stop_ids=frozenset({eos}))
    assert result.token_ids == expected
    assert result.token_ids[-1] == eos and result.stop_reason == "eos"


@pytest.mark.parametrize("max_new_tokens", [1, 2, 5, 13, 17])
def test_max_new_tokens_ending_inside_the_window(max_new_tokens):
    target_model = tiny_model(3)
    draft_model = noisy_copy(target_model, 4, scale=0.05)
    prompt = random_prompt(3)
    expected = hf_greedy(target_model, prompt, max_new_tokens)
    result = generate(backend(target_model, "t"), prompt, draft=backend(draft_model, "d"),
                      window=8, max_new_tokens=max_new_tokens)
    assert result.token_ids == expected
    assert len(result.token_ids) == max_new_tokens


def test_target_only_is_plain_greedy_and_one_token_per_pass():
    target_model = tiny_model(11)
    prompt = random_prompt(11)
    result = generate(backend(target_model, "t"), prompt, max_new_tokens=20)
    assert result.token_ids == hf_greedy(target_model, prompt, 20)
    assert result.stats.cycles == 20 and result.stats.mean_accepted == 1.0


def test_one_token_prompt():
    target_model = tiny_model(12)
    draft_model = noisy_copy(target_model, 13, scale=0.1)
    expected = hf_greedy(target_model, [5], 10)
    got = generate(backend(target_model, "t"), [5], draft=backend(draft_model, "d"), max_new_tokens=10)
    assert got.token_ids == expected


def test_topk_accepts_more_than_exact_and_k1_is_exact():
    target_model = tiny_model(21)
    draft_model = noisy_copy(target_model, 22, scale=1.0)
    target, draft = backend(target_model, "t"), backend(draft_model, "d")
    prompt = random_prompt(21)
    exact = generate(target, prompt, draft=draft, policy=Exact(), window=8, max_new_tokens=48)
    top1 = generate(target, prompt, draft=draft, policy=TopK(1), window=8, max_new_tokens=48)
    top8 = generate(target, prompt, draft=draft, policy=TopK(8), window=8, max_new_tokens=48)
    assert top1.token_ids == exact.token_ids
    assert top8.stats.mean_accepted > exact.stats.mean_accepted
    assert top8.stats.accepted_mismatches > 0


def test_prompt_errors():
    target = backend(tiny_model(0), "t")
    with pytest.raises(PromptError, match="empty"):
        generate(target, [], max_new_tokens=4)
    with pytest.raises(PromptError, match="context holds 256"):
        generate(target, [1] * 256, max_new_tokens=4)


def test_generation_stops_at_the_context_limit():
    target_model = tiny_model(5)
    draft_model = noisy_copy(target_model, 6, scale=0.05)
    result = generate(backend(target_model, "t"), [1] * 250, draft=backend(draft_model, "d"),
                      window=8, max_new_tokens=100)
    assert len(result.token_ids) == 6 and result.stop_reason == "context"


def test_lookup_drafter_is_exact_and_nearly_free_on_a_known_continuation():
    from autojudge.decoding.drafters import LookupDrafter
    target_model = tiny_model(31)
    prompt = random_prompt(31)
    expected = hf_greedy(target_model, prompt, 40)
    target = backend(target_model, "t")
    # With the answer itself as reference, every window is accepted whole.
    known = generate(target, prompt, drafter=LookupDrafter(prompt + expected, start_length=8), window=8,
                     max_new_tokens=40)
    assert known.token_ids == expected
    assert known.stats.mean_accepted == pytest.approx(40 / 5)
    # Starting from 1 draft token, the proposal doubles after each full acceptance:
    # 1+1, 2+1, 4+1, 8+1 three times, then the last 2+1 that fit in 40 tokens.
    growing = generate(target, prompt, drafter=LookupDrafter(prompt + expected, start_length=1), window=8,
                       max_new_tokens=40)
    assert growing.token_ids == expected
    assert growing.stats.accept_histogram[1:] == [1, 2, 0, 1, 0, 0, 0, 3]
    # A reference that disagrees halfway still gives the exact output.
    wrong = expected[:20] + [(t + 1) % VOCAB for t in expected[20:]]
    partly = generate(target, prompt, drafter=LookupDrafter(prompt + wrong), window=8, max_new_tokens=40)
    assert partly.token_ids == expected and partly.stats.draft_forwards == 0


def test_shared_prefix_is_reused_not_recomputed():
    target_model = tiny_model(41)
    target = backend(target_model, "t")
    prompt = random_prompt(41, length=30)
    first = generate(target, prompt, max_new_tokens=5)
    assert first.stats.target_forwards == 1 + 5
    longer = prompt + first.token_ids
    second = generate(target, longer, max_new_tokens=5)
    # The cache already holds the prompt and 4 generated tokens: one more to read, no prefill.
    assert second.stats.target_forwards == 5
    assert second.token_ids == hf_greedy(target_model, longer, 5)


def test_decoder_and_head_called_apart_give_the_whole_models_outputs():
    model = tiny_model(2)
    apart, whole = backend(model, "apart"), backend(model, "whole")
    assert apart.split
    whole.split = False
    for chunk, n_logits in (([5, 9, 11], None), ([20], 1), ([33, 34, 35, 36], 2)):
        a, b = apart.forward(chunk, n_logits=n_logits), whole.forward(chunk, n_logits=n_logits)
        assert torch.equal(a.logits, b.logits) and torch.equal(a.hidden, b.hidden)
        assert len(a.logits) == (n_logits or len(chunk))


def test_a_middle_feature_layer_is_that_layers_output_and_leaves_the_logits_alone():
    model = tiny_model(3, layers=3)
    tokens = [5, 9, 11, 20]
    with torch.inference_mode():
        reference = model(torch.tensor([tokens]), output_hidden_states=True)
    for split in (True, False):  # the decoder and head called apart, and the whole model
        lm = backend(model, "layered")
        lm.split = split
        lm.read_features_from(2)
        first, second = lm.forward(tokens[:3]), lm.forward(tokens[3:], n_logits=1)
        hidden = torch.cat([first.hidden, second.hidden])
        assert torch.allclose(hidden, reference.hidden_states[2][0], rtol=1e-4, atol=1e-3)
        assert not torch.allclose(first.hidden, reference.hidden_states[-1][0, :3], atol=1e-2)
        assert torch.allclose(torch.cat([first.logits, second.logits]), reference.logits[0], atol=1e-4)
        assert lm.describe()["feature_layer"] == 2
        lm.read_features_from(None)  # back to the final norm, the hook removed
        assert lm.cached_length == 0
        assert torch.allclose(lm.forward(tokens).hidden, reference.hidden_states[-1][0], rtol=1e-4, atol=1e-3)
        assert "feature_layer" not in lm.describe()
    for bad in (0, 3):
        with pytest.raises(ModelLoadError, match=f"feature layer {bad} is not a middle layer of its 3"):
            backend(model, "layered").read_features_from(bad)


def test_a_model_with_its_own_logit_processing_keeps_the_general_path():
    from transformers import Qwen2ForCausalLM

    class ScaledLogits(Qwen2ForCausalLM):  # like Gemma's soft-capping or Cohere's logit scale
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 2
            return out

    model = tiny_model(2)
    scaled = ScaledLogits(model.config).eval()
    scaled.load_state_dict(model.state_dict())
    lm = backend(scaled, "scaled")
    assert not lm.split
    with torch.no_grad():
        expected = scaled(torch.tensor([[5, 9, 11]])).logits[0]
    assert torch.allclose(lm.forward([5, 9, 11]).logits, expected)


def test_a_model_without_an_output_layer_is_refused_with_its_name():
    from transformers import Qwen2Model

    from tests.tiny import tiny_config

    with pytest.raises(ModelLoadError, match="headless: Qwen2Model has no output layer"):
        backend(Qwen2Model(tiny_config()).eval(), "headless")


def test_pass_costs_are_timed_per_size_and_leave_the_context_cached():
    from autojudge.evaluation.costmodel import measure_pass_costs
    lm = backend(tiny_model(1), "t")
    costs = measure_pass_costs(lm, context=20, sizes=(1, 4), repeats=2)
    assert set(costs.seconds) == {1, 4} and all(s > 0 for s in costs.seconds.values())
    assert lm.cached_length == 20
    assert costs(2) == pytest.approx(costs(1) + (costs(4) - costs(1)) / 3)


def test_a_target_with_a_padded_head_decodes_over_the_shared_vocabulary(tmp_path, tiny_draft_dir, tiny_target_dir):
    """Siblings may pad the output layer differently (Qwen2.5: 151936 logits up to 3B,
    152064 at 7B): padding ids are cut off, so exact decoding stays the target's own."""
    from autojudge.decoding.modes import DecodingOptions, decode
    from autojudge.models.loading import load_pair
    from autojudge.models.runtime import RuntimeOptions
    from tests.tiny_dirs import save_resized_head

    padded = save_resized_head(tmp_path / "padded", tiny_target_dir, VOCAB + 32)
    torch_default = RuntimeOptions(backend="torch", linear="default")
    pair = load_pair(str(tiny_draft_dir), str(padded), torch_default)
    assert pair.draft.vocab_size == pair.target.vocab_size == VOCAB
    reference = load_pair(None, str(tiny_target_dir), torch_default)
    ids = pair.tokenizer("the cat sat on the mat")["input_ids"]
    exact = decode(pair, ids, "exact", DecodingOptions(window=4, max_new_tokens=24))
    assert exact.token_ids == decode(reference, ids, "target", DecodingOptions(max_new_tokens=24)).token_ids
    # The padding would have been chosen without the cut: the test can fail.
    pair.target.reset()
    pair.target.vocab_size = VOCAB + 32
    assert max(pair.target.forward(ids + exact.token_ids).logits.argmax(-1).tolist()) >= VOCAB

    narrow = save_resized_head(tmp_path / "narrow", tiny_target_dir, VOCAB - 16)
    with pytest.raises(ModelLoadError, match=f"narrow {VOCAB - 16}, but their tokenizer has ids up to {VOCAB - 1}"):
        load_pair(str(tiny_draft_dir), str(narrow), torch_default)


def test_exact_equals_greedy_on_a_sliding_window_model():
    """Rollbacks reach behind a sliding window (gemma-3, some Qwen2 configurations)."""
    from transformers import Qwen2ForCausalLM

    from tests.tiny import tiny_config

    settings = {k: v for k, v in tiny_config().to_dict().items() if k != "layer_types"}
    config = type(tiny_config())(**{**settings, "use_sliding_window": True, "sliding_window": 6,
                                    "max_window_layers": 1})  # layer 1 slides
    assert "sliding_attention" in config.layer_types
    torch.manual_seed(3)
    target_model = Qwen2ForCausalLM(config).eval()
    draft_model = noisy_copy(target_model, 103, scale=0.3)
    prompt = random_prompt(3)
    expected = hf_greedy(target_model, prompt, 40)
    result = generate(backend(target_model, "t"), prompt, draft=backend(draft_model, "d"), window=5,
                      max_new_tokens=40)
    assert result.token_ids == expected
    assert 1 < result.stats.mean_accepted < 6  # drafts were both kept and rolled back


def test_a_window_above_the_limit_is_refused_by_the_loop_itself():
    from autojudge.models.backend import MAX_WINDOW
    target_model = tiny_model(3)
    target, draft = backend(target_model, "t"), backend(noisy_copy(target_model, 4, scale=0.1), "d")
    with pytest.raises(ValueError, match=f"at most {MAX_WINDOW} draft tokens per cycle"):
        generate(target, [5, 17, 33], draft=draft, window=MAX_WINDOW + 1, max_new_tokens=4)
    assert generate(target, [5, 17, 33], draft=draft, window=MAX_WINDOW, max_new_tokens=4).stats.new_tokens == 4
