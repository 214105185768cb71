"""The llama.cpp backend on the real default GGUF files."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("llama_cpp")

from autojudge.decoding import generate  # noqa: E402
from autojudge.decoding.modes import DecodingOptions  # noqa: E402
from autojudge.errors import ModelLoadError  # noqa: E402
from autojudge.models.loading import load_model, load_pair  # noqa: E402
from autojudge.models.runtime import RuntimeOptions  # noqa: E402
from autojudge.prompting import chat_prompt_ids  # noqa: E402
from autojudge.tasks.gsm8k import GSM8K  # noqa: E402

pytestmark = pytest.mark.integration

DRAFT = "qwen2.5-coder-0.5b-instruct"
LLAMACPP = RuntimeOptions(backend="llamacpp")


@pytest.fixture(scope="module")
def draft_llama():
    return load_model(DRAFT, LLAMACPP)


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
    torch_model = load_model(DRAFT, RuntimeOptions(backend="torch", linear="default"))
    tokens = [9707, 11, 1246, 525, 498, 30, 358, 1079]
    draft_llama.reset()
    torch_model.reset()
    a = draft_llama.forward(tokens).hidden
    b = torch_model.forward(tokens).hidden
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    # Seen here: 0.999+ everywhere but one early position (0.92), where activations peak.
    assert cosine.median() > 0.995 and cosine.min() > 0.8


def test_a_middle_feature_layer_matches_transformers_and_leaves_the_logits_alone(draft_llama):
    """llama.cpp hands over layer 12's output through a graph callback: the same numbers as
    transformers' hidden_states[12] (up to 4-bit numerics), in order across passes."""
    tokens = [9707, 11, 1246, 525, 498, 30, 358, 1079]
    torch_model = load_model(DRAFT, RuntimeOptions(backend="torch", linear="default"))
    torch_model.read_features_from(12)
    layered = load_model(DRAFT, LLAMACPP)
    layered.read_features_from(12)
    assert layered.describe()["feature_layer"] == 12
    first, second = layered.forward(tokens[:5]), layered.forward(tokens[5:])
    cosine = torch.nn.functional.cosine_similarity(torch.cat([first.hidden, second.hidden]),
                                                   torch_model.forward(tokens).hidden, dim=-1)
    assert cosine.median() > 0.995 and cosine.min() > 0.8
    layered.reset()
    draft_llama.reset()
    whole, plain = layered.forward(tokens), draft_llama.forward(tokens)
    assert torch.allclose(whole.logits, plain.logits, atol=1e-3)
    assert torch.nn.functional.cosine_similarity(whole.hidden, plain.hidden, dim=-1).max() < 0.9  # not the final norm
    with pytest.raises(ModelLoadError, match="without uniform passes only"):
        load_model(DRAFT, RuntimeOptions(backend="llamacpp", uniform_passes=True)).read_features_from(12)


def test_exact_speculative_equals_llamacpp_greedy_up_to_near_ties():
    """llama.cpp's kernels are not batch-invariant: a one-token step and a many-token
    verification pass differ slightly (the default target's logits by about 0.3 of ~17:
    docs/bench/pass-shape-logits.md). Exact
    speculative decoding then follows the target's greedy path except where the top two
    logits are that close; anything else would be a bug in the loop."""
    pair = load_pair(runtime=LLAMACPP)
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


def test_uniform_passes_read_a_lone_token_as_a_many_token_pass_does():
    """llama.cpp rounds a one-token pass differently from a many-token one; with uniform
    passes a lone token is read together with the cached one before it, and its logits
    are those of the many-token pass (Q4_0 weights)."""
    uniform = load_model(DRAFT + "-q4_0", RuntimeOptions(backend="llamacpp", uniform_passes=True))
    plain = load_model(DRAFT + "-q4_0", LLAMACPP)
    assert uniform.describe()["uniform_passes"] is True and "uniform_passes" not in plain.describe()
    prompt, tokens = [9707, 11, 1246, 525, 498, 30, 358, 1079], [6915, 13, 3555, 374, 220, 16, 22, 353, 220, 17]

    def one_at_a_time(model):
        model.reset()
        model.forward(prompt)
        return torch.cat([model.forward([t]).logits for t in tokens])

    whole = uniform.forward(prompt + tokens).logits[len(prompt) - 1:]  # whole[j + 1]: after tokens[j]
    uniform.reset()
    uniform.forward(prompt + tokens[:1])
    apart = torch.cat([uniform.forward([t]).logits for t in tokens[1:]])
    assert torch.allclose(apart, whole[2:], atol=1e-3)
    assert uniform.cached_length == len(prompt + tokens) and uniform.tokens == prompt + tokens
    gap_uniform = (one_at_a_time(uniform) - whole[1:]).abs().max()
    gap_plain = (one_at_a_time(plain) - whole[1:]).abs().max()
    assert gap_uniform < 1e-3 < gap_plain  # seen: 0 against about 0.2
    # The cache rolls back and goes on as before.
    uniform.truncate(len(prompt) + 3)
    again = uniform.forward([tokens[3]]).logits
    assert torch.allclose(again, whole[4:5], atol=1e-3)


