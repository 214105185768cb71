"""The llama.cpp backend on the real default GGUF files."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("llama_cpp")

from autojudge.decoding import generate  # noqa: E402
from autojudge.models.loading import load_model, load_pair  # noqa: E402
from autojudge.prompting import chat_prompt_ids  # noqa: E402
from autojudge.tasks.gsm8k import GSM8K  # noqa: E402

pytestmark = pytest.mark.integration

DRAFT = "qwen2.5-coder-0.5b-instruct"


@pytest.fixture(scope="module")
def draft_llama():
    return load_model(DRAFT, "llamacpp")


def test_chunked_forward_equals_one_pass_and_truncate_rolls_back(draft_llama):
    model = draft_llama
    tokens = [9707, 11, 1246, 525, 498, 30, 358, 1079, 6915, 13]
    model.reset()
    whole = model.forward(tokens)
    assert whole.logits.shape == (10, model.vocab_size)
    assert whole.hidden.shape == (10, model.hidden_size) == (10, 896)

    model.truncate(4)
    assert model.cached_length == 4
    again = model.forward(tokens[4:])
    # Same positions, same cache contents: the rolled-back cache is as good as new. Not
    # bit-equal: llama.cpp's kernels depend on how many tokens share a pass.
    assert torch.equal(again.logits.argmax(-1), whole.logits[4:].argmax(-1))
    cosine = torch.nn.functional.cosine_similarity(again.hidden, whole.hidden[4:], dim=-1)
    assert cosine.min() > 0.999

    model.truncate(9)
    last = model.forward(tokens[9:], n_logits=1)
    assert last.logits.shape == (1, model.vocab_size)


def test_hidden_state_matches_transformers_final_norm(draft_llama):
    """The two runtimes compute the same feature, up to 4-bit vs float32 numerics."""
    torch_model = load_model(DRAFT, "torch", linear="default")
    tokens = [9707, 11, 1246, 525, 498, 30, 358, 1079]
    draft_llama.reset()
    torch_model.reset()
    a = draft_llama.forward(tokens).hidden
    b = torch_model.forward(tokens).hidden
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    # Seen here: 0.999+ everywhere but one early position (0.92), where activations peak.
    assert cosine.median() > 0.995 and cosine.min() > 0.8


def test_exact_speculative_equals_llamacpp_greedy_up_to_near_ties():
    """llama.cpp's kernels are not batch-invariant: a one-token step and a many-token
    verification pass differ slightly (seen: logits by ~0.01-0.1 of ~17). Exact
    speculative decoding then follows the target's greedy path except where the top two
    logits are that close; anything else would be a bug in the loop."""
    pair = load_pair(backend="llamacpp")
    task = GSM8K()
    for problem in task.load("eval")[:2]:
        ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))
        alone = generate(pair.target, ids, max_new_tokens=64, stop_ids=pair.stop_ids).token_ids
        for window in (3, 8):
            spec = generate(pair.target, ids, draft=pair.draft, window=window,
                            max_new_tokens=64, stop_ids=pair.stop_ids)
            assert spec.stats.mean_accepted > 1.5
            if spec.token_ids == alone:
                continue
            split = next(i for i, (a, b) in enumerate(zip(spec.token_ids, alone)) if a != b)
            pair.target.reset()
            logits = pair.target.forward(ids + alone[:split], n_logits=1).logits[-1]
            top2 = logits.topk(2)
            assert set(top2.indices.tolist()) == {spec.token_ids[split], alone[split]}
            assert float(top2.values[0] - top2.values[1]) < 0.25  # seen: 0.008 and 0.086


def test_the_shipped_judge_fits_the_llamacpp_pair_and_decodes():
    from autojudge.decoding.modes import decode
    from autojudge.judge.model import JudgeError
    from autojudge.judge.shipped import load_judge

    pair = load_pair(backend="llamacpp")
    judge = load_judge(pair)  # the shipped GSM8K judge
    assert judge.meta["pair"]["target"] == "qwen2.5-coder-1.5b-instruct"
    # Each task gets its own judge; HumanEval has no mining split and uses MBPP's.
    for task, mined_on in (("gsm8k", "gsm8k"), ("mbpp", "mbpp"), ("humaneval", "mbpp")):
        assert load_judge(pair, task=task).meta["task"] == mined_on
    task = GSM8K()
    ids = chat_prompt_ids(pair.tokenizer, task.messages(task.load("eval")[0]))
    exact = decode(pair, ids, "exact", window=8, max_new_tokens=48)
    # Threshold 0: P(important) < 0 never holds, so the judge accepts no mismatch.
    strict = decode(pair, ids, "judge:0", window=8, max_new_tokens=48, judge=judge)
    assert strict.token_ids == exact.token_ids and strict.stats.accepted_mismatches == 0
    loose = decode(pair, ids, "judge:1", window=8, max_new_tokens=48, judge=judge)
    assert loose.stats.accepted_mismatches > 0 and loose.stats.mean_accepted > exact.stats.mean_accepted
    # Features from another runtime are not what it was trained on.
    with pytest.raises(JudgeError, match="does not fit the loaded pair"):
        load_judge(load_pair(backend="torch"))
