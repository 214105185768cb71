"""Label definitions, the rules' features and the head-to-head, on a toy task with known
answers mined by tiny random models."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from autojudge.decoding import generate
from autojudge.decoding.features import LOOKAHEAD_CAP, rule_features
from autojudge.judge.headtohead import Scored, _Grouped, head_to_head
from autojudge.judge.labels import define_labels, mined_labels
from autojudge.judge.train import load_mined
from autojudge.mining.contrast import contrast_labels
from autojudge.mining.options import MiningOptions
from autojudge.mining.rule_features import add_rule_features, problem_rule_features
from autojudge.mining.run import mine
from autojudge.prompting import chat_prompt_ids
from tests.toy_task import ToyTask, tiny_pair

MAX_NEW = 40


@pytest.fixture(scope="module")
def pair(tiny_target_dir, tiny_draft_dir):
    return tiny_pair(tiny_target_dir, tiny_draft_dir)


@pytest.fixture(scope="module")
def run(pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("mined") / "toy"
    mine(pair, ToyTask(), "all", str(out), MiningOptions(max_new_tokens=MAX_NEW))
    return out


def _right(task, rows) -> dict[int, bool]:
    problems = {p.id: p for p in task.load("all")}
    return {record["problem_id"]: task.is_correct(record["response"], problems[record["problem_id"]])
            for record, _ in rows}


def test_correctness_lost_is_never_important_where_the_target_is_wrong(run):
    task = ToyTask()
    data = load_mined(run)
    rows = mined_labels([run])
    right = _right(task, rows)
    relabelled, known = define_labels(data, [run], "correctness-lost", task)
    assert known.all() and len(relabelled.important) == len(rows)
    changed_on_wrong = 0
    problems = {p.id: p for p in task.load("all")}
    for (record, m), important in zip(rows, relabelled.important):
        if not right[record["problem_id"]]:
            assert not important
            changed_on_wrong += m["important"]
        else:  # on a right answer: important exactly when the swapped response is wrong
            swapped_right = task.is_correct(m["alt_response"], problems[record["problem_id"]])
            assert important == (m["important"] and not swapped_right)
    # The toy data hold both kinds of problem, and answer-changed labels that this definition drops.
    assert set(right.values()) == {True, False}
    assert changed_on_wrong > 0
    assert relabelled.important.sum() < data.important.sum()


def test_a_task_without_gold_answers_says_so_in_one_line(run):
    class NoGold(ToyTask):
        is_correct = None

    with pytest.raises(Exception, match="no gold answers.*answer-changed"):
        define_labels(load_mined(run), [run], "correctness-lost", NoGold())


def test_train_writes_a_judge_for_the_label_definition_it_was_asked(run, tmp_path):
    out = tmp_path / "judge.safetensors"
    done = subprocess.run([sys.executable, "-m", "autojudge", "train", "--data", str(run), "--labels",
                           "correctness-lost", "--features", "target", "--force", "--out", str(out)],
                          capture_output=True, text=True)
    from autojudge.judge.model import Judge
    if done.returncode == 0:
        judge = Judge.load(out)
        assert judge.meta["labels"] == "correctness-lost"
        relabelled, _ = define_labels(load_mined(run), [run], "correctness-lost", ToyTask())
        assert judge.meta["important_fraction"] == pytest.approx(relabelled.important.mean())
    else:  # too few problems for both labels in every fold: one line, no traceback
        assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr


def test_contrast_keeps_only_changes_that_a_nudge_without_a_swap_does_not_make(pair, run):
    task = ToyTask()
    first = contrast_labels(pair, task, run, MAX_NEW, "all", progress=False)
    lines = [json.loads(line) for line in (run / "contrast.jsonl").read_text().splitlines()]
    rows = mined_labels([run])
    # A response that does not tokenize back to its labels' tokens is left out, and counted.
    assert len(lines) == first["labels"] == sum(m["important"] for _, m in rows) - first["untokenizable"] > 0
    again = contrast_labels(pair, task, run, MAX_NEW, "all", progress=False)
    assert again["labels"] == 0  # resumed: nothing done twice
    relabelled, known = define_labels(load_mined(run), [run], "contrast", task)
    same = {(line["problem_id"], line["position"]): line["same"] for line in lines}
    nudged = {pid for pid, _ in same}
    # Known: the labels of problems whose every important label was nudged.
    assert known.tolist() == [r["problem_id"] in nudged or not any(x["important"] for x in r["mismatches"])
                              for r, _ in rows]
    expected = [m["important"] and same[(r["problem_id"], m["position"])] for (r, m), k in zip(rows, known) if k]
    assert relabelled.important.tolist() == expected
    assert 0 < sum(expected) < sum(m["important"] for (_, m), k in zip(rows, known) if k)  # some nudges flipped


def test_rule_features_of_mining_are_the_numbers_decoding_sees(pair):
    """FLy's entropy and lookahead, read at a window's mismatch by the engine and
    recomputed afterwards for a mined label, are the same numbers."""
    seen = []

    class Recorder:
        name, needs_hidden, needs_draft_logits = "recorder", False, False

        def __call__(self, window):
            k = len(window.draft_tokens)
            for i, match in enumerate(window.matches.tolist()):
                if not match:
                    row = window.rule_features[i]
                    # Comparable only where the window showed the whole lookahead.
                    if row[1] < k - 1 - i or i + LOOKAHEAD_CAP < k:
                        seq = pair.target.tokens[: len(pair.target.tokens) - k + i]
                        seen.append((list(seq), int(window.draft_tokens[i]), int(window.target_tokens[i]), row))
                    return i
            return k

    task = ToyTask()
    for problem in task.load("all")[:3]:
        ids = chat_prompt_ids(pair.tokenizer, task.messages(problem))
        generate(pair.target, ids, draft=pair.draft, policy=Recorder(), window=16, max_new_tokens=MAX_NEW,
                 stop_ids=pair.stop_ids)
    assert len(seen) >= 2
    for prefix, draft_token, target_token, decoded in seen:
        mined, _ = problem_rule_features(pair, prefix, [], [{"position": 0, "draft_token": draft_token,
                                                             "target_token": target_token}])
        assert torch.allclose(mined[0], decoded, atol=1e-4)
    assert {float(row[1]) for *_, row in seen} != {0.0}  # some lookahead to compare


def test_the_rule_pass_writes_each_problem_once(pair, run):
    first = add_rule_features(pair, ToyTask(), run, progress=False)
    assert first.written == first.problems - len(first.untokenizable) > 0
    assert add_rule_features(pair, ToyTask(), run, progress=False).written == 0


def test_rule_features_count_the_lookahead_up_to_the_first_miss():
    logits = torch.zeros(5, 10)
    logits[:, 0] = 10.0  # a sure target: top-3 entropy near 0
    rows = rule_features(logits, torch.tensor([False, True, True, False, True]))
    assert rows[:, 1].tolist() == [2.0, 1.0, 0.0, 1.0, 0.0]
    assert float(rows[0, 0]) < 0.01


def test_weighted_metrics_equal_sklearn_and_the_recall_cut():
    rng = np.random.default_rng(0)
    scores, important = rng.normal(size=300).round(1), rng.random(300) < 0.3
    weights = rng.integers(0, 3, 300).astype(float)
    auc, accept = _Grouped(scores, important).metrics(weights)
    assert auc == pytest.approx(roc_auc_score(important, scores, sample_weight=weights))
    # The accept rate at recall 0.9: the largest cut that still flags 90% of the important weight.
    order = np.sort(np.unique(scores))
    best = max(c for c in order if weights[important & (scores >= c)].sum() >= 0.9 * weights[important].sum())
    assert accept[0.9] == pytest.approx(weights[scores < best].sum() / weights.sum())


def test_a_perfect_rule_beats_a_useless_one_with_an_interval_above_zero():
    rng = np.random.default_rng(1)
    problem = np.repeat(np.arange(40), 10)
    important = rng.random(400) < 0.3
    rows = head_to_head([Scored("perfect", "-", "answer-changed", important.astype(float) + rng.random(400) * 0.1),
                         Scored("noise", "-", None, rng.random(400))], important, problem, "answer-changed", draws=200)
    perfect, noise = rows
    assert perfect["rule"] == "perfect" and perfect["auc"] == 1.0 and perfect["accept_at_recall_0.9"] > 0.6
    assert perfect["vs_best_rule"]["low"] > 0
    assert noise["auc_low"] < 0.5 < noise["auc_high"]


def test_the_train_command_offers_every_feature_set():
    from autojudge.cli.parser import build_parser
    from autojudge.judge.model import FEATURE_SETS
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    [features] = [a for a in train._actions if a.dest == "features"]
    assert set(features.choices) == set(FEATURE_SETS)