def test_with_uniform_passes_exact_speculative_decoding_is_the_target_alone():
    """The Q4_0 pair: with uniform passes the target alone decodes the very tokens that
    exact speculative decoding does, whatever the window."""
    pair = load_pair("qwen2.5-coder-0.5b-instruct-q4_0", "qwen2.5-coder-1.5b-instruct-q4_0",
                     RuntimeOptions(backend="llamacpp", uniform_passes=True))
    assert pair.target.uniform_passes and not pair.draft.uniform_passes  # the draft only proposes
    task = GSM8K()
    for problem in task.load("eval")[:2]:
        ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))
        alone = generate(pair.target, ids, max_new_tokens=96, stop_ids=pair.stop_ids).token_ids
        for window in (3, 16):
            spec = generate(pair.target, ids, draft=pair.draft, window=window,
                            max_new_tokens=96, stop_ids=pair.stop_ids)
            assert spec.stats.mean_accepted > 1.5
            assert spec.token_ids == alone


def test_the_shipped_judge_fits_the_llamacpp_pair_and_decodes():
    from autojudge.decoding.modes import decode
    from autojudge.judge.model import JudgeError
    from autojudge.judge.shipped import load_judge

    pair = load_pair(runtime=LLAMACPP)
    judge = load_judge(pair)  # the shipped GSM8K judge
    assert judge.meta["pair"]["target"] == "qwen2.5-coder-1.5b-instruct"
    # Each task gets its own judge; HumanEval has no mining split and uses MBPP's.
    for task, mined_on in (("gsm8k", "gsm8k"), ("mbpp", "mbpp"), ("humaneval", "mbpp"), ("squad", "squad")):
        assert load_judge(pair, task=task).meta["task"] == mined_on
    judge = load_judge(pair)  # loaded last, so the target reads its layer again
    assert pair.target.feature_layer == judge.feature_layer
    task = GSM8K()
    ids = chat_prompt_ids(pair.tokenizer, task.messages(task.load("eval")[0]))
    exact = decode(pair, ids, "exact", DecodingOptions(window=8, max_new_tokens=48))
    # Threshold 0: P(important) < 0 never holds, so the judge accepts no mismatch.
    strict = decode(pair, ids, "judge:0", DecodingOptions(window=8, max_new_tokens=48), judge=judge)
    assert strict.token_ids == exact.token_ids and strict.stats.accepted_mismatches == 0
    loose = decode(pair, ids, "judge:1", DecodingOptions(window=8, max_new_tokens=48), judge=judge)
    assert loose.stats.accepted_mismatches > 0 and loose.stats.mean_accepted > exact.stats.mean_accepted
    # The target-only judges, for a lookup drafter: no draft model pass, the same layer read.
    for task, mined_on in (("gsm8k", "gsm8k"), ("humaneval", "mbpp")):
        lookup_judge = load_judge(pair, task=task, drafter="lookup")
        assert lookup_judge.meta["task"] == mined_on and lookup_judge.runtimes_read == ("target_backend",)
    looked = DecodingOptions(window=8, max_new_tokens=120, drafter="lookup")  # its first lookups come late
    lookup_judge = load_judge(pair, drafter="lookup")
    strict = decode(pair, ids, "judge:0", looked, judge=lookup_judge)
    exact = decode(pair, ids, "exact", looked)
    assert strict.token_ids == exact.token_ids and strict.stats.draft_forwards == 0
    loose = decode(pair, ids, "judge:1", looked, judge=lookup_judge)
    assert loose.stats.accepted_mismatches > 0 and loose.stats.draft_forwards == 0
    # Features from another runtime are not what it was trained on.
    with pytest.raises(JudgeError, match="does not fit the loaded pair"):
        load_judge(load_pair(runtime=RuntimeOptions(backend="torch")))
    # The pair's Q4_0 copies have the same weights, rounded once more: it serves them too.
    copies = load_pair("qwen2.5-coder-0.5b-instruct-q4_0", "qwen2.5-coder-1.5b-instruct-q4_0", LLAMACPP)
    assert load_judge(copies).meta["pair"]["target"] == "qwen2.5-coder-1.5b-instruct"


