"""The real default pair (fetched and converted on first use): exactness on GSM8K prompts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from autojudge.decoding import TopK, generate
from autojudge.models.loading import load_pair
from autojudge.models.runtime import RuntimeOptions
from autojudge.prompting import chat_prompt_ids
from autojudge.tasks.gsm8k import GSM8K

pytestmark = pytest.mark.integration

MAX_NEW = 48


@pytest.fixture(scope="module")
def pair():
    return load_pair(runtime=RuntimeOptions(backend="torch"))


@pytest.fixture(scope="module")
def prompts(pair):
    task = GSM8K()
    problems = task.load("eval")[:3]
    return [chat_prompt_ids(pair.tokenizer, task.messages(p)) for p in problems]


@pytest.fixture(scope="module")
def reference(pair, prompts):
    """The target's own greedy output, from transformers' generate."""
    outputs = []
    for ids in prompts:
        with torch.inference_mode():
            out = pair.target.model.generate(
                torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=sorted(pair.stop_ids),
                pad_token_id=pair.tokenizer.pad_token_id)
        outputs.append(out[0, len(ids):].tolist())
    return outputs


def test_default_pair_shares_a_vocabulary_and_stops_on_im_end(pair):
    assert pair.draft.vocab_size == pair.target.vocab_size == 151936
    assert pair.tokenizer.convert_tokens_to_ids("<|im_end|>") in pair.stop_ids
    assert (pair.draft.hidden_size, pair.target.hidden_size) == (896, 1536)


@pytest.mark.parametrize("window", [4, 16])
def test_exact_speculative_equals_target_greedy(pair, prompts, reference, window):
    for ids, expected in zip(prompts, reference):
        result = generate(pair.target, ids, draft=pair.draft, window=window,
                          max_new_tokens=MAX_NEW, stop_ids=pair.stop_ids)
        assert result.token_ids == expected
        assert result.stats.mean_accepted > 1.5  # the pair agrees on most tokens


def test_target_only_mode_equals_generate(pair, prompts, reference):
    result = generate(pair.target, prompts[0], max_new_tokens=MAX_NEW, stop_ids=pair.stop_ids)
    assert result.token_ids == reference[0]


def test_topk_accepts_mismatches_on_real_text(pair, prompts):
    result = generate(pair.target, prompts[1], draft=pair.draft, policy=TopK(8), window=8,
                      max_new_tokens=MAX_NEW, stop_ids=pair.stop_ids)
    assert result.stats.accepted_mismatches > 0


def test_models_fetch_without_names_is_the_default_pair(pair):
    """The README's `autojudge models fetch`: with the pair cached, it prints where it lies."""
    result = subprocess.run([sys.executable, "-m", "autojudge", "models", "fetch"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    paths = result.stdout.split()
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["qwen2.5-coder-0.5b-instruct",
                                                     "qwen2.5-coder-1.5b-instruct"]
