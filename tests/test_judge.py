"""The judge: training split by problem, a safe file that refuses the wrong pair, a policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from autojudge.decoding import Exact, generate
from autojudge.decoding.drafters import LookupDrafter
from autojudge.decoding.features import LOGIT_FEATURES, TARGET_LOGIT_FEATURES
from autojudge.decoding.modes import DecodingOptions, decode
from autojudge.decoding.policies import JudgePolicy
from autojudge.errors import AutojudgeError
from autojudge.judge.model import Judge, JudgeError
from autojudge.judge.report import auc_difference_interval
from autojudge.judge.train import MinedData, problem_folds, train_judge
from tests.tiny import backend, last_token_model, noisy_copy, tiny_model

PAIR = {"draft": "d", "target": "t", "draft_backend": {"backend": "transformers"},
        "target_backend": {"backend": "transformers"}}


def synthetic(n_problems=60, per_problem=20, draft_dim=8, target_dim=12, seed=0, logits=False) -> MinedData:
    """Important mismatches lean along one hidden direction: a judge should find it. With
    `logits`, part of the signal lives in a logit feature instead."""
    rng = np.random.default_rng(seed)
    n = n_problems * per_problem
    draft = rng.normal(size=(n, draft_dim)).astype(np.float32)
    target = rng.normal(size=(n, target_dim)).astype(np.float32)
    logit_features = rng.normal(size=(n, len(LOGIT_FEATURES))).astype(np.float32)
    score = target[:, 0] + 0.5 * draft[:, 1] + (1.5 * logit_features[:, 1] if logits else 0)
    important = (score + rng.normal(scale=0.7, size=n)) > 1.0
    problem = np.repeat(np.arange(n_problems), per_problem)
    meta = {**PAIR, "task": "toy"}
    return MinedData(draft, target, important, problem, meta, logit_features if logits else None)


def test_folds_never_put_a_problem_on_both_sides_and_score_each_once():
    data = synthetic()
    folds = problem_folds(data)
    for train, val in folds:
        assert not set(data.problem[train]) & set(data.problem[val])
        assert len(val) and len(train)
    held_out = np.concatenate([val for _, val in folds])
    assert sorted(held_out.tolist()) == list(range(len(data.important)))


@pytest.mark.parametrize("features", ["draft", "target", "both", "hidden"])
def test_training_finds_the_signal_and_tables_its_thresholds(features):
    judge, meta = train_judge(synthetic(), features=features)
    floor = {"draft": 0.55, "target": 0.8, "both": 0.85, "hidden": 0.85}[features]
    assert meta["validation_auc"] > floor
    assert meta["C"] in [float(c) for c in meta["auc_by_C"]]
    rows = meta["thresholds"]
    # Raising the threshold accepts more and catches fewer important mismatches.
    assert all(a["accept_rate"] <= b["accept_rate"] and a["recall"] >= b["recall"] for a, b in zip(rows, rows[1:]))
    assert judge.threshold_for_recall(0.9) <= judge.threshold_for_recall(0.5)


def test_both_beats_one_side_when_the_signal_is_split():
    data = synthetic(seed=1)
    auc = {f: train_judge(data, features=f)[1]["validation_auc"] for f in ("draft", "both")}
    assert auc["both"] > auc["draft"]


def test_save_load_roundtrip_gives_the_same_probabilities(tmp_path):
    judge, _ = train_judge(synthetic())
    path = tmp_path / "judge.safetensors"
    judge.save(path)
    loaded = Judge.load(path)
    for name in ("mean", "scale", "weight", "bias"):
        assert torch.equal(torch.as_tensor(getattr(judge, name)), torch.as_tensor(getattr(loaded, name)))
    d, t = torch.randn(5, 8), torch.randn(5, 12)
    # Close, not equal: a matrix product may sum in another order from call to call
    # (seen once here while other processes loaded both cores).
    torch.testing.assert_close(judge.prob_important({"draft": d, "target": t}),
                               loaded.prob_important({"draft": d, "target": t}), rtol=1e-6, atol=1e-7)
    assert loaded.meta["thresholds"] == judge.meta["thresholds"]


def test_loading_refuses_corrupt_and_foreign_files(tmp_path):
    judge, _ = train_judge(synthetic())
    path = tmp_path / "judge.safetensors"
    judge.save(path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(JudgeError, match="not a readable judge file"):
        Judge.load(truncated)
    with pytest.raises(JudgeError, match="no such judge file"):
        Judge.load(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(JudgeError, match="without judge metadata"):
        Judge.load(tmp_path / "other.safetensors")
    # Right format tag, but what loading and decoding rely on is missing or wrong.
    for broken in ({k: v for k, v in judge.meta.items() if k != "hidden"},
                   {**judge.meta, "features": "nonsense"}, {**judge.meta, "thresholds": []},
                   {**judge.meta, "pair": None}):
        Judge(judge.mean, judge.scale, judge.weight, judge.bias, broken).save(tmp_path / "broken.safetensors")
        with pytest.raises(JudgeError, match="judge metadata without"):
            Judge.load(tmp_path / "broken.safetensors")
    short = Judge(judge.mean[:3], judge.scale[:3], judge.weight[:3], judge.bias, judge.meta)
    short.save(tmp_path / "short.safetensors")
    with pytest.raises(JudgeError, match="tensor sizes do not match"):
        Judge.load(tmp_path / "short.safetensors")


def test_a_judge_refuses_another_pair_or_hidden_size():
    judge, _ = train_judge(synthetic())
    judge.check_compatible(PAIR, 8, 12)
    with pytest.raises(JudgeError, match="target other"):
        judge.check_compatible({**PAIR, "target": "other"}, 8, 12)
    with pytest.raises(JudgeError, match="draft hidden size 16"):
        judge.check_compatible(PAIR, 16, 12)
    with pytest.raises(JudgeError, match="target_backend"):
        judge.check_compatible({**PAIR, "target_backend": {"backend": "llama.cpp"}}, 8, 12)


def test_a_judge_checks_only_the_runtimes_whose_numbers_it_reads():
    # Labels mined with llama.cpp's draft, the target's states recomputed on torch
    # (scripts/torch_feature_run.py): a judge of those states fits a torch pair.
    llamacpp_draft = {**PAIR, "draft_backend": {"backend": "llama.cpp"}}
    data = synthetic()
    data = MinedData(data.draft, data.target, data.important, data.problem, {**llamacpp_draft, "task": "toy"})
    target_only, _ = train_judge(data, features="target")
    assert target_only.runtimes_read == ("target_backend",)
    target_only.check_compatible(PAIR, 8, 12)
    with pytest.raises(JudgeError, match="target_backend"):
        target_only.check_compatible({**PAIR, "target_backend": {"backend": "llama.cpp"}}, 8, 12)
    both, _ = train_judge(data, features="hidden")  # reads the draft's states too
    assert both.runtimes_read == ("draft_backend", "target_backend")
    with pytest.raises(JudgeError, match="draft_backend"):
        both.check_compatible(PAIR, 8, 12)


def test_a_judge_of_a_middle_layer_makes_the_target_read_it_and_refuses_another(tmp_path, tiny_target_dir,
                                                                              tiny_draft_dir):
    from autojudge.judge.shipped import load_judge
    from tests.toy_task import tiny_pair
    pair = tiny_pair(tiny_target_dir, tiny_draft_dir)
    described = pair.describe(machine=False)
    layered = {**described, "target_backend": {**described["target_backend"], "feature_layer": 1}}
    data = synthetic(draft_dim=pair.draft.hidden_size, target_dim=pair.target.hidden_size)
    judge, _ = train_judge(MinedData(data.draft, data.target, data.important, data.problem,
                                     {**layered, "task": "toy"}))
    assert "hidden states: the target's layer 1" in judge.meta["layout"]
    with pytest.raises(JudgeError, match="features from its final norm \\(judge trained on its layer 1\\)"):
        judge.check_compatible(described, pair.draft.hidden_size, pair.target.hidden_size)
    judge.save(tmp_path / "layer-1.safetensors")
    layered_judge = load_judge(pair, tmp_path / "layer-1.safetensors")  # the target now reads layer 1
    assert pair.target.feature_layer == 1 and pair.draft.feature_layer is None
    ids = [3, 5, 7, 9]
    options = DecodingOptions(window=4, max_new_tokens=8)
    decode(pair, ids, "judge:0.5", options, judge=layered_judge)
    final, _ = train_judge(MinedData(data.draft, data.target, data.important, data.problem,
                                     {**described, "task": "toy"}))
    final.save(tmp_path / "final.safetensors")
    load_judge(pair, tmp_path / "final.safetensors")  # the pair serves the judge loaded last
    assert pair.target.feature_layer is None
    with pytest.raises(JudgeError, match="reads the target's layer 1, but the target now gives its final norm"):
        decode(pair, ids, "judge:0.5", options, judge=layered_judge)


def test_a_judge_of_a_registered_pair_serves_its_q4_0_copies_and_nothing_else():
    from autojudge.models.registry import DRAFT, DRAFT_Q4_0, TARGET, TARGET_Q4_0
    judge, _ = train_judge(synthetic())
    judge.meta["pair"] = {**judge.meta["pair"], "draft": DRAFT.name, "target": TARGET.name}
    described = {**PAIR, "draft": DRAFT_Q4_0.name, "target": TARGET_Q4_0.name}
    judge.check_compatible(described, 8, 12)  # the same weights, rounded once more
    with pytest.raises(JudgeError, match=f"draft {TARGET_Q4_0.name}"):
        judge.check_compatible({**described, "draft": TARGET_Q4_0.name}, 8, 12)


def _constant_judge(hidden_d, hidden_t, bias):
    n = hidden_d + hidden_t
    meta = {"features": "both", "hidden": {"draft": hidden_d, "target": hidden_t}, "thresholds": []}
    return Judge(torch.zeros(n), torch.ones(n), torch.zeros(n), bias, meta)


def test_judge_policy_thresholds_span_exact_to_accept_everything():
    target_model = tiny_model(3)
    draft_model = noisy_copy(target_model, 4, scale=1.0)
    target, draft = backend(target_model, "t"), backend(draft_model, "d")
    prompt = [5, 17, 33, 2, 8, 61, 40]
    exact = generate(target, prompt, draft=draft, policy=Exact(), window=4, max_new_tokens=32)
    judge = _constant_judge(64, 64, bias=0.0)  # P(important) = 0.5 everywhere
    strict = generate(target, prompt, draft=draft, policy=JudgePolicy(judge, 0.5), window=4, max_new_tokens=32)
    assert strict.token_ids == exact.token_ids and strict.stats.accepted_mismatches == 0
    lenient = generate(target, prompt, draft=draft, policy=JudgePolicy(judge, 0.51), window=4, max_new_tokens=32)
    kept = sum(n * cycles for n, cycles in enumerate(lenient.stats.accept_histogram))
    assert kept == lenient.stats.drafted_tokens  # every drafted token kept
    assert lenient.stats.accepted_mismatches > 0


def test_auc_report_compares_feature_sets_and_grows_with_data(tmp_path):
    from autojudge.judge.report import auc_markdown, auc_report, plot_learning_curve
    report = auc_report(synthetic(n_problems=80), fractions=(0.1, 1.0))
    aucs = {name: row["auc"] for name, row in report["by_features"].items()}
    # The signal lives mostly in the target's features, partly in the draft's.
    assert aucs["hidden"] > aucs["draft"] and aucs["target"] > aucs["draft"]
    assert "logits" not in aucs  # the data has none
    small, full = report["learning_curve"]
    assert small["problems"] < full["problems"] and full["auc"] > 0.8
    assert "| hidden |" in auc_markdown(report)
    plot_learning_curve(report, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_the_curve_outlook_reads_gains_per_doubling():
    from autojudge.judge.report import curve_outlook

    def curve(*points):
        return [{"problems": n, "mismatches": 10 * n, "auc": auc} for n, auc in points]

    # 34 -> 68 -> 136 double (102 does not take part); the last gain, repeated, leads on.
    text = curve_outlook(curve((34, 0.70), (68, 0.73), (102, 0.74), (136, 0.75)))
    assert "+0.030, then +0.020" in text and "(they have been shrinking)" in text
    assert "272 training problems per fold would score about 0.770, and 544 about 0.790" in text
    assert "added nothing" in curve_outlook(curve((50, 0.70), (100, 0.69)))
    assert curve_outlook(curve((80, 0.70), (100, 0.72))) is None  # no doubling to read
    assert curve_outlook([]) is None  # no point of the curve could be fitted


def test_auc_report_reuses_the_trained_judges_cross_validation():
    # train_judge and auc_report must split the same problems into the same folds, so
    # the CLI can hand the shipped feature set's AUC over instead of computing it twice.
    from autojudge.judge.report import auc_report
    data = synthetic(n_problems=30)
    _, meta = train_judge(data, features="both", seed=3)
    fresh = auc_report(data, seed=3, fractions=(1.0,))
    reused = auc_report(data, seed=3, fractions=(1.0,), known={"both": {"auc": meta["validation_auc"], "C": meta["C"]}})
    for features in ("draft", "target", "hidden"):
        assert reused["by_features"][features] == pytest.approx(fresh["by_features"][features])
    assert list(reused["by_features"]) == ["draft", "target", "hidden"]


def test_a_target_only_judge_spares_the_draft_pass_for_hidden_states():
    target_model = tiny_model(3)
    draft_model = noisy_copy(target_model, 4, scale=1.0)
    prompt = [5, 17, 33, 2, 8, 61, 40]
    runs = {}
    for features in ("both", "target"):
        judge = _constant_judge(64, 64, bias=0.0)
        judge.meta["features"] = features
        if features == "target":
            judge.mean, judge.scale, judge.weight = torch.zeros(64), torch.ones(64), torch.zeros(64)
        target, draft = backend(target_model, "t"), backend(draft_model, "d")
        runs[features] = generate(target, prompt, draft=draft, policy=JudgePolicy(judge, 0.51),
                                  window=4, max_new_tokens=32)
    # Same decisions (P(important) = 0.5 everywhere), one draft pass fewer per cycle.
    assert runs["target"].token_ids == runs["both"].token_ids
    assert runs["both"].stats.draft_forwards - runs["target"].stats.draft_forwards == runs["both"].stats.cycles


def test_logit_features_train_alone_and_beside_the_hidden_states(tmp_path):
    data = synthetic(n_problems=40, logits=True)
    report_aucs = {}
    for features in ("hidden", "logits", "all"):
        judge, meta = train_judge(data, features=features)
        report_aucs[features] = meta["validation_auc"]
        judge.save(tmp_path / f"{features}.safetensors")
        loaded = Judge.load(tmp_path / f"{features}.safetensors")
        assert loaded.weight.shape[0] == data.features(features).shape[1]
    # The signal is split between a hidden direction and a logit feature: both see most.
    assert report_aucs["all"] > report_aucs["hidden"] and report_aucs["all"] > report_aucs["logits"]
    with pytest.raises(AutojudgeError, match="needs logit features, which this mining run lacks"):
        synthetic(n_problems=10).features("logits")


def test_a_logit_judge_reads_the_drafts_logits_without_its_hidden_states():
    target_model = tiny_model(3)
    draft_model = noisy_copy(target_model, 4, scale=1.0)
    prompt = [5, 17, 33, 2, 8, 61, 40]
    n = len(LOGIT_FEATURES)
    # P(important) = sigmoid(draft_logp_draft) < 0.5 everywhere (a log-probability is
    # negative): a threshold of 0.5 accepts every mismatch the draft proposes.
    weight = torch.zeros(n)
    weight[LOGIT_FEATURES.index("draft_logp_draft")] = 1.0
    meta = {"features": "logits", "hidden": {"draft": 64, "target": 64}, "thresholds": []}
    judge = Judge(torch.zeros(n), torch.ones(n), weight, 0.0, meta)
    policy = JudgePolicy(judge, 0.5)
    assert policy.needs_draft_logits and not policy.needs_hidden
    target, draft = backend(target_model, "t"), backend(draft_model, "d")
    lenient = generate(target, prompt, draft=draft, policy=policy, window=4, max_new_tokens=32)
    target, draft = backend(target_model, "t"), backend(draft_model, "d")
    exact = generate(target, prompt, draft=draft, policy=Exact(), window=4, max_new_tokens=32)
    assert lenient.stats.accepted_mismatches > 0
    # No extra draft pass for hidden states: one draft pass per drafted token, as exact.
    assert lenient.stats.draft_forwards == lenient.stats.drafted_tokens
    assert exact.stats.draft_forwards == exact.stats.drafted_tokens


def test_a_target_only_judge_trains_from_mined_logits_and_judges_lookup_drafts():
    data = synthetic(n_problems=40, logits=True)
    judge, meta = train_judge(data, features="target+target-logits")
    assert judge.weight.shape[0] == data.target.shape[1] + len(TARGET_LOGIT_FEATURES)
    assert meta["validation_auc"] > 0.7  # the target's hidden direction and its logp_own column
    assert judge.runtimes_read == ("target_backend",)  # whatever drafted, the draft's numbers are never read
    # In decoding: a lookup drafter (no draft model, no hidden states, no logits) with a
    # judge of the target alone whose P(important) is below the threshold everywhere.
    target = backend(last_token_model(3), "t")
    prompt = [5, 17, 33, 2, 8, 61, 40, 5, 17, 33, 9, 12, 5, 17]  # repeats for the lookup to find
    width = target.hidden_size + len(TARGET_LOGIT_FEATURES)
    lenient = Judge(torch.zeros(width), torch.ones(width), torch.zeros(width), -3.0,
                    {"features": "target+target-logits", "hidden": {"draft": 64, "target": 64}, "thresholds": []})
    policy = JudgePolicy(lenient, 0.5)
    assert not policy.needs_hidden and not policy.needs_draft_logits
    looked = generate(target, prompt, drafter=LookupDrafter(min_ngram=1), policy=policy, window=4, max_new_tokens=24)
    assert looked.stats.draft_forwards == 0 and looked.stats.accepted_mismatches > 0


def test_reused_labels_only_train_and_never_the_fold_that_scores_their_problem():
    from autojudge.judge.report import auc_report
    from autojudge.judge.train import with_reused
    data, more = synthetic(n_problems=12, seed=4), synthetic(n_problems=60, seed=5)
    more.problem = more.problem + 6  # half of the few problems were also mined before
    folds = problem_folds(data)
    both, reused_folds = with_reused(data, more, folds)
    for (train, val), (train_r, val_r) in zip(folds, reused_folds):
        assert np.array_equal(val, val_r)  # scored: the data's labels only
        assert not set(both.problem[train_r]) & set(data.problem[val])
        assert len(train_r) > len(train)
    alone = train_judge(data, features="target")[1]
    judge, meta = train_judge(data, features="target", reused=more)
    assert meta["validation"]["mismatches"] == len(data.important)
    assert meta["train"]["mismatches"] == len(data.important) + len(more.important)
    assert meta["reused"]["mismatches"] == len(more.important)
    assert meta["validation_auc"] > alone["validation_auc"]  # five times the training labels
    with pytest.raises(AutojudgeError, match="no logit features"):
        train_judge(synthetic(logits=True), features="all", reused=more)
    report = auc_report(data, fractions=(1.0,), reused=more)
    assert report["by_features"]["target"]["auc"] == pytest.approx(alone["validation_auc"])
    assert report["with_reused"]["by_features"]["target"]["auc"] == pytest.approx(meta["validation_auc"])


def test_a_label_is_reused_only_when_both_of_its_texts_ended_before_the_budget():
    from autojudge.judge.train import RETOKENIZE_SLACK, _ended_labels

    def words(text):  # a tokenizer for the rule's length test: a token per word
        return {"input_ids": text.split()}

    def mismatch(important, stop, text="short"):
        return {"important": important, "alt_response": text, "regeneration_stop": stop}

    # Recorded stops: a cut regeneration is left out, and so is every label compared with it.
    record = {"response": "r", "first_answer_stop": "eos",
              "mismatches": [mismatch(True, "eos"), mismatch(True, "length"), mismatch(False, "length"),
                             mismatch(True, "eos")]}
    assert _ended_labels(record, 10, words) == [True, False, False, False]  # the kept swap's text was cut
    record["mismatches"][2]["regeneration_stop"] = "eos"
    assert _ended_labels(record, 10, words) == [True, False, True, True]
    assert _ended_labels({**record, "first_answer_stop": "length"}, 10, words) == [False, False, False, True]
    # Unrecorded stops (older runs): judged by the texts' lengths.
    budget = 20
    long_text = " ".join(["w"] * (budget - RETOKENIZE_SLACK + 1))
    old = {"response": "r", "mismatches": [mismatch(True, None), mismatch(True, None, long_text)]}
    assert _ended_labels(old, budget, words) == [True, False]
    assert _ended_labels({**old, "response": long_text}, budget, words) == [False, False]
    # After a kept swap, the labels compare with its regeneration; before it, with a first
    # answer whose length such runs did not keep.
    kept = {"response": "r", "mismatches": [mismatch(False, None), mismatch(True, None), mismatch(False, None,
                                                                                                   long_text),
                                            mismatch(True, None)]}
    assert _ended_labels(kept, budget, words) == [False, True, False, False]


def test_auc_difference_interval_draws_whole_problems():
    """A problem's labels move together: where a scoring is right on some problems and
    wrong on others, the interval is far wider than the same labels as independent
    problems would give. Draws with one class only are left out, not fatal."""
    rng = np.random.default_rng(0)
    problem = np.repeat(np.arange(30), 20)
    y = rng.random(600) < 0.3
    sign = np.where(problem % 3 == 0, -1.0, 1.0)  # a third of the problems scored backwards
    scored, noise = sign * (y + rng.normal(0, 0.5, 600)), rng.normal(0, 1, 600)
    difference = roc_auc_score(y, scored) - roc_auc_score(y, noise)
    low, high = auc_difference_interval((problem, y, scored), (problem, y, noise), draws=400)
    assert low < difference < high
    alone_low, alone_high = auc_difference_interval((np.arange(600), y, scored), (np.arange(600), y, noise),
                                                    draws=400)
    assert 0 < alone_low < difference < alone_high
    assert high - low > 1.5 * (alone_high - alone_low)
    assert auc_difference_interval((problem, y, noise), (problem, y, noise), draws=50) == (0.0, 0.0)
    rare = problem < 2  # positives in two problems only: many draws have none
    assert np.isfinite(auc_difference_interval((problem, rare, scored), (problem, rare, noise), draws=50)).all()