def test_the_llamacpp_path_needs_no_converted_checkpoint(tmp_path, monkeypatch):
    """The default path loads the GGUF files and their tokenizer, never a float32 copy
    (9 GB on disk for the pair)."""
    from autojudge.artifacts import cache_home
    from autojudge.models.convert import converted_dir, ensure_converted
    from autojudge.models.loading import load_tokenizer
    from autojudge.models.registry import REGISTERED

    shared = cache_home()
    target = REGISTERED["qwen2.5-coder-1.5b-instruct"]
    ensure_converted(target)  # where the tokenizer used to come from
    monkeypatch.setenv("AUTOJUDGE_HOME", str(tmp_path))
    (tmp_path / "gguf").mkdir()
    for gguf in (shared / "gguf").glob("*.gguf"):  # verified files, linked instead of fetched again
        (tmp_path / "gguf" / gguf.name).symlink_to(gguf)
    pair = load_pair(runtime=LLAMACPP)
    assert pair.target.name == target.name
    assert not (tmp_path / "models").exists()
    assert not converted_dir(target).exists()
    monkeypatch.setenv("AUTOJUDGE_HOME", str(shared))
    reference = load_tokenizer(str(converted_dir(target)))
    assert pair.tokenizer.get_vocab() == reference.get_vocab()
    assert pair.tokenizer.chat_template == reference.chat_template
    text = "Natalia sold 48/2 = 24 clips in May.\n\\boxed{72} é"
    assert pair.tokenizer(text)["input_ids"] == reference(text)["input_ids"]


def _home_with_the_draft(tmp_path, monkeypatch):
    """A cache home holding only the verified default draft GGUF (linked, not copied)."""
    from autojudge.models.convert import gguf_path
    from autojudge.models.registry import DRAFT
    source = gguf_path(DRAFT)
    (tmp_path / "gguf").mkdir()
    (tmp_path / "gguf" / source.name).symlink_to(source)
    (tmp_path / "gguf" / (source.name + ".sha256")).write_text(DRAFT.gguf.sha256 + "\n")
    monkeypatch.setenv("AUTOJUDGE_HOME", str(tmp_path))


def test_the_q4_0_draft_is_made_here_from_the_pinned_file_and_matches_its_pin(tmp_path, monkeypatch):
    from autojudge.models.convert import gguf_path
    from autojudge.models.registry import DRAFT_Q4_0
    _home_with_the_draft(tmp_path, monkeypatch)
    made = gguf_path(DRAFT_Q4_0)
    assert made == tmp_path / "gguf" / "qwen2.5-coder-0.5b-instruct-q4_0.gguf"
    assert made.stat().st_size == DRAFT_Q4_0.gguf.size  # and its sha256 was checked
    model = load_model(DRAFT_Q4_0.name, LLAMACPP)
    assert model.describe()["gguf"] == made.name and model.hidden_size == 896
    assert model.forward([9707, 11, 1246]).logits.shape == (3, model.vocab_size)


def test_a_requantized_file_unlike_its_pin_is_refused_and_not_kept(tmp_path, monkeypatch):
    from dataclasses import replace

    from autojudge.errors import FetchError
    from autojudge.models.convert import gguf_path
    from autojudge.models.registry import DRAFT_Q4_0
    _home_with_the_draft(tmp_path, monkeypatch)
    wrong = replace(DRAFT_Q4_0, gguf=replace(DRAFT_Q4_0.gguf, sha256="0" * 64))
    with pytest.raises(FetchError, match="quantizer made another file than the pinned one"):
        gguf_path(wrong)
    left = {path.name for path in (tmp_path / "gguf").iterdir()}
    made = {name for name in left if name.endswith((".gguf", ".partial"))}
    assert made == {"qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"}  # the source alone
